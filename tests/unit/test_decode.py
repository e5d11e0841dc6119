"""The MMIO decoder (hv/core/decode.s.j2) and the guest page walk
(hv/core/guest_paging.s.j2) as machine code: assembled by the builder's own
render and keystone stages (builder/mmio.py), run in unicorn, and compared
with capstone's decoding and with a page walk written here from the SDM.

Every call also checks the routines' contracts: the registers they promise
to keep are kept, the stack is balanced, and they read no instruction byte
past the count (the buffer ends at an unmapped page) and write nothing past
the record or the fetch buffer.
"""

import random
import struct

import pytest
from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, CS_MODE_64, Cs
from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_OP_REG
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as reg

from builder import hw, mmio
from builder.assemble import assemble
from builder.render import render
from builder.structs import (
    GUEST,
    HV,
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
NESTED_TABLES = 0x340000            # the guest's second-level tables: PML4, PDPT, PD, one PT
HV_RECORD = 0x350000                # the hypervisor's record: which tables, which present bit
GUEST_MEMORY = 0x1000000
GUEST_MEMORY_MAPPED = 0x100000      # what unicorn maps there; a guest's memory_size is at most this
SEED = 20261201

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
HARNESS_RECORD = Record("HARNESS", [*(Field(name, 8) for name in GPRS), Field("target", 8),
                                    Field("rflags", 8), Field("rsp", 8)])
KEPT = {
    "mmio_decode": {"rbx", "rdx", "rsi", "rdi", "rbp", "r12", "r13", "r14", "r15"},
    "guest_linear_to_physical": {"rbx", "rdi", "rbp", "r8", "r9", "r10", "r11",
                                 "r12", "r13", "r14", "r15"},
    "guest_fetch_instruction": {"rbx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
                                "r12", "r13", "r14", "r15"},
}
SENTINELS = {name: 0x5A5A_0000_0000_0000 + (i << 8) for i, name in enumerate(GPRS)}


class Routines:
    """The assembled routines in a unicorn x86-64 CPU with flat memory,
    called through tests/unit/call_harness.s.j2."""

    def __init__(self) -> None:
        assembly = mmio.standalone(CODE, HV_RECORD)
        harness = assemble(render("tests/unit/call_harness.s.j2", {
            **HARNESS_RECORD.asm_constants(), "HARNESS_IN": HARNESS_IN, "HARNESS_OUT": HARNESS_OUT,
            "HARNESS_STACK_TOP": STACK_TOP, "HARNESS_SLOT": 8}, registers=GPRS), HARNESS, "harness")
        self.labels = assembly.labels
        self.done = harness.labels["harness_done"]
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for base, size in ((CODE, 0x10000), (HARNESS, 0x20000), (STACK_TOP - 0x4000, 0x4000),
                           (BUFFER_END - PAGE, PAGE), (RECORD & ~(PAGE - 1), PAGE),
                           (FETCH_BUFFER & ~(PAGE - 1), PAGE), (GUEST_RECORD, PAGE),
                           (NESTED_TABLES, 4 * PAGE), (HV_RECORD, PAGE),
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
            # every byte counts: one byte fewer fetched and the decoder must
            # refuse (checked on every third accepted case, for time)
            if self.accepted % 3 == 0 and decode(self.routines, data, bits, want["length"] - 1) is not None:
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
    for _ in range(4000):
        bits = rng.choice((16, 32, 64))
        comparison.check(rng.randbytes(15), bits)
        prefixes = bytes(rng.choice(alphabet) for _ in range(rng.choice((0, 0, 1, 2, 3, 5, 9))))
        opcode = bytes([rng.choice(near)])
        if opcode == b"\x0f":
            opcode += bytes([rng.choice((rng.randrange(256), rng.randrange(0xB0, 0xC0)))])
        comparison.check(prefixes + opcode + rng.randbytes(15), bits)
    comparison.assert_clean()
    assert comparison.accepted > 300


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


# --- guest_linear_to_physical and guest_fetch_instruction ---------------------

CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
EFER_LMA = 1 << 10
CR4_LA57 = 1 << 12
ADDRESS_51_12 = 0x000FFFFFFFFFF000
P, RW, PS = 0x1, 0x2, 0x80                 # present, writable, page size


def reference_walk(memory: bytes, size: int, cr0: int, cr3: int, cr4: int, efer: int,
                   linear: int) -> int | None:
    """SDM Vol. 3A 4.3-4.5 (4- and 5-level), present bits only."""
    def entry(address: int, width: int) -> int | None:
        if address + width > size:
            return None
        value = int.from_bytes(memory[address:address + width], "little")
        return value if value & 1 else None

    if not cr0 & CR0_PG:
        return linear & 0xFFFFFFFF
    if efer & EFER_LMA or cr4 & CR4_PAE:
        shifts = (30, 21, 12)
        if efer & EFER_LMA:
            shifts = (48, 39, 30, 21, 12) if cr4 & CR4_LA57 else (39, 30, 21, 12)
        table = cr3 & ADDRESS_51_12 if efer & EFER_LMA else cr3 & 0xFFFFFFE0
        linear = linear if efer & EFER_LMA else linear & 0xFFFFFFFF
        for level, shift in enumerate(shifts):
            value = entry(table + ((linear >> shift) & 0x1FF) * 8, 8)
            if value is None:
                return None
            if shift == 12 or (level > 0 and value & 0x80):
                offset = (1 << shift) - 1
                return value & ADDRESS_51_12 & ~offset | linear & offset
            table = value & ADDRESS_51_12
    linear &= 0xFFFFFFFF
    pde = entry((cr3 & 0xFFFFF000) + (linear >> 22) * 4, 4)
    if pde is None:
        return None
    if cr4 & CR4_PSE and pde & 0x80:
        return (pde & 0xFFC00000) | ((pde >> 13) & 0xFF) << 32 | linear & 0x3FFFFF
    pte = entry((pde & 0xFFFFF000) + ((linear >> 12) & 0x3FF) * 4, 4)
    return None if pte is None else (pte & 0xFFFFF000) | linear & 0xFFF


class Guest:
    """A guest's memory in unicorn at GUEST_MEMORY, with its GUEST record."""

    def __init__(self, routines: Routines, memory: bytes, size: int, cr0: int, cr3: int,
                 cr4: int = 0, efer: int = 0) -> None:
        self.routines, self.memory, self.size = routines, memory, size
        self.cr = {"r8": cr0, "r9": cr3, "r10": cr4, "r11": efer}
        routines.uc.mem_write(GUEST_MEMORY, memory.ljust(GUEST_MEMORY_MAPPED, b"\0"))
        routines.uc.mem_write(GUEST_RECORD, GUEST.pack(memory_base=GUEST_MEMORY, memory_size=size,
                                                       npt_root=NESTED_TABLES))
        # The guest's memory as the hypervisor reaches it: nested tables
        # mapping guest-physical [0, size) onto GUEST_MEMORY page by page.
        present = hw.PTE_PRESENT
        tables = bytearray(4 * PAGE)
        for level in range(3):                      # PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] -> PT
            struct.pack_into("<Q", tables, level * PAGE, NESTED_TABLES + (level + 1) * PAGE | present)
        for page in range(0, size, PAGE):
            struct.pack_into("<Q", tables, 3 * PAGE + page // PAGE * 8, GUEST_MEMORY + page | present)
        routines.uc.mem_write(NESTED_TABLES, bytes(tables))
        routines.uc.mem_write(HV_RECORD, HV.pack(nested_root=GUEST.offsets["npt_root"], nested_present=present))

    def translate(self, linear: int) -> int | None:
        failed, after = self.routines.call("guest_linear_to_physical", rdi=linear, rbx=GUEST_RECORD,
                                           **self.cr)
        return None if failed else after["rax"]

    def reference(self, linear: int) -> int | None:
        return reference_walk(self.memory, self.size, self.cr["r8"], self.cr["r9"], self.cr["r10"],
                              self.cr["r11"], linear)

    def fetch(self, linear: int) -> bytes:
        self.routines.uc.mem_write(FETCH_BUFFER, b"\xcc" * 15)
        _, after = self.routines.call("guest_fetch_instruction", rdi=linear, rsi=FETCH_BUFFER,
                                      rbx=GUEST_RECORD, **self.cr)
        count = after["rcx"] & 0xFFFFFFFF
        assert count <= 15
        buffer = bytes(self.routines.uc.mem_read(FETCH_BUFFER, 15))
        assert buffer[count:] == b"\xcc" * (15 - count), "wrote past the bytes it reports"
        return buffer[:count]

    def reference_fetch(self, linear: int) -> bytes:
        out = b""
        for i in range(15):
            gpa = self.reference(linear + i)
            if gpa is None or gpa >= self.size:
                break
            out += self.memory[gpa:gpa + 1]
        return out


def random_entries(rng: random.Random, size: int, width: int) -> bytes:
    """Guest memory (and a page past it) full of paging entries: mostly
    present, some with PS, frames in and a few past the guest's memory,
    random flag and ignored bits."""
    pages = size // PAGE + 1
    other_bits = (0xFFF0_0000_0000_0FFF if width == 8 else 0xFFF) & ~(P | PS)
    out = bytearray()
    for _ in range((size + PAGE) // width):
        present, large = rng.random() < 0.8, rng.random() < 0.25
        frame = rng.randrange(pages + 4) << 12
        if width == 8 and rng.random() < 0.05:
            frame |= rng.getrandbits(20) << 32          # far outside the guest
        if width == 4 and large and rng.random() < 0.3:
            frame |= rng.getrandbits(8) << 13            # PSE-36 bits of a 4 MiB page
        value = rng.getrandbits(8 * width) & other_bits | frame | present * P | large * PS
        out += value.to_bytes(width, "little")
    return bytes(out)


MODES = {
    "paging off": {"cr0": 0, "cr4": 0, "efer": 0, "width": 8},
    "32-bit": {"cr0": CR0_PG, "cr4": 0, "efer": 0, "width": 4},
    "32-bit, PSE": {"cr0": CR0_PG, "cr4": CR4_PSE, "efer": 0, "width": 4},
    "PAE": {"cr0": CR0_PG, "cr4": CR4_PAE, "efer": 0, "width": 8},
    "4-level": {"cr0": CR0_PG, "cr4": CR4_PAE, "efer": EFER_LMA, "width": 8},
    "5-level": {"cr0": CR0_PG, "cr4": CR4_PAE | CR4_LA57, "efer": EFER_LMA, "width": 8},
}


@pytest.mark.parametrize("mode", MODES)
def test_walk_and_fetch_agree_with_the_sdm_walk_on_random_tables(routines, mode):
    settings = MODES[mode]
    rng = random.Random(f"{SEED} {mode}")
    translated = refused = fetched_short = 0
    for _ in range(6):
        # a guest's memory is whole pages (config GUEST_MEMORY_GRANULE), which
        # its second-level tables map: entries and fetches near its end
        size = rng.choice((0x20000, 0x40000, 0x20000 - PAGE, 0x10000 + PAGE))
        memory = random_entries(rng, size, settings["width"])
        cr3 = rng.randrange(size // PAGE) << 12 | rng.choice((0, 0x18, 0x20 * rng.randrange(128)))
        guest = Guest(routines, memory, size, settings["cr0"], cr3, settings["cr4"], settings["efer"])
        for _ in range(400):
            linear = rng.getrandbits(64)
            if rng.random() < 0.3:
                linear = linear | 0xFF0                   # near a page's end: fetches cross
            if mode == "paging off" and rng.random() < 0.7:
                linear = rng.choice((rng.randrange(size), size - rng.randrange(20)))
            want = guest.reference(linear)
            assert guest.translate(linear) == want, f"{mode}: {linear:#x}, CR3 {cr3:#x}"
            translated += want is not None
            refused += want is None
            fetched = guest.fetch(linear)
            assert fetched == guest.reference_fetch(linear), f"{mode}: fetch at {linear:#x}"
            fetched_short += 0 < len(fetched) < 15
    if mode == "paging off":
        assert refused == 0 and fetched_short > 10          # cut short by the memory's end
    else:
        assert translated > 300 and refused > 100 and fetched_short > 5


class Tables:
    """Page tables built by hand in a guest's memory."""

    def __init__(self, size: int, width: int = 8) -> None:
        self.memory = bytearray(size)
        self.width = width

    def set(self, table: int, index: int, value: int) -> None:
        start = table + index * self.width
        self.memory[start:start + self.width] = value.to_bytes(self.width, "little")



def test_4_level_paging_maps_4_kib_2_mib_and_1_gib_pages(routines):
    t = Tables(0x40000)
    pml4, pdpt, pd, pt = 0x1000, 0x2000, 0x3000, 0x4000
    t.set(pml4, 0x1FF, pdpt | P | RW | 1 << 63)            # linear 0xFFFFFF80_00000000 and up
    t.set(pdpt, 0, pd | P)
    t.set(pdpt, 1, 0x1_4000_0000 | P | PS | 1 << 12)       # 1 GiB page; bit 12 is PAT, not address
    t.set(pd, 0, pt | P)
    t.set(pd, 1, 0x0060_0000 | P | PS)                     # 2 MiB page
    t.set(pt, 5, 0x0003_7000 | P | 0x7FF << 52)            # 4 KiB page, ignored high bits set
    t.set(pt, 6, 0x0003_8000)                              # not present
    t.set(pd, 2, 0x0100_0000 | P)                          # a page table past the guest's memory
    guest = Guest(routines, bytes(t.memory), len(t.memory), CR0_PG, pml4, CR4_PAE, EFER_LMA)
    base = 0xFFFF_FF80_0000_0000
    assert guest.translate(base + 0x5123) == 0x37123
    assert guest.translate(base + 0x4000_0000 + 0x123_4567) == 0x1_4123_4567
    assert guest.translate(base + 0x20_0000 + 0x1_2345) == 0x61_2345
    assert guest.translate(base + 0x6000) is None
    assert guest.translate(base + 0x40_0000) is None
    assert guest.translate(0x5123) is None                  # PML4 entry 0 is not present


def test_5_level_paging_starts_at_the_pml5(routines):
    """CR4.LA57 (Linux turns it on where CPUID has it): one more level, bits 56:48."""
    t = Tables(0x40000)
    pml5, high_pml4, pml4, pdpt, pd = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
    t.set(pml5, 0x111, high_pml4 | P)                       # 0xFF11_0000_0000_0000: Linux's direct map
    t.set(high_pml4, 0, pdpt | P)
    t.set(pdpt, 0, 0x0000_0000 | P | PS)                    # 1 GiB page at 0
    t.set(pml5, 0, pml4 | P)
    t.set(pml4, 0, pdpt | P)
    t.set(pdpt, 1, pd | P)
    t.set(pd, 3, 0x0020_0000 | P | PS)
    guest = Guest(routines, bytes(t.memory), len(t.memory), CR0_PG, pml5, CR4_PAE | CR4_LA57, EFER_LMA)
    assert guest.translate(0xFF11_0000_0001_2345) == 0x1_2345
    assert guest.translate(0x4060_0123) == 0x20_0123
    assert guest.translate(0xFF12_0000_0000_0000) is None    # PML5 entry 0x112: not present
    four_level = Guest(routines, bytes(t.memory), len(t.memory), CR0_PG, pml5, CR4_PAE, EFER_LMA)
    assert four_level.translate(0x4060_0123) is None         # the same tables read as 4-level: PML4[0]
                                                             # is then the PML5's entry 0, a PDPT


def test_pae_and_32_bit_paging(routines):
    t = Tables(0x10000)
    pdpt, pd, pt = 0x1020, 0x2000, 0x3000                  # PAE: CR3 bits 31:5
    t.set(pdpt, 3, pd | P)
    t.set(pd, 0x1FF, 0x00A0_0000 | P | PS)
    t.set(pd, 0, pt | P)
    t.set(pt, 0x10, 0x5000 | P)
    guest = Guest(routines, bytes(t.memory), len(t.memory), CR0_PG, pdpt, CR4_PAE)
    assert guest.translate(0xFFE0_1234) == 0xA0_1234
    assert guest.translate(0xC001_0ABC) == 0x5ABC
    assert guest.translate(0x1_C001_0ABC) == 0x5ABC          # linear addresses have 32 bits
    assert guest.translate(0x4000_0000) is None             # PDPTE 1 not present

    t = Tables(0x10000, width=4)
    pd, pt = 0x4000, 0x5000
    t.set(pd, 0x3FB, 0x0040_0000 | 0x5 << 13 | P | PS)     # 4 MiB with PSE-36 bits 39:32 = 5
    t.set(pd, 1, pt | P)
    t.set(pt, 2, 0x9000 | P)
    t.set(pt, 3, 0x9000 | PS | P)                          # bit 7 of a PTE is PAT
    for cr4, big in ((CR4_PSE, 0x5_0045_6789), (0, None)):
        guest = Guest(routines, bytes(t.memory), len(t.memory), CR0_PG, pd, cr4)
        assert guest.translate(0xFEC5_6789) == big
        assert guest.translate(0x0040_2345) == 0x9345
        assert guest.translate(0x0040_3345) == 0x9345


def test_fetch_crosses_pages_and_stops_where_the_next_one_is_unmapped(routines):
    t = Tables(0x10000)
    pml4, pdpt, pd, pt = 0x1000, 0x2000, 0x3000, 0x4000
    t.set(pml4, 0, pdpt | P)
    t.set(pdpt, 0, pd | P)
    t.set(pd, 0, pt | P)
    t.set(pt, 0x10, 0x8000 | P)                            # linear 0x10000 -> 0x8000
    t.set(pt, 0x11, 0x6000 | P)                            # linear 0x11000 -> 0x6000: not contiguous
    code = bytes(range(0x40, 0x4F))
    t.memory[0x8FF9:0x9000] = code[:7]
    t.memory[0x6000:0x6008] = code[7:]
    t.memory[0x9000:0x9010] = b"\x90" * 16                 # what a fetch that did not walk again would read
    guest = Guest(routines, bytes(t.memory), len(t.memory), CR0_PG, pml4, CR4_PAE, EFER_LMA)
    assert guest.fetch(0x10FF9) == code
    assert guest.fetch(0x11FFC) == t.memory[0x6FFC:0x7000]  # linear 0x12000 is not mapped
    assert guest.fetch(0x12000) == b""
    guest = Guest(routines, bytes(t.memory), 0x6000, 0, 0)   # paging off: stops at the memory's end
    assert guest.fetch(0x5FFA) == t.memory[0x5FFA:0x6000]


def test_an_entry_in_the_last_bytes_of_guest_memory_is_read_and_one_past_it_is_not(routines):
    size = 0x3000
    t = Tables(size)
    t.set(0x2000, 0x1FF, 0x1000 | P)                        # the guest's last 8 bytes
    t.set(0x1000, 0x1FF, 0x0001_0000_0000 | P)              # a table far outside (unmapped here)
    t.set(0x1000, 0x1FE, 0x2000 | P | PS)                   # a 1 GiB page
    guest = Guest(routines, bytes(t.memory), size, CR0_PG, 0x2000, CR4_PAE, EFER_LMA)
    assert guest.translate(0xFFFF_FF80_0000_0000 | 0x1FE << 30 | 0x1234) is not None
    assert guest.translate(0xFFFF_FF80_0000_0000 | 0x1FF << 30) is None
    guest = Guest(routines, bytes(t.memory), size - PAGE, CR0_PG, 0x2000, CR4_PAE, EFER_LMA)
    assert guest.translate(0xFFFF_FF80_0000_0000 | 0x1FE << 30) is None   # its page is not the guest's
