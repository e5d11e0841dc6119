"""The steps a fuzz program is made of: one template per kind of attack.

A step is a template's name and its parameters (plain ints and strings,
so that a step prints, compares and round-trips through JSON).  Each
template draws its parameters from a `random.Random` with a bias towards
what exits or is privileged (ports, MSRs, CPUID leaves the hypervisor
handles, control-register bits, hypervisor instructions, hypercalls), and
renders them as GNU as lines (Intel syntax).  fuzz/guest.py puts each
step between the catcher's arming and a landing label, so a step that
faults resumes at the next one.

A planted value carries its attacker's tag (a dword, `tag(attacker)`) in
one half: the tag is added when the step is rendered, so a step replays
the same for any attacker.  Values that are not planted never contain a
tag (`draw_value` draws again).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from builder import hw, msrs, virtio
from builder.guest_images import BENCH_IDLE_PORT, HYPERCALLS, SECRET

Params = dict[str, int | str]

TAG_BASE = 0xF0221E00                   # the attacker's number in the low byte
TAG_OWNER_MASK = 0xFFFFFF00
MASK64 = (1 << 64) - 1
SECRET_DWORD = int.from_bytes(SECRET[:4], "little")
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
        "r14", "r15")
PLANT_GPRS = tuple(r for r in GPRS if r not in ("rax", "rcx", "rdx"))   # those the templates keep
SEGMENTS = ("ds", "es", "fs", "gs", "ss")

# Guest-physical addresses worth mapping: past the attacker's memory, the
# x86 platform's MMIO and the hypervisor's side of the machine.
PLATFORM_GPAS = (0x00000000, 0x000A0000, 0x000F0000, 0x00100000, 0x00200000, 0x01000000,
                 0x40000000, 0x80000000, 0xC0000000, 0xFEC00000, 0xFED00000, 0xFEE00000,
                 0xFFE00000, 0x100000000, 0xFFFFFFFFFE00000)
PORTS = (0x20, 0x21, 0x40, 0x41, 0x42, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80, 0x92, 0xA0, 0xA1,
         0xB2, 0xE9, 0xF0, 0x1CE, 0x1CF, 0x2F8, 0x2FD, 0x3B4, 0x3D4, 0x3F8, 0x3F9, 0x3FA, 0x3FB,
         0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x402, 0x403, 0x4D0, 0x4D1, 0x510, 0x511, 0x600, 0x604, 0x608,
         0x609, 0x60B, 0x8900,
         0xB000, 0xB004, 0xCF8, 0xCF9, 0xCFC, 0xCFF, 0xFFFF)
MSRS = tuple(sorted({number for number, *_ in msrs.EMULATED_MSRS} | {
    hw.IA32_APIC_BASE, hw.IA32_FEATURE_CONTROL, hw.IA32_VMX_BASIC, hw.IA32_VMX_PINBASED_CTLS,
    hw.IA32_VMX_MISC, hw.IA32_VMX_CR0_FIXED0, hw.IA32_VMX_CR4_FIXED1, hw.IA32_VMX_EPT_VPID_CAP,
    hw.IA32_VMX_TRUE_PROCBASED_CTLS,
    0x0, 0x1, 0x8B, 0x9B, 0xE7, 0xE8, 0xFE, 0x10A, 0x1A0, 0x1D9, 0x200, 0x2FF, 0x48, 0x49,
    0x6E0, 0x800, 0x802, 0x808, 0x80B, 0x830, 0x838, 0xD90, 0xDA0, 0x4B564D00, 0x40000000,
    0xC0010010, 0xC0010015, 0xC0010114, 0xC0010116, 0xC0010117, 0xC0010140, 0xC001011F,
    0xC0000104, 0xC00000E7, 0xC00000E8}))
# MSRs the hypervisor keeps per guest: planted with a tag, they must never
# show in another guest (builder/msrs.py).
PLANT_MSRS = tuple(number for number, kind, *_ in msrs.EMULATED_MSRS
                   if kind in (msrs.MsrKind.ADDRESS, msrs.MsrKind.VALUE, msrs.MsrKind.VALUE32))
CPUID_LEAVES = (0, 1, 2, 4, 6, 7, 0xA, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x15, 0x16, 0x19, 0x1F, 0x20,
                0x40000000, 0x40000001, 0x40000002, 0x40000010, 0x40000100, 0x4FFFFFFF,
                0x80000000, 0x80000001, 0x80000007, 0x80000008, 0x8000000A, 0x8000001F, 0x80000021,
                0xFFFFFFFF)
XCR0_BITS = (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 17, 18, 19, 62, 63)
CR_BITS = {0: (0, 1, 2, 3, 4, 5, 16, 18, 29, 30, 31, 32, 63),
           4: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 20, 21, 22, 23, 24, 25, 32),
           3: (3, 4, 12, 20, 51, 52, 62, 63), 8: (0, 1, 2, 3, 4, 8, 63)}
VMX_MEMORY_OPS = ("vmxon", "vmclear", "vmptrld", "vmptrst")
VMX_PLAIN_OPS = {"vmlaunch": "0x0F, 0x01, 0xC2", "vmresume": "0x0F, 0x01, 0xC3",
                 "vmxoff": "0x0F, 0x01, 0xC4", "vmfunc": "0x0F, 0x01, 0xD4", "getsec": "0x0F, 0x37"}
SVM_OPS = {"vmrun": "0x0F, 0x01, 0xD8", "vmload": "0x0F, 0x01, 0xDA", "vmsave": "0x0F, 0x01, 0xDB",
           "stgi": "0x0F, 0x01, 0xDC", "clgi": "0x0F, 0x01, 0xDD", "skinit": "0x0F, 0x01, 0xDE",
           "invlpga": "0x0F, 0x01, 0xDF"}
# The hypercall instructions themselves, each run on either vendor.
RAW_HYPERCALLS = {"vmcall": "0x0F, 0x01, 0xC1", "vmmcall": "0x0F, 0x01, 0xD9"}
MISC_PRIVILEGED = {
    "rdtsc": ["rdtsc"], "rdtscp": ["rdtscp"], "rdpid": [".byte 0xF3, 0x0F, 0xC7, 0xF8"],
    "rdrand": ["rdrand rax"], "rdseed": ["rdseed rax"], "swapgs": ["swapgs"], "clts": ["clts"],
    "smsw": ["smsw eax"], "lmsw": ["mov eax, {value:#x}", "lmsw ax"],
    "sgdt": ["sgdt [rip + fuzz_scratch]"], "sidt": ["sidt [rip + fuzz_scratch]"],
    "sldt": ["sldt ax"], "str": ["str ax"], "rsm": [".byte 0x0F, 0xAA"],
    "rdpmc": ["mov ecx, {value:#x}", "rdpmc"],
    "monitor": ["lea rax, [rip + fuzz_scratch]", "xor ecx, ecx", "xor edx, edx", "monitor"],
    "mwait": ["mov eax, {value:#x}", "xor ecx, ecx", "mwait"],
    "wrpkru": ["mov eax, {value:#x}", "xor ecx, ecx", "xor edx, edx", ".byte 0x0F, 0x01, 0xEF"],
    "rdpkru": ["xor ecx, ecx", ".byte 0x0F, 0x01, 0xEE"],
    "wbnoinvd": [".byte 0xF3, 0x0F, 0x09"], "encls": ["mov eax, {value:#x}", ".byte 0x0F, 0x01, 0xCF"],
    "xsaves": ["mov eax, -1", "mov edx, -1", "xsaves [rip + fuzz_scratch]"],
    "pconfig": ["mov eax, {value:#x}", ".byte 0x0F, 0x01, 0xC5"],
    "tpause": ["mov eax, {value:#x}", "xor edx, edx", ".byte 0x66, 0x0F, 0xAE, 0xF0"],
}
# Exiting instructions run under a single-step trap or an interrupt shadow.
SHADOWED = {"cpuid": ["mov eax, {leaf:#x}", "xor ecx, ecx", "cpuid"],
            "in": ["mov edx, {port:#x}", "in al, dx"],
            "out": ["mov edx, {port:#x}", "mov eax, {leaf:#x}", "out dx, al"],
            "rdmsr": ["mov ecx, {msr:#x}", "rdmsr"],
            "hlt": ["hlt"], "wbinvd": ["wbinvd"], "invd": ["invd"],
            "xsetbv": ["xor ecx, ecx", "xgetbv", "xsetbv"],
            "mov-cr3": ["mov rax, cr3", "mov cr3, rax"], "mov-cr8": ["mov rax, cr8", "mov cr8, rax"],
            "yield": ["mov eax, {yield_:#x}", "call fuzz_hypercall"]}
# Prefixes in front of an exiting instruction: the hypervisor must skip the
# whole instruction (VMX's exit instruction length, SVM's next RIP).
PREFIXES = (0x66, 0xF2, 0xF3, 0x2E, 0x3E, 0x26, 0x64, 0x65, 0x36, 0x40, 0x48, 0x67)
PREFIXABLE = {"cpuid": "0x0F, 0xA2", "rdmsr": "0x0F, 0x32", "wrmsr": "0x0F, 0x30", "hlt": "0xF4",
              "in": "0xEC", "out": "0xEE", "rdtsc": "0x0F, 0x31", "wbinvd": "0x0F, 0x09"}


def tag(attacker: int) -> int:
    """The dword an attacker plants (TAG_BASE with its number)."""
    return TAG_BASE | attacker


def is_tagged(value: int) -> bool:
    """Does any aligned dword of `value` look like a tag or the witness's secret?"""
    dwords = (value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF)
    return any(d & TAG_OWNER_MASK == TAG_BASE or d == SECRET_DWORD for d in dwords)


def draw_value(rng: random.Random, memory: int) -> int:
    """A 64-bit value biased towards the boundaries hypervisors check."""
    while True:
        choice = rng.random()
        if choice < 0.15:
            value = rng.choice((0, 1, 2, 3, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                                0x7FFFFFFFFFFFFFFF, 0x8000000000000000, MASK64, 0x00007FFFFFFFFFFF,
                                0x0000800000000000, 0xFFFF800000000000, 0xFFFF7FFFFFFFFFFF,
                                # 57-bit canonical (5-level paging) and just outside it
                                0xFF11000000000000, 0xFF00000000000000, 0x00FFFFFFFFFFFFFF,
                                0x0100000000000000))
        elif choice < 0.3:
            value = 1 << rng.randrange(64)
        elif choice < 0.45:
            value = rng.randrange(memory + hw.PAGE_SIZE)           # inside or just past its memory
        elif choice < 0.55:
            value = rng.choice(PLATFORM_GPAS) + rng.randrange(hw.PAGE_SIZE)
        elif choice < 0.75:
            value = rng.getrandbits(32)
        else:
            value = rng.getrandbits(64)
        value &= MASK64
        if not is_tagged(value):
            return value


# Ports where a guest's write resets it (README, "The guest's view"): the
# 8042's command port, the reset control register, system control port A.
# A reset ends the attacker's table of programs as the debug-exit port
# would, so only `reset-port` steps reach them, with values beside the
# reset values, and they leave EDX on an unclaimed port: no later step
# (a raw OUT DX) can finish a reset by chance.
RESET_PORTS = (hw.I8042_COMMAND_PORT, hw.RESET_CONTROL, hw.SYSTEM_CONTROL_A)
PARKED_PORT = BENCH_IDLE_PORT              # the POST-code port: no device


def harmless(port: int, value: int) -> int:
    """`value` with the bits that would reset the guest through `port` turned
    the other way: a pulse command at 0x64 keeps bit 0 (the reset line) set,
    0xCF9 gets no RST_CPU, port A never sets its fast-reset bit (so it never
    goes from 0 to 1).  The devices decode bytes: the low byte is what counts."""
    low = value & 0xFF
    if port == hw.I8042_COMMAND_PORT and low & hw.I8042_CMD_PULSE_MASK == hw.I8042_CMD_PULSE:
        low |= hw.I8042_PULSE_RESET_LINE
    elif port == hw.RESET_CONTROL:
        low &= ~hw.RESET_CONTROL_RST_CPU
    elif port == hw.SYSTEM_CONTROL_A:
        low &= ~hw.SYSTEM_CONTROL_A_FAST_RESET
    return value & ~0xFF | low


# Ports where a write may end the attacker (README, "The guest's view"): the
# debug exit, and the ACPI PM1a control register (an S5 request powers it off).
ENDING_PORTS = frozenset({hw.QEMU_DEBUG_EXIT_PORT,
                          *range(hw.ACPI_PM1A_CNT_BLK, hw.ACPI_PM1A_CNT_BLK + hw.ACPI_PM1_CNT_LEN)})


def draw_port(rng: random.Random) -> int:
    """A port, never one of ENDING_PORTS: a write there may end the
    attacker, which would cut its table of programs short; nor a reset
    port (`reset-port` steps)."""
    while True:
        port = rng.choice(PORTS) if rng.random() < 0.7 else rng.getrandbits(16)
        if port not in ENDING_PORTS and port not in RESET_PORTS:
            return port


def draw_msr(rng: random.Random) -> int:
    choice = rng.random()
    if choice < 0.7:
        return rng.choice(MSRS)
    if choice < 0.85:
        return rng.choice(MSRS) + rng.randrange(-4, 5) & 0xFFFFFFFF
    return rng.getrandbits(32)


def draw_leaf(rng: random.Random) -> int:
    return rng.choice(CPUID_LEAVES) if rng.random() < 0.8 else rng.getrandbits(32)


def planted(params: Params, attacker: int) -> int:
    """The planted value of a step: its random bits with the tag in one half."""
    bits = int(params["bits"])
    return (tag(attacker) << 32 | bits) if params["half"] == "high" else (bits << 32 | tag(attacker))


def draw_planted(rng: random.Random) -> Params:
    while True:
        bits = rng.getrandbits(32)
        if not is_tagged(bits):
            return {"bits": bits, "half": rng.choice(("high", "low"))}


def load(register: str, value: int) -> str:
    return f"mov {register}, {value:#x}"


def split(value: int) -> list[str]:
    """EDX:EAX = value."""
    return [f"mov eax, {value & 0xFFFFFFFF:#x}", f"mov edx, {value >> 32:#x}"]


@dataclass(frozen=True)
class Template:
    """One kind of step: how often it is drawn, its parameters, its code."""

    name: str
    weight: float
    draw: Callable[[random.Random, int], Params]     # (rng, the attacker's memory size)
    render: Callable[[Params, int], list[str]]      # (params, attacker) -> GNU as lines
    ends: bool = False                              # always stops the guest: ends the program


def _cpuid(rng, memory):
    return {"leaf": draw_leaf(rng), "subleaf": rng.choice((0, 1, 2, rng.getrandbits(32)))}


def _port(rng, memory):
    return {"port": draw_port(rng), "size": rng.choice((1, 1, 2, 4)), "value": draw_value(rng, memory),
            "immediate": int(rng.random() < 0.3)}


_ACCUMULATOR = {1: "al", 2: "ax", 4: "eax"}


def _port_in(p, attacker):
    port, reg = int(p["port"]), _ACCUMULATOR[int(p["size"])]
    if p["immediate"] and port < 0x100:
        return [f"in {reg}, {port:#x}"]
    return [f"mov edx, {port:#x}", f"in {reg}, dx"]


def _port_out(p, attacker):
    port, reg = int(p["port"]), _ACCUMULATOR[int(p["size"])]
    lines = [f"mov eax, {int(p['value']) & 0xFFFFFFFF:#x}"]
    if p["immediate"] and port < 0x100:
        return lines + [f"out {port:#x}, {reg}"]
    return lines + [f"mov edx, {port:#x}", f"out dx, {reg}"]


def _reset_port(rng, memory):
    return {"port": rng.choice(RESET_PORTS), "size": rng.choice((1, 1, 2, 4)),
            "value": draw_value(rng, memory), "write": int(rng.random() < 0.7)}


def _reset_port_render(p, attacker):
    port, reg = int(p["port"]), _ACCUMULATOR[int(p["size"])]
    access = f"out dx, {reg}" if p["write"] else f"in {reg}, dx"
    return [f"mov eax, {harmless(port, int(p['value'])) & 0xFFFFFFFF:#x}", f"mov edx, {port:#x}", access,
            f"mov edx, {PARKED_PORT:#x}"]


def _port_string(rng, memory):
    return {"port": draw_port(rng), "op": rng.choice(("insb", "insw", "insd", "outsb", "outsw", "outsd")),
            "count": rng.choice((1, 2, 16, 0x10000)), "rep": int(rng.random() < 0.5)}


def _port_string_render(p, attacker):
    rep = "rep " if p["rep"] else ""
    return ["lea rsi, [rip + fuzz_scratch]", "lea rdi, [rip + fuzz_scratch]", f"mov ecx, {int(p['count'])}",
            f"mov edx, {int(p['port']):#x}", f"{rep}{p['op']}"]


def _wrmsr(rng, memory):
    return {"msr": draw_msr(rng), "value": draw_value(rng, memory)}


def _cr_write(rng, memory):
    cr = rng.choice((0, 3, 4, 8, 2))
    return {"cr": cr, "value": draw_value(rng, memory)}


def _cr_flip(rng, memory):
    cr = rng.choice((0, 0, 4, 4, 3, 8))
    return {"cr": cr, "bit": rng.choice(CR_BITS[cr])}


def _dr_write(rng, memory):
    dr = rng.choice((0, 1, 2, 3, 6, 7))
    value = draw_value(rng, memory)
    if dr == 7 and rng.random() < 0.6:
        value = rng.getrandbits(8) | rng.getrandbits(16) << 16 | rng.choice((0, 1 << 13, 1 << 8))
    return {"dr": dr, "value": value}


def _xsetbv(rng, memory):
    if rng.random() < 0.7:
        value = sum(1 << bit for bit in XCR0_BITS if rng.random() < 0.3) | int(rng.random() < 0.9)
    else:
        value = draw_value(rng, memory)
    return {"xcr": rng.choice((0, 0, 0, 1, rng.getrandbits(32))), "value": value}


_CACHE_OPS = {"invd": ["invd"], "wbinvd": ["wbinvd"], "clflush": ["clflush [rip + fuzz_scratch]"],
              "invlpg": ["mov rax, {value:#x}", "invlpg [rax]"],
              "invpcid": ["mov eax, {type_}", "invpcid rax, [rip + fuzz_scratch]"]}


def _cache(rng, memory):
    return {"op": rng.choice(tuple(_CACHE_OPS)), "value": draw_value(rng, memory),
            "type_": rng.randrange(5)}


def _format(lines: list[str], p: Params) -> list[str]:
    return [line.format(**p) for line in lines]


def _vmx(rng, memory):
    op = rng.choice(VMX_MEMORY_OPS + tuple(VMX_PLAIN_OPS) + ("vmread", "vmwrite", "invept", "invvpid"))
    return {"op": op, "rax": draw_value(rng, memory), "rcx": draw_value(rng, memory)}


def _vmx_render(p, attacker):
    op = str(p["op"])
    lines = [load("rax", int(p["rax"])), load("rcx", int(p["rcx"]))]
    if op in VMX_MEMORY_OPS:
        return lines + ["mov [rip + fuzz_scratch], rax", f"{op} qword ptr [rip + fuzz_scratch]"]
    if op in VMX_PLAIN_OPS:
        return lines + [f".byte {VMX_PLAIN_OPS[op]}"]
    return lines + {"vmread": ["vmread rax, rcx"], "vmwrite": ["vmwrite rcx, rax"],
                    "invept": ["invept rax, [rip + fuzz_scratch]"],
                    "invvpid": ["invvpid rax, [rip + fuzz_scratch]"]}[op]


def _svm(rng, memory):
    return {"op": rng.choice(tuple(SVM_OPS)), "rax": draw_value(rng, memory), "ecx": rng.getrandbits(32)}


def _hypercall(rng, memory):
    number = rng.choice((HYPERCALLS["YIELD"], len(HYPERCALLS), 0xFFFFFFFF, 0x80000000, 0x100000000,
                         rng.getrandbits(32), rng.getrandbits(64)))
    if number & 0xFFFFFFFF == HYPERCALLS["EXIT"]:
        number = HYPERCALLS["YIELD"]    # an exit would end every program after it
    return {"number": number, "rbx": draw_value(rng, memory), "rcx": draw_value(rng, memory),
            "rdx": draw_value(rng, memory), "raw": rng.choice(("", "", "vmcall", "vmmcall"))}


def _hypercall_render(p, attacker):
    lines = [load("rax", int(p["number"])), load("rbx", int(p["rbx"])), load("rcx", int(p["rcx"])),
             load("rdx", int(p["rdx"]))]
    raw = str(p["raw"])
    return lines + ([f".byte {RAW_HYPERCALLS[raw]}"] if raw else ["call fuzz_hypercall"])


def _misc(rng, memory):
    return {"op": rng.choice(tuple(MISC_PRIVILEGED)), "value": draw_value(rng, memory) & 0xFFFFFFFF}


def _int(rng, memory):
    return {"op": rng.choice(("int", "int", "int3", "int1")), "vector": rng.randrange(256)}


def _int_render(p, attacker):
    return {"int": [f"int {int(p['vector']):#x}"], "int3": ["int3"], "int1": [".byte 0xF1"]}[str(p["op"])]


_FAULTS = {"ud2": ["ud2"], "divide": ["xor ecx, ecx", "div ecx"],
           "non-canonical": ["mov rax, 0x8000000000000000", "mov al, [rax]"],
           "stack": ["mov rax, rsp", "mov rsp, 0x8000000000000000", "push rax"],
           "alignment": ["mov rax, cr0", "bts rax, 18", "mov cr0, rax", "pushfq", "bts qword ptr [rsp], 18",
                         "popfq", "mov eax, [rip + fuzz_scratch + 1]"],
           "sse": ["movaps xmm0, [rip + fuzz_scratch + 8]"], "x87": ["fldz", "fld1", "fdiv st(0), st(1)",
                                                                    "fwait"]}


def _fault(rng, memory):
    return {"op": rng.choice(tuple(_FAULTS))}


def _descriptor(rng, memory):
    return {"op": rng.choice(("lidt", "lgdt", "lldt", "ltr")), "base": draw_value(rng, memory),
            "limit": rng.choice((0, 0xF, 0xFF, 0xFFF, 0xFFFF, rng.getrandbits(16))),
            "selector": rng.getrandbits(16)}


def _descriptor_render(p, attacker):
    op = str(p["op"])
    if op in ("lldt", "ltr"):
        return [f"mov eax, {int(p['selector']):#x}", f"{op} ax"]
    return [f"mov word ptr [rip + fuzz_scratch], {int(p['limit']):#x}", load("rax", int(p["base"])),
            "mov [rip + fuzz_scratch + 2], rax", f"{op} [rip + fuzz_scratch]"]


def _segment(rng, memory):
    selector = rng.choice((0, 0x08, 0x10, 0x18, 0x20, 0x13, 0x1B, rng.getrandbits(16)))
    return {"segment": rng.choice(SEGMENTS), "selector": selector}


def _xstate(rng, memory):
    return {"op": rng.choice(("xsave", "xsaveopt", "xsavec", "fxsave")), "offset": rng.randrange(0, 1024, 8),
            "value": draw_value(rng, memory)}


def _xstate_render(p, attacker):
    op = str(p["op"])
    restore = "fxrstor" if op == "fxsave" else "xrstor"
    return ["mov eax, -1", "mov edx, -1", f"{op} [rip + fuzz_scratch]", load("rcx", int(p["value"])),
            f"mov [rip + fuzz_scratch + {int(p['offset'])}], rcx", f"{restore} [rip + fuzz_scratch]"]


def _shadowed(rng, memory):
    return {"how": rng.choice(("mov-ss", "sti")), "op": rng.choice(tuple(SHADOWED)),
            "leaf": draw_leaf(rng), "port": draw_port(rng), "msr": draw_msr(rng)}


def _single_step(rng, memory):
    return {**_shadowed(rng, memory), "how": rng.choice(("tf", "tf", "tf-mov-ss"))}


def _shadowed_render(p, attacker):
    """The exiting instruction last, right after what shadows it: a MOV SS
    or STI (an interrupt shadow), RFLAGS.TF (a single-step trap after it),
    or both."""
    how = str(p["how"])
    *setup, last = _format(SHADOWED[str(p["op"])], {**p, "yield_": HYPERCALLS["YIELD"]})
    lines = ["mov r11d, ss", *setup]
    if how in ("tf", "tf-mov-ss"):
        lines += ["pushfq", "bts qword ptr [rsp], 8", "popfq"]     # RFLAGS.TF: trap after `last`
    if how in ("mov-ss", "tf-mov-ss"):
        lines += ["mov ss, r11d"]                                  # blocks events until after `last`
    if how == "sti":
        lines += ["sti"]
    lines += [last]
    if how in ("tf", "tf-mov-ss"):
        lines += ["inc dword ptr [rip + tf_lost]"]     # the trap after `last` skips this
    return lines


def _prefixed(rng, memory):
    count = rng.choice((1, 1, 2, 3))
    return {"op": rng.choice(tuple(PREFIXABLE)), "prefixes": " ".join(f"{rng.choice(PREFIXES):#x}"
                                                                     for _ in range(count)),
            "leaf": draw_leaf(rng), "port": draw_port(rng), "msr": draw_msr(rng)}


def _prefixed_render(p, attacker):
    return [f"mov eax, {int(p['leaf']):#x}", f"mov ecx, {int(p['msr']):#x}", f"mov edx, {int(p['port']):#x}",
            "xor ebx, ebx", f".byte {', '.join(str(p['prefixes']).split())}, {PREFIXABLE[str(p['op'])]}"]


def _spin(rng, memory):
    return {"iterations": rng.choice((100, 1000, 10_000, 50_000, 200_000))}


def _plant_gpr(rng, memory):
    return {"register": rng.choice(PLANT_GPRS), **draw_planted(rng)}


def _plant_vector(rng, memory):
    return {"register": rng.randrange(16), **draw_planted(rng)}


def _plant_x87(rng, memory):
    return {"exponent": rng.getrandbits(16), **draw_planted(rng)}


def _plant_msr(rng, memory):
    return {"msr": rng.choice(PLANT_MSRS), **draw_planted(rng)}


def _plant_dr(rng, memory):
    return {"dr": rng.randrange(4), "enable": int(rng.random() < 0.5), **draw_planted(rng)}


def _plant_dr_render(p, attacker):
    dr = int(p["dr"])
    lines = [load("rax", planted(p, attacker)), f"mov dr{dr}, rax"]
    if p["enable"]:     # a breakpoint that would fire in another guest if DR7 leaked
        lines += ["mov rax, dr7", f"or eax, {3 << 2 * dr:#x}", "mov dr7, rax"]
    return lines


def _plant_mem(rng, memory):
    return {"offset": rng.randrange(0, 2048, 8), **draw_planted(rng)}


def _gpa_poke(rng, memory):
    gpa = rng.choice(PLATFORM_GPAS + (memory, memory * 2)) if rng.random() < 0.7 else rng.getrandbits(40)
    return {"gpa": gpa & ~(hw.PAGE_SIZE - 1), "write": int(rng.random() < 0.5), "value": draw_value(rng, memory)}


def _gpa_poke_render(p, attacker):
    gpa = int(p["gpa"])
    return [load("rdi", gpa & ~(hw.LARGE_PAGE_SIZE - 1)), load("rsi", gpa & (hw.LARGE_PAGE_SIZE - 1)),
            load("rax", int(p["value"])), f"mov edx, {int(p['write'])}", "call fuzz_poke_gpa"]


# MMIO steps: an access to the guest's own local or I/O APIC, mapped in the
# poke window, in the forms the MMIO decoder takes (hv/core/decode.s.j2)
# and a few it refuses (which stop the attacker: ends the program only then).
MMIO_DEVICES = ((hw.LAPIC_BASE, hw.LAPIC_REGISTERS << hw.LAPIC_REGISTER_SHIFT),
                (hw.IOAPIC_BASE, hw.IOAPIC_EOI + 0x10), (virtio.BASE, hw.VIRTIO_MMIO_WINDOW_SIZE))
MMIO_FORMS = ("mov dword ptr [rcx + {offset:#x}], {imm:#x}", "mov [rcx + {offset:#x}], eax",
              "mov [rcx + {offset:#x}], rax", "mov [rcx + {offset:#x}], ax", "mov [rcx + {offset:#x}], ah",
              "mov byte ptr [rcx + {offset:#x}], {imm8:#x}", "mov eax, [rcx + {offset:#x}]",
              "mov rax, [rcx + {offset:#x}]", "mov r9d, [rcx + {offset:#x}]", "mov al, [rcx + {offset:#x}]",
              "mov bh, [rcx + {offset:#x}]", "movzx eax, word ptr [rcx + {offset:#x}]",
              "movsx rax, byte ptr [rcx + {offset:#x}]", "movsx r10, word ptr [rcx + {offset:#x}]")
MMIO_REFUSED_FORMS = ("add dword ptr [rcx + {offset:#x}], eax", "lock or dword ptr [rcx + {offset:#x}], 1",
                      "xchg [rcx + {offset:#x}], eax")


def _mmio(rng, memory):
    base, span = rng.choice(MMIO_DEVICES)
    offset = rng.randrange(0, span, 0x10) if rng.random() < 0.8 else rng.randrange(hw.PAGE_SIZE - 8)
    refused = rng.random() < 0.05
    form = rng.choice(MMIO_REFUSED_FORMS if refused else MMIO_FORMS)
    return {"base": base, "offset": offset, "form": form, "imm": rng.getrandbits(31),
            "imm8": rng.getrandbits(8), "value": draw_value(rng, memory)}


def _mmio_render(p, attacker):
    base = int(p["base"])
    window = base & ~(hw.LARGE_PAGE_SIZE - 1)
    return [load("rdi", window), load("rsi", base - window), "xor edx, edx", "call fuzz_poke_gpa",
            "add rcx, rsi", load("rax", int(p["value"])),
            str(p["form"]).format(offset=int(p["offset"]), imm=int(p["imm"]), imm8=int(p["imm8"]))]


# virtio steps: the attacker's disk (fuzz/boot.py gives each one) set up
# as a driver would, mostly, with a queue in fuzz_scratch, then a chain of
# descriptors drawn to miss the device's checks one way or another
# (hv/devices/virtio_blk.s.j2), made available and notified.  The layout
# of fuzz_scratch (page-aligned): the descriptor table, the available
# ring, the used ring, the request header, the status byte, the data.
VIRTIO_SCRATCH = {"desc": 0, "avail": 1024, "used": 2048, "header": 3072, "status": 3088, "data": 3104}
VIRTIO_NUMS = (1, 2, 4, 8, 16, 64, 0, 3, 128)
VIRTIO_FEATURES = (hw.VIRTIO_BLK_F_FLUSH, 0, 0xFFFFFFFF)
VIRTIO_TYPES = (hw.VIRTIO_BLK_T_IN, hw.VIRTIO_BLK_T_OUT, hw.VIRTIO_BLK_T_FLUSH, hw.VIRTIO_BLK_T_GET_ID, 99)
# Where a descriptor points: into fuzz_scratch, or a guest-physical
# address drawn past the attacker's memory or across its end.
VIRTIO_READABLE = ("header", "data", "memory", "outside", "huge", "edge")
VIRTIO_WRITABLE = ("status", "data", "outside", "huge", "edge")
VIRTIO_LENGTHS = (0, 1, 16, 100, 512, 1024, 0xFFFFFFFF, 0x80000000)
VIRTIO_FLAGS = (hw.VIRTQ_DESC_F_NEXT, hw.VIRTQ_DESC_F_WRITE, hw.VIRTQ_DESC_F_INDIRECT)


def _virtio(rng, memory):
    descriptors = []
    count = rng.randrange(1, 5)
    for index in range(count):
        writable = index > 0 and (index == count - 1 or rng.random() < 0.3)
        where = rng.choice(VIRTIO_WRITABLE if writable else VIRTIO_READABLE)
        length = {"header": 16, "status": 1}.get(where, 512)
        if rng.random() < 0.2:
            length = rng.choice(VIRTIO_LENGTHS)
        flags = (hw.VIRTQ_DESC_F_WRITE if writable else 0) | (hw.VIRTQ_DESC_F_NEXT if index < count - 1 else 0)
        if rng.random() < 0.15:
            flags ^= rng.choice(VIRTIO_FLAGS)
        following = index + 1 if rng.random() < 0.9 else rng.choice((0, index, 0xFFFF, rng.randrange(64)))
        descriptors.append(f"{where}:{length}:{flags}:{following}")
    return {"num": rng.choice(VIRTIO_NUMS) if rng.random() < 0.2 else 8,
            "features": rng.choice(VIRTIO_FEATURES), "rings": "fit" if rng.random() < 0.9 else "outside",
            "type": rng.choice(VIRTIO_TYPES), "descriptors": " ".join(descriptors),
            "sector": rng.choice((0, 7, 2047, 2048, 1 << 32, (1 << 64) - 1)),
            "avail": 1 if rng.random() < 0.85 else rng.getrandbits(16),
            "head": 0 if rng.random() < 0.9 else rng.getrandbits(16), "edge": memory - 1,
            "outside": memory + rng.randrange(0, 1 << 20, 16)}


def _virtio_address(where: str, p: Params) -> str:
    if where in VIRTIO_SCRATCH:
        return f"lea rdx, [rax + {VIRTIO_SCRATCH[where]}]"
    return load("rdx", {"memory": 0x1000, "outside": int(p["outside"]), "huge": MASK64 & ~0xFFF,
                        "edge": int(p["edge"])}[where])


def _virtio_render(p, attacker):
    window = virtio.BASE & ~(hw.LARGE_PAGE_SIZE - 1)
    reg = {name: getattr(hw, f"VIRTIO_MMIO_{name}") for name in (
        "STATUS", "DRIVER_FEATURES", "DRIVER_FEATURES_SEL", "QUEUE_SEL", "QUEUE_NUM", "QUEUE_READY",
        "QUEUE_NOTIFY", "QUEUE_DESC_LOW", "QUEUE_DRIVER_LOW", "QUEUE_DEVICE_LOW")}
    status = hw.VIRTIO_STATUS_ACKNOWLEDGE | hw.VIRTIO_STATUS_DRIVER
    lines = [load("rdi", window), load("rsi", virtio.BASE - window), "xor edx, edx", "call fuzz_poke_gpa",
             "add rcx, rsi",
             f"mov dword ptr [rcx + {reg['STATUS']:#x}], 0",
             f"mov dword ptr [rcx + {reg['STATUS']:#x}], {status:#x}",
             f"mov dword ptr [rcx + {reg['DRIVER_FEATURES_SEL']:#x}], 1",
             f"mov dword ptr [rcx + {reg['DRIVER_FEATURES']:#x}], {hw.VIRTIO_F_VERSION_1 >> 32:#x}",
             f"mov dword ptr [rcx + {reg['DRIVER_FEATURES_SEL']:#x}], 0",
             f"mov dword ptr [rcx + {reg['DRIVER_FEATURES']:#x}], {int(p['features']):#x}",
             f"mov dword ptr [rcx + {reg['STATUS']:#x}], {status | hw.VIRTIO_STATUS_FEATURES_OK:#x}",
             f"mov dword ptr [rcx + {reg['QUEUE_SEL']:#x}], 0",
             f"mov dword ptr [rcx + {reg['QUEUE_NUM']:#x}], {int(p['num'])}",
             "lea rax, [rip + fuzz_scratch]"]
    for part, register in (("desc", "QUEUE_DESC_LOW"), ("avail", "QUEUE_DRIVER_LOW"), ("used", "QUEUE_DEVICE_LOW")):
        if p["rings"] == "fit":
            lines += [f"lea rdx, [rax + {VIRTIO_SCRATCH[part]}]", f"mov [rcx + {reg[register]:#x}], edx"]
        else:
            lines.append(f"mov dword ptr [rcx + {reg[register]:#x}], {int(p['outside']):#x}")
    lines += [f"mov dword ptr [rcx + {reg['QUEUE_READY']:#x}], 1",
              f"mov dword ptr [rcx + {reg['STATUS']:#x}], "
              f"{status | hw.VIRTIO_STATUS_FEATURES_OK | hw.VIRTIO_STATUS_DRIVER_OK:#x}"]
    for index, descriptor in enumerate(str(p["descriptors"]).split()):
        where, length, flags, following = descriptor.split(":")
        at = VIRTIO_SCRATCH["desc"] + index * hw.VIRTQ_DESC_SIZE
        lines += [_virtio_address(where, p), f"mov [rax + {at + hw.VIRTQ_DESC_ADDR}], rdx",
                  f"mov dword ptr [rax + {at + hw.VIRTQ_DESC_LEN}], {int(length):#x}",
                  f"mov word ptr [rax + {at + hw.VIRTQ_DESC_FLAGS}], {int(flags):#x}",
                  f"mov word ptr [rax + {at + hw.VIRTQ_DESC_NEXT}], {int(following):#x}"]
    header, avail = VIRTIO_SCRATCH["header"], VIRTIO_SCRATCH["avail"]
    lines += [f"mov dword ptr [rax + {header + hw.VIRTIO_BLK_OUTHDR_TYPE}], {int(p['type'])}",
              load("rdx", int(p["sector"])), f"mov [rax + {header + hw.VIRTIO_BLK_OUTHDR_SECTOR}], rdx",
              f"mov word ptr [rax + {avail + hw.VIRTQ_RING_ENTRIES}], {int(p['head']):#x}",
              f"mov word ptr [rax + {avail + hw.VIRTQ_RING_IDX}], {int(p['avail']):#x}",
              f"mov dword ptr [rcx + {reg['QUEUE_NOTIFY']:#x}], 0"]
    return lines


def _out_of_bounds(rng, memory):
    return {"offset": rng.choice((0, 8, hw.PAGE_SIZE, rng.randrange(1 << 20))), "write": int(rng.random() < 0.5)}


def _out_of_bounds_render(p, attacker):
    access = "mov [rax], cl" if p["write"] else "mov cl, [rax]"
    return ["mov rax, MEMORY_SIZE", f"add rax, {int(p['offset']):#x}", access]


def _raw(rng, memory):
    from fuzz.rawbytes import draw_bytes  # capstone is only needed to draw new raw steps
    return {"bytes": draw_bytes(rng)}


def _raw_render(p, attacker):
    data = bytes.fromhex(str(p["bytes"]))
    return [f".byte {', '.join(f'{b:#04x}' for b in data)}"]


def _simple(lines: list[str]) -> Callable[[Params, int], list[str]]:
    return lambda p, attacker: _format(lines, p)


TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("cpuid", 8, _cpuid, _simple(["mov eax, {leaf:#x}", "mov ecx, {subleaf:#x}", "cpuid"])),
    Template("in", 6, _port, _port_in),
    Template("out", 6, _port, _port_out),
    Template("string-io", 0.5, _port_string, _port_string_render),
    Template("reset-port", 1, _reset_port, _reset_port_render),
    Template("rdmsr", 5, lambda rng, m: {"msr": draw_msr(rng)}, _simple(["mov ecx, {msr:#x}", "rdmsr"])),
    Template("wrmsr", 6, _wrmsr, lambda p, a: [f"mov ecx, {int(p['msr']):#x}", *split(int(p["value"])), "wrmsr"]),
    Template("cr-write", 3, _cr_write, lambda p, a: [load("rax", int(p["value"])), f"mov cr{p['cr']}, rax"]),
    Template("cr-flip", 4, _cr_flip,
             _simple(["mov rax, cr{cr}", "btc rax, {bit}", "mov cr{cr}, rax"])),
    Template("cr-read", 1, lambda rng, m: {"cr": rng.choice((0, 2, 3, 4, 8))}, _simple(["mov rax, cr{cr}"])),
    Template("dr-write", 3, _dr_write, lambda p, a: [load("rax", int(p["value"])), f"mov dr{p['dr']}, rax"]),
    Template("dr-read", 1, lambda rng, m: {"dr": rng.choice((0, 1, 2, 3, 6, 7))}, _simple(["mov rax, dr{dr}"])),
    Template("xsetbv", 3, _xsetbv,
             lambda p, a: [f"mov ecx, {int(p['xcr']):#x}", *split(int(p["value"])), "xsetbv"]),
    Template("xgetbv", 1, lambda rng, m: {"xcr": rng.choice((0, 1, 2))}, _simple(["mov ecx, {xcr}", "xgetbv"])),
    Template("cache", 2, _cache, lambda p, a: _format(_CACHE_OPS[str(p["op"])], p)),
    Template("hlt", 2, lambda rng, m: {"op": rng.choice(("hlt", "pause"))}, _simple(["{op}"])),
    Template("vmx", 4, _vmx, _vmx_render),
    Template("svm", 3, _svm, lambda p, a: [load("rax", int(p["rax"])), f"mov ecx, {int(p['ecx']):#x}",
                                           f".byte {SVM_OPS[str(p['op'])]}"]),
    Template("hypercall", 4, _hypercall, _hypercall_render),
    Template("privileged", 4, _misc, lambda p, a: _format(MISC_PRIVILEGED[str(p["op"])], p)),
    Template("int", 3, _int, _int_render),
    Template("fault", 2, _fault, lambda p, a: list(_FAULTS[str(p["op"])])),
    Template("descriptor", 1, _descriptor, _descriptor_render),
    Template("segment", 2, _segment, _simple(["mov eax, {selector:#x}", "mov {segment}, ax"])),
    Template("xstate", 2, _xstate, _xstate_render),
    Template("shadowed", 2, _shadowed, _shadowed_render),
    Template("single-step", 2, _single_step, _shadowed_render),
    Template("prefixed", 1, _prefixed, _prefixed_render),
    Template("spin", 1, _spin, _simple(["mov ecx, {iterations}", "1: dec ecx", "jnz 1b"])),
    Template("raw", 6, _raw, _raw_render),
    Template("plant-gpr", 3, _plant_gpr, lambda p, a: [load(str(p["register"]), planted(p, a))]),
    Template("plant-xmm", 3, _plant_vector,
             lambda p, a: [load("rax", planted(p, a)), f"movq xmm{p['register']}, rax"]),
    Template("plant-ymm", 2, _plant_vector,
             lambda p, a: [load("rax", planted(p, a)), "mov [rip + fuzz_scratch], rax",
                           f"vbroadcastsd ymm{p['register']}, qword ptr [rip + fuzz_scratch]"]),
    Template("plant-x87", 2, _plant_x87,
             lambda p, a: [load("rax", planted(p, a)), "mov [rip + fuzz_scratch], rax",
                           f"mov word ptr [rip + fuzz_scratch + 8], {int(p['exponent']):#x}",
                           "fld tbyte ptr [rip + fuzz_scratch]"]),
    Template("plant-mmx", 1, lambda rng, m: {"register": rng.randrange(8), **draw_planted(rng)},
             lambda p, a: [load("rax", planted(p, a)), f"movq mm{p['register']}, rax"]),
    Template("plant-msr", 3, _plant_msr,
             lambda p, a: [f"mov ecx, {int(p['msr']):#x}", *split(planted(p, a)), "wrmsr"]),
    Template("plant-dr", 2, _plant_dr, _plant_dr_render),
    Template("plant-cr2", 1, lambda rng, m: draw_planted(rng), lambda p, a: [load("rax", planted(p, a)),
                                                                           "mov cr2, rax"]),
    Template("plant-mem", 1, _plant_mem, lambda p, a: [load("rax", planted(p, a)),
                                                      f"mov [rip + fuzz_scratch + {int(p['offset'])}], rax"]),
    Template("gpa-poke", 1, _gpa_poke, _gpa_poke_render, ends=True),
    Template("mmio", 3, _mmio, _mmio_render),
    Template("virtio", 2, _virtio, _virtio_render),
    Template("out-of-bounds", 0.3, _out_of_bounds, _out_of_bounds_render, ends=True),
)}
