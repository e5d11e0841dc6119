"""The MMIO decoder (hv/core/decode.s.j2) as machine code: assembled by the
builder's own render and keystone stages (builder/mmio.py), run in
unicorn, and compared with capstone's decoding.

Every call also checks the routine's contract: the registers it promises
to keep are kept, the stack is balanced, and it reads no instruction byte
past the count (the buffer ends at an unmapped page) and writes nothing
past the record.
"""

import random
import struct

import pytest
from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, CS_MODE_64, Cs
from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_OP_REG
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as reg

from builder import mmio
from builder.assemble import assemble
from builder.render import render
from builder.structs import (
    MMIO_ACCESS,
    MMIO_EXTEND_NONE,
    MMIO_EXTEND_SIGN,
    MMIO_EXTEND_ZERO,
    MMIO_FLAG_HIGH_BYTE,
    MMIO_FLAG_ZERO_UPPER,
    MMIO_OPERAND_IMMEDIATE,
    MMIO_OPERAND_REGISTER,
    MMIO_READ,
    MMIO_WRITE,
    Field,
    Record,
)

PAGE = 0x1000
CODE = 0x100000
HARNESS = 0x180000                  # tests/unit/call_harness.s.j2
HARNESS_IN = 0x190000
HARNESS_OUT = 0x190800
STACK_TOP = 0x200000 + 0x4000
BUFFER_END = 0x300000 + PAGE        # the instruction bytes end where an unmapped page begins
RECORD = 0x310000 + PAGE - MMIO_ACCESS.size    # the record ends at an unmapped page too
FETCH_BUFFER = 0x320000 + PAGE - 15
GUEST_RECORD = 0x330000
GUEST_MEMORY = 0x1000000
GUEST_MEMORY_MAPPED = 0x100000      # what unicorn maps there; a guest's memory_size is at most this
SEED = 20261201

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
HARNESS_RECORD = Record("HARNESS", [*(Field(name, 8) for name in GPRS), Field("target", 8),
                                    Field("rflags", 8), Field("rsp", 8)])
KEPT = {
    "mmio_decode": {"rbx", "rdx", "rsi", "rdi", "rbp", "r12", "r13", "r14", "r15"},
}
SENTINELS = {name: 0x5A5A_0000_0000_0000 + (i << 8) for i, name in enumerate(GPRS)}


class Routines:
    """The assembled routines in a unicorn x86-64 CPU with flat memory,
    called through tests/unit/call_harness.s.j2."""

    def __init__(self) -> None:
        assembly = mmio.standalone(CODE)
        harness = assemble(render("tests/unit/call_harness.s.j2", {
            **HARNESS_RECORD.asm_constants(), "HARNESS_IN": HARNESS_IN, "HARNESS_OUT": HARNESS_OUT,
            "HARNESS_STACK_TOP": STACK_TOP, "HARNESS_SLOT": 8}, registers=GPRS), HARNESS, "harness")
        self.labels = assembly.labels
        self.done = harness.labels["harness_done"]
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for base, size in ((CODE, 0x10000), (HARNESS, 0x20000), (STACK_TOP - 0x4000, 0x4000),
                           (BUFFER_END - PAGE, PAGE), (RECORD & ~(PAGE - 1), PAGE),
                           (FETCH_BUFFER & ~(PAGE - 1), PAGE), (GUEST_RECORD, PAGE),
                           (GUEST_MEMORY, GUEST_MEMORY_MAPPED)):
            self.uc.mem_map(base, size)
        self.uc.mem_write(CODE, assembly.code)
        self.uc.mem_write(HARNESS, harness.code)

    def call(self, label: str, **registers: int) -> tuple[bool, dict[str, int]]:
        """Run `label` until it returns; its carry flag and the registers after."""
        before = {**SENTINELS, **registers}
        self.uc.mem_write(HARNESS_IN, HARNESS_RECORD.pack(**before, target=self.labels[label]))
        self.uc.emu_start(HARNESS, self.done, count=5000)
        assert self.uc.reg_read(reg.UC_X86_REG_RIP) == self.done, f"{label} did not return"
        raw = self.uc.mem_read(HARNESS_OUT, HARNESS_RECORD.size)
        after = dict(zip([*GPRS, "target", "rflags", "rsp"], struct.unpack(f"<{len(GPRS) + 3}Q", raw)))
        assert after["rsp"] == STACK_TOP - 8, f"{label} left the stack unbalanced"
        changed = {n for n in KEPT[label] if after[n] != before[n]}
        assert not changed, f"{label} changed {sorted(changed)}, which it promises to keep"
        return bool(after["rflags"] & 1), after


@pytest.fixture(scope="module")
def routines():
    return Routines()


# --- mmio_decode against capstone -------------------------------------------

LEGACY_PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3}
SEGMENT_PREFIXES = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
SUPPORTED_OPCODES = {
    b"\x88": MMIO_EXTEND_NONE, b"\x89": MMIO_EXTEND_NONE, b"\x8a": MMIO_EXTEND_NONE,
    b"\x8b": MMIO_EXTEND_NONE, b"\xa0": MMIO_EXTEND_NONE, b"\xa1": MMIO_EXTEND_NONE,
    b"\xa2": MMIO_EXTEND_NONE, b"\xa3": MMIO_EXTEND_NONE, b"\xc6": MMIO_EXTEND_NONE,
    b"\xc7": MMIO_EXTEND_NONE, b"\x0f\xb6": MMIO_EXTEND_ZERO, b"\x0f\xb7": MMIO_EXTEND_ZERO,
    b"\x0f\xbe": MMIO_EXTEND_SIGN, b"\x0f\xbf": MMIO_EXTEND_SIGN,
}
MODRM_FORMS = [op for op in SUPPORTED_OPCODES if op[0] not in range(0xA0, 0xA4)]
MOFFS_FORMS = [op for op in SUPPORTED_OPCODES if op[0] in range(0xA0, 0xA4)]
CAPSTONE = {bits: Cs(CS_ARCH_X86, mode) for bits, mode in
            ((16, CS_MODE_16), (32, CS_MODE_32), (64, CS_MODE_64))}
for _disassembler in CAPSTONE.values():
    _disassembler.detail = True
REGISTER_NUMBERS = {}
for _number, _names in enumerate([("al", "ax", "eax", "rax"), ("cl", "cx", "ecx", "rcx"),
                                  ("dl", "dx", "edx", "rdx"), ("bl", "bx", "ebx", "rbx"),
                                  ("spl", "sp", "esp", "rsp"), ("bpl", "bp", "ebp", "rbp"),
                                  ("sil", "si", "esi", "rsi"), ("dil", "di", "edi", "rdi")]):
    REGISTER_NUMBERS.update({name: (_number, 0) for name in _names})
for _number in range(8, 16):
    REGISTER_NUMBERS.update({f"r{_number}{s}": (_number, 0) for s in ("b", "w", "d", "")})
REGISTER_NUMBERS.update({name: (n, MMIO_FLAG_HIGH_BYTE) for n, name in enumerate(("ah", "ch", "dh", "bh"))})


def expected(data: bytes, bits: int) -> dict[str, int] | None:
    """The record mmio_decode must give for `data` (all of it fetched), per
    capstone; None where the decoder must refuse: capstone finds no
    instruction or one outside the supported set."""
    insn = next(CAPSTONE[bits].disasm(data, 0), None)
    if insn is None:
        return None
    start = 0
    while start < insn.size and (data[start] in LEGACY_PREFIXES
                                 or (bits == 64 and 0x40 <= data[start] <= 0x4F)):
        start += 1
    opcode = data[start:start + (2 if data[start] == 0x0F else 1)]
    if opcode not in SUPPORTED_OPCODES or {0xF0, 0xF2, 0xF3} & set(data[:start]):
        return None
    memory = [op for op in insn.operands if op.type == X86_OP_MEM]
    if not memory:
        return None
    width = memory[0].size
    record = {"length": insn.size, "width": width, "extend": SUPPORTED_OPCODES[opcode], "immediate": 0,
              "direction": MMIO_WRITE if insn.operands[0].type == X86_OP_MEM else MMIO_READ,
              "operand": MMIO_OPERAND_REGISTER, "register": 0, "register_width": width, "flags": 0}
    for op in insn.operands:
        if op.type == X86_OP_IMM:
            record.update(operand=MMIO_OPERAND_IMMEDIATE, immediate=op.imm & (1 << 8 * width) - 1)
        elif op.type == X86_OP_REG:
            number, flags = REGISTER_NUMBERS[insn.reg_name(op.reg)]
            record.update(register=number, register_width=op.size, flags=flags)
    if bits == 64 and record["register_width"] == 4:
        record["flags"] |= MMIO_FLAG_ZERO_UPPER
    return record


def decode(routines: Routines, data: bytes, bits: int, count: int | None = None) -> dict[str, int] | None:
    """Run mmio_decode on `data` (its first `count` bytes fetched)."""
    count = len(data) if count is None else count
    routines.uc.mem_write(BUFFER_END - count, data[:count])
    routines.uc.mem_write(RECORD, b"\xee" * MMIO_ACCESS.size)
    failed, _ = routines.call("mmio_decode", rsi=BUFFER_END - count, rcx=count, rdx=bits, rdi=RECORD)
    if failed:
        return None
    raw = routines.uc.mem_read(RECORD, MMIO_ACCESS.size)
    return {f.name: int.from_bytes(raw[MMIO_ACCESS.offsets[f.name]:][:f.size], "little")
            for f in MMIO_ACCESS.fields}


class Comparison:
    """Decodes many byte strings; collects every disagreement with capstone."""

    def __init__(self, routines: Routines) -> None:
        self.routines = routines
        self.cases = self.accepted = 0
        self.mismatches: list[str] = []

    def check(self, data: bytes, bits: int) -> None:
        data = data[:15]
        want = expected(data, bits)
        got = decode(self.routines, data, bits)
        self.cases += 1
        if got != want:
            self.mismatches.append(f"{bits}-bit {data.hex(' ')}: decoder {got}, capstone says {want}")
        elif want is not None:
            self.accepted += 1
            # every byte counts: one byte fewer fetched and the decoder must refuse
            if decode(self.routines, data, bits, want["length"] - 1) is not None:
                self.mismatches.append(f"{bits}-bit {data.hex(' ')}: accepted with its last byte missing")

    def assert_clean(self) -> None:
        assert not self.mismatches, (f"{len(self.mismatches)} of {self.cases} disagree:\n"
                                     + "\n".join(self.mismatches[:20]))


def addressing_forms(rng: random.Random):
    """ModRM (+ SIB) bytes: every mod 00/01/10 x rm, every SIB base where rm
    is 100 (SIB index and scale random), and register-direct mod 11."""
    for mod in range(3):
        for rm in range(8):
            if rm == 4:
                for base in range(8):
                    yield mod, rm, bytes([rng.randrange(256) & 0xF8 | base])
            else:
                yield mod, rm, b""
    yield 3, rng.randrange(8), b""


REX = -1                            # in a prefix set: the REX prefix of the case


def prefix_sets(bits: int, rng: random.Random) -> list[tuple[int, ...]]:
    segment = rng.choice(SEGMENT_PREFIXES)
    legacy = [(), (0x66,), (0x67,), (0x66, 0x67), (0x67, 0x66), (segment,), (0x66, segment, 0x67),
              (0x66, 0x66)]
    if bits != 64:
        return legacy
    # REX last (in force), and REX before a legacy prefix or another REX (ignored)
    return legacy + [p + (REX,) for p in legacy] + [(REX, 0x66), (0x41, REX), (REX, 0x26, REX)]


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_every_supported_form_decodes_as_capstone_decodes_it(routines, bits):
    """Every opcode form x every ModRM/SIB/displacement class x prefix sets
    x the reg field's values; REX (64-bit mode) cycles through all 16 values
    against every reg field; displacements and immediates random."""
    rng = random.Random(SEED + bits)
    comparison = Comparison(routines)
    counter = 0
    for prefix_set in prefix_sets(bits, rng):
        for opcode in MODRM_FORMS + MOFFS_FORMS:
            forms = addressing_forms(rng) if opcode in MODRM_FORMS else [(0, 0, b"")]
            for mod, rm, sib in forms:
                counter += 1
                rex = 0x40 + counter // 8 % 16
                prefixes = bytes(rex if p == REX else p for p in prefix_set)
                reg_field = counter % 8
                if opcode in (b"\xc6", b"\xc7") and counter % 4:
                    reg_field = 0               # /0 mostly; other reg values are refused
                modrm = bytes([mod << 6 | reg_field << 3 | rm]) if opcode in MODRM_FORMS else b""
                comparison.check(prefixes + opcode + modrm + sib + rng.randbytes(14), bits)
    comparison.assert_clean()
    assert comparison.accepted > comparison.cases // 2


def test_random_byte_strings_are_refused_unless_capstone_reads_a_supported_form(routines):
    rng = random.Random(SEED)
    comparison = Comparison(routines)
    alphabet = [*LEGACY_PREFIXES, *range(0x40, 0x50)]
    near = [*range(0x80, 0x90), *range(0xA0, 0xA8), *range(0xC4, 0xC8), 0x0F, 0x63]
    for _ in range(6000):
        bits = rng.choice((16, 32, 64))
        comparison.check(rng.randbytes(15), bits)
        prefixes = bytes(rng.choice(alphabet) for _ in range(rng.choice((0, 0, 1, 2, 3, 5, 9))))
        opcode = bytes([rng.choice(near)])
        if opcode == b"\x0f":
            opcode += bytes([rng.choice((rng.randrange(256), rng.randrange(0xB0, 0xC0)))])
        comparison.check(prefixes + opcode + rng.randbytes(15), bits)
    comparison.assert_clean()
    assert comparison.accepted > 500


@pytest.mark.parametrize("hex_bytes, bits, fields", [
    # mov dword ptr [rip + 0x12345678], eax: a 64-bit kernel's LAPIC write
    ("89 05 78 56 34 12", 64, {"length": 6, "width": 4, "direction": MMIO_WRITE, "register": 0,
                               "register_width": 4, "flags": MMIO_FLAG_ZERO_UPPER}),
    # mov ah, byte ptr [rbx]; with a REX prefix the same reg field is SPL
    ("8a 23", 64, {"length": 2, "width": 1, "register": 0, "flags": MMIO_FLAG_HIGH_BYTE}),
    ("40 8a 23", 64, {"length": 3, "width": 1, "register": 4, "flags": 0}),
    # mov r13w, word ptr fs:[r12 + r9*4 + 0x10]
    ("64 66 47 8b 6c 8c 10", 64, {"length": 7, "width": 2, "register": 13, "register_width": 2}),
    # mov qword ptr [rax], -2 (imm32 sign-extended)
    ("48 c7 00 fe ff ff ff", 64, {"length": 7, "width": 8, "operand": MMIO_OPERAND_IMMEDIATE,
                                  "immediate": 0xFFFFFFFFFFFFFFFE}),
    # movsx eax, word ptr [bx + si + 0x1234] in 16-bit code with 66
    ("66 0f bf 80 34 12", 16, {"length": 6, "width": 2, "extend": MMIO_EXTEND_SIGN, "register_width": 4}),
    # mov eax, dword ptr [0xfee000b0] (A1 moffs32) in 32-bit code
    ("a1 b0 00 e0 fe", 32, {"length": 5, "width": 4, "register": 0, "register_width": 4}),
    # the longest: eight 66 prefixes + mov word ptr [disp32], ax is 15 bytes
    ("66 66 66 66 66 66 66 66 89 04 25 00 00 e0 fe", 64, {"length": 15, "width": 2}),
])
def test_kernel_style_accesses(routines, hex_bytes, bits, fields):
    got = decode(routines, bytes.fromhex(hex_bytes), bits)
    assert got is not None, "refused"
    assert {name: got[name] for name in fields} == fields


@pytest.mark.parametrize("hex_bytes, bits, why", [
    ("f0 89 00", 64, "LOCK"),
    ("f3 88 00", 64, "REP (XRELEASE)"),
    ("89 c0", 64, "register-direct: no memory access"),
    ("c7 08 00 00 00 00", 32, "C7 /1"),
    ("8c 18", 32, "MOV m16, Sreg"),
    ("48 63 00", 64, "MOVSXD"),
    ("a5", 32, "MOVS"),
    ("66 66 66 66 66 66 66 66 66 89 04 25 00 00 e0 fe", 64, "16 bytes"),
    ("48 8b", 64, "ends before its ModRM"),
])
def test_refused(routines, hex_bytes, bits, why):
    data = bytes.fromhex(hex_bytes)
    assert decode(routines, data[:15], bits) is None, why


def test_more_than_fifteen_fetched_bytes_count_as_fifteen(routines):
    data = bytes.fromhex("66" * 9 + "89 04 25 00 00 e0 fe")      # 16 bytes
    routines.uc.mem_write(BUFFER_END - PAGE, data)
    failed, _ = routines.call("mmio_decode", rsi=BUFFER_END - PAGE, rcx=len(data), rdx=64, rdi=RECORD)
    assert failed


def test_a_code_size_other_than_16_32_64_is_refused(routines):
    assert decode(routines, bytes.fromhex("89 00"), 8) is None
