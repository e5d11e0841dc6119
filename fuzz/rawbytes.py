"""Raw bytes for the `raw` step: random instructions, biased towards the
opcodes that exit or are privileged, kept only where capstone decodes them
whole and none of them moves control elsewhere.

The catcher resumes a faulting step at the next landing label, so a raw
step may fault as it likes; what it must not do is jump, call, return,
enter the system-call path or make a hypercall (which could be the exit
hypercall), nor write near its own code through a RIP-relative operand:
any of those could run off into the runtime or loop forever.  Nor does it
write a control or debug register: those are the `cr-*` and `dr-*` kinds,
which fuzz/gaps.py can leave out where an emulator mishandles them.
"""

from __future__ import annotations

import random

import capstone
from capstone import x86

from builder import hw

# Opcode starts that reach the hypervisor or privileged state: system
# instruction groups, control and debug registers, MSRs, CPUID, port I/O,
# HLT, software interrupts, segment loads, flags, x87/SSE/AVX/EVEX state.
BIASED_OPCODES = tuple(bytes.fromhex(h) for h in (
    "0f00", "0f01", "0f06", "0f08", "0f09", "0f0d", "0f18", "0f20", "0f21", "0f22", "0f23", "0f30",
    "0f31", "0f32", "0f33", "0f37", "0f78", "0f79", "0fa2", "0fae", "0fc7", "0faa", "0f0b", "0fb2",
    "0fb4", "0fb5", "e4", "e5", "e6", "e7", "ec", "ed", "ee", "ef", "6c", "6d", "6e", "6f", "f4",
    "cc", "cd", "f1", "8e", "8c", "9c", "9d", "fa", "fb", "d9", "db", "dd", "df", "0f38", "0f3a",
    "c4", "c5", "62", "0f77", "0f6e", "0f7e", "0f10", "0f28", "a4", "aa", "ac"))
PREFIXES = (0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0xF0, 0x40, 0x41, 0x44, 0x48, 0x4C)
REFUSED_GROUPS = {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_IRET,
                  capstone.CS_GRP_BRANCH_RELATIVE}
REFUSED_MNEMONICS = {"syscall", "sysenter", "sysexit", "sysret", "sysretq", "sysexitq", "vmcall",
                     "vmmcall", "xbegin", "xabort", "loop", "loope", "loopne", "jrcxz", "jecxz",
                     "enclu", "uiret", "retf", "retfq", "iret", "iretd", "iretq", "ljmp", "lcall"}
MAX_INSTRUCTIONS = 3
# Ports an OUT by immediate must not reach: the debug-exit port ends the
# attacker, the 8042's command port and port A can reset it (0xCF9 takes
# no immediate).
UNREACHABLE_PORTS = (hw.QEMU_DEBUG_EXIT_PORT, hw.I8042_COMMAND_PORT, hw.SYSTEM_CONTROL_A)
ATTEMPTS = 64
FALLBACK = bytes.fromhex("0f0b")     # ud2

_DISASSEMBLER = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_DISASSEMBLER.detail = True


SYSTEM_REGISTERS = frozenset(range(x86.X86_REG_CR0, x86.X86_REG_CR15 + 1)) | frozenset(
    range(x86.X86_REG_DR0, x86.X86_REG_DR15 + 1))


def acceptable(instruction) -> bool:
    """May a raw step run this decoded instruction?"""
    if instruction.mnemonic in REFUSED_MNEMONICS or REFUSED_GROUPS & set(instruction.groups):
        return False
    operands = instruction.operands
    if (instruction.mnemonic == "mov" and operands and operands[0].type == x86.X86_OP_REG
            and operands[0].reg in SYSTEM_REGISTERS):
        return False
    if (instruction.mnemonic == "out" and operands and operands[0].type == x86.X86_OP_IMM
            and operands[0].imm in UNREACHABLE_PORTS):
        return False                        # it would end or reset the attacker (README)
    return not any(operand.type == x86.X86_OP_MEM and operand.mem.base == x86.X86_REG_RIP
                   for operand in operands)


def decode(data: bytes) -> list:
    """capstone's instructions for `data`, from its start, until it stops decoding."""
    return list(_DISASSEMBLER.disasm(data, 0))


def whole_and_acceptable(data: bytes) -> bool:
    """Does capstone decode all of `data`, every instruction acceptable?"""
    instructions = decode(data)
    return (sum(i.size for i in instructions) == len(data)
            and all(acceptable(i) for i in instructions))


def _candidate(rng: random.Random) -> bytes:
    if rng.random() < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 16)))
    out = bytearray()
    for _ in range(rng.randrange(1, MAX_INSTRUCTIONS + 1)):
        out += bytes(rng.choice(PREFIXES) for _ in range(rng.choice((0, 0, 0, 1, 2))))
        out += rng.choice(BIASED_OPCODES)
        out += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 9)))
    return bytes(out)


def draw_bytes(rng: random.Random) -> str:
    """Hex of 1 to MAX_INSTRUCTIONS acceptable instructions."""
    for _ in range(ATTEMPTS):
        data = _candidate(rng)
        kept = 0
        for instruction in decode(data)[:MAX_INSTRUCTIONS]:
            if not acceptable(instruction):
                break
            kept += instruction.size
        if kept:
            return data[:kept].hex()
    return FALLBACK.hex()
