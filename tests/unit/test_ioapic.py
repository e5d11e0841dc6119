"""The guest's I/O APIC (hv/devices/ioapic.s.j2) as machine code:
assembled by the builder's render and keystone stages together with stub
local APIC routines (tests/unit/lapic_stub.s.j2) that log every interrupt
delivered, run in unicorn against a GUEST record, and compared with
hand-written expectations and with an 82093AA written here from its data
sheet (sections 3.1-3.2.4) and SDM Vol. 3A 11.6.2.

Every call also checks the routines' contract: the registers they promise
to keep are kept, the stack is balanced, the stubs get the guest record in
RBX, and nothing in the record but the I/O APIC's own state changes.
"""

import random
import struct

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as reg

from builder import devices, hw
from builder.assemble import assemble
from builder.render import render
from builder.structs import GUEST, IOAPIC, Field, Record

PAGE = 0x1000
CODE = 0x100000
HARNESS = 0x180000                  # tests/unit/call_harness.s.j2
HARNESS_IN = 0x190000
HARNESS_OUT = 0x190800
STACK_TOP = 0x200000 + 0x4000
GUEST_RECORD = 0x330000
STUB_LOG_COUNT = 0x340000
STUB_LOG = 0x340040
STUB_LOG_PAGES = 4
STUB_GARBAGE = 0xDEAD_BEEF_0BAD_F00D
STUB_KIND_INTERRUPT = 1
STUB_KIND_NMI = 2
SEED = 20261202

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
CLOBBERED = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")
KEPT = set(GPRS) - set(CLOBBERED)
SENTINELS = {name: 0x5A5A_0000_0000_0000 + (i << 8) for i, name in enumerate(GPRS)}
HARNESS_RECORD = Record("HARNESS", [*(Field(name, 8) for name in GPRS), Field("target", 8),
                                    Field("rflags", 8), Field("rsp", 8)])
STUB_CALL = Record("STUB_CALL", [Field("kind", 8), Field("rcx", 8), Field("rdx", 8), Field("rbx", 8)])

# The window (82093AA 3.1; the EOI register of version 0x20 I/O APICs)
IOREGSEL, IOWIN, EOI = 0x00, 0x10, 0x40
# A redirection entry's fields (82093AA 3.2.4)
VECTOR = 0xFF
DELIVERY_MODE_SHIFT = 8
FIXED, LOWEST_PRIORITY, SMI, NMI, INIT, EXTINT = 0, 1, 2, 4, 5, 7
LOGICAL = 1 << 11
DELIVERY_STATUS = 1 << 12
POLARITY_LOW = 1 << 13
REMOTE_IRR = 1 << 14
LEVEL = 1 << 15
MASKED = 1 << 16
DESTINATION_SHIFT = 56
LOW_WRITABLE = 0x1_AFFF                      # bits 0-11, 13, 15, 16
# The local APIC registers the destination depends on (SDM Vol. 3A table
# 11-1), kept as dwords at GUEST.lapic + (offset >> 4) * 4
APIC_ID, APIC_LDR, APIC_DFR = 0x20, 0xD0, 0xE0
DFR_FLAT, DFR_CLUSTER = 0xFFFF_FFFF, 0x0FFF_FFFF
# What Linux reads from QEMU's I/O APIC as register 1 (24 pins, version 0x20)
VERSION_REGISTER = 0x0017_0020

PINS = 24


def entry_low(vector: int, mode: int = FIXED, level: bool = False, masked: bool = False,
              logical: bool = False) -> int:
    return vector | mode << DELIVERY_MODE_SHIFT | level * LEVEL | masked * MASKED | logical * LOGICAL


class IoApic:
    """The assembled model in a unicorn x86-64 CPU, with a guest record,
    called through tests/unit/call_harness.s.j2."""

    def __init__(self) -> None:
        constants = {**hw.asm_constants(), **GUEST.asm_constants(), **devices.asm_constants()}
        stub_constants = {**STUB_CALL.asm_constants(), "STUB_LOG": STUB_LOG, "STUB_LOG_COUNT": STUB_LOG_COUNT,
                          "STUB_CALL_SHIFT": STUB_CALL.size.bit_length() - 1, "STUB_GARBAGE": STUB_GARBAGE,
                          "STUB_KIND_INTERRUPT": STUB_KIND_INTERRUPT, "STUB_KIND_NMI": STUB_KIND_NMI}
        assert 1 << stub_constants["STUB_CALL_SHIFT"] == STUB_CALL.size
        source = (render("hv/devices/ioapic.s.j2", constants)
                  + render("tests/unit/lapic_stub.s.j2", stub_constants, clobbered=CLOBBERED))
        assembly = assemble(source, CODE, "I/O APIC with stub local APIC routines")
        harness = assemble(render("tests/unit/call_harness.s.j2", {
            **HARNESS_RECORD.asm_constants(), "HARNESS_IN": HARNESS_IN, "HARNESS_OUT": HARNESS_OUT,
            "HARNESS_STACK_TOP": STACK_TOP, "HARNESS_SLOT": 8}, registers=GPRS), HARNESS, "harness")
        self.labels = assembly.labels
        self.done = harness.labels["harness_done"]
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for base, size in ((CODE, 0x10000), (HARNESS, 0x20000), (STACK_TOP - 0x4000, 0x4000),
                           (GUEST_RECORD, (GUEST.size + PAGE - 1) // PAGE * PAGE),
                           (STUB_LOG_COUNT, STUB_LOG_PAGES * PAGE)):
            self.uc.mem_map(base, size)
        self.uc.mem_write(CODE, assembly.code)
        self.uc.mem_write(HARNESS, harness.code)
        self.reset()

    def reset(self, apic_id: int = 0, ldr: int = 0, dfr: int = DFR_FLAT) -> None:
        """A guest record as the builder packs it, with these local APIC registers."""
        self.uc.mem_write(GUEST_RECORD, GUEST.pack(**devices.reset_fields()))
        self.set_lapic(apic_id, ldr, dfr)

    def set_lapic(self, apic_id: int, ldr: int, dfr: int) -> None:
        for offset, value in ((APIC_ID, apic_id), (APIC_LDR, ldr), (APIC_DFR, dfr)):
            where = GUEST_RECORD + GUEST.offsets["lapic"] + (offset >> 4) * 4
            self.uc.mem_write(where, value.to_bytes(4, "little"))

    def state(self) -> bytes:
        """The I/O APIC's bytes in the guest record."""
        return bytes(self.uc.mem_read(GUEST_RECORD + GUEST.offsets["ioapic"], IOAPIC.size))

    def call(self, label: str, **registers: int) -> tuple[dict[str, int], list[tuple[int, ...]]]:
        """Run `label` until it returns: the registers after, and the stubs' calls."""
        before = {**SENTINELS, "rbx": GUEST_RECORD, **registers}
        record_before = bytes(self.uc.mem_read(GUEST_RECORD, GUEST.size))
        self.uc.mem_write(STUB_LOG_COUNT, bytes(8))
        self.uc.mem_write(HARNESS_IN, HARNESS_RECORD.pack(**before, target=self.labels[label]))
        self.uc.emu_start(HARNESS, self.done, count=50_000)
        assert self.uc.reg_read(reg.UC_X86_REG_RIP) == self.done, f"{label} did not return"
        raw = self.uc.mem_read(HARNESS_OUT, HARNESS_RECORD.size)
        after = dict(zip([*GPRS, "target", "rflags", "rsp"], struct.unpack(f"<{len(GPRS) + 3}Q", raw)))
        assert after["rsp"] == STACK_TOP - 8, f"{label} left the stack unbalanced"
        changed = {n for n in KEPT if after[n] != before[n]}
        assert not changed, f"{label} changed {sorted(changed)}, which it promises to keep"
        record_after = bytes(self.uc.mem_read(GUEST_RECORD, GUEST.size))
        start, end = GUEST.offsets["ioapic"], GUEST.offsets["ioapic"] + IOAPIC.size
        assert record_after[:start] + record_after[end:] == record_before[:start] + record_before[end:], \
            f"{label} wrote outside the I/O APIC's state"
        count = int.from_bytes(self.uc.mem_read(STUB_LOG_COUNT, 8), "little")
        assert count * STUB_CALL.size <= STUB_LOG_PAGES * PAGE - (STUB_LOG - STUB_LOG_COUNT)
        calls = []
        for i in range(count):
            kind, rcx, rdx, rbx = struct.unpack("<4Q", self.uc.mem_read(STUB_LOG + i * STUB_CALL.size,
                                                                        STUB_CALL.size))
            assert rbx == GUEST_RECORD, f"{label}: a local APIC routine got RBX {rbx:#x}"
            if kind == STUB_KIND_NMI:
                calls.append(("nmi",))
            else:
                assert kind == STUB_KIND_INTERRUPT
                calls.append(("interrupt", rcx & 0xFFFF_FFFF, rdx & 0xFFFF_FFFF))
        return after, calls

    # The interface, one method per routine: each returns the deliveries
    def read(self, offset: int, size: int = 4) -> int:
        after, calls = self.call("ioapic_mmio_read", rdx=offset, rcx=size)
        assert calls == [], "a read delivered an interrupt"
        return after["rax"] if size == 8 else after["rax"] & 0xFFFF_FFFF

    def write(self, offset: int, value: int, size: int = 4) -> list:
        return self.call("ioapic_mmio_write", rdx=offset, rcx=size, rax=value)[1]

    def assert_pin(self, pin: int) -> list:
        return self.call("ioapic_pin_assert", rcx=pin)[1]

    def deassert_pin(self, pin: int) -> list:
        return self.call("ioapic_pin_deassert", rcx=pin)[1]

    def pulse_pin(self, pin: int) -> list:
        return self.call("ioapic_pin_pulse", rcx=pin)[1]

    def eoi(self, vector: int) -> list:
        return self.call("ioapic_eoi", rcx=vector)[1]

    # Conveniences through the window
    def register(self, number: int) -> int:
        assert self.write(IOREGSEL, number) == []
        return self.read(IOWIN)

    def set_register(self, number: int, value: int) -> list:
        assert self.write(IOREGSEL, number) == []
        return self.write(IOWIN, value)

    def program(self, pin: int, low: int, destination: int = 0) -> list:
        """Pin's entry: high dword first (as Linux writes an entry masked first)."""
        return (self.set_register(0x11 + 2 * pin, destination << 24)
                + self.set_register(0x10 + 2 * pin, low))

    def entry(self, pin: int) -> int:
        return self.register(0x10 + 2 * pin) | self.register(0x11 + 2 * pin) << 32


class Reference:
    """An 82093AA as its data sheet describes it, in front of one local APIC."""

    def __init__(self, apic_id: int = 0, ldr: int = 0, dfr: int = DFR_FLAT) -> None:
        self.entries = [MASKED] * PINS          # 3.2.4: masked at reset
        self.levels = [False] * PINS
        self.select = 0
        self.id = hw.GUEST_IOAPIC_ID            # the ID the guest's boot tables give
        self.lapic = (apic_id, ldr, dfr)
        self.sent: list[tuple] = []

    def state(self) -> bytes:
        return IOAPIC.pack(entries=b"".join(e.to_bytes(8, "little") for e in self.entries),
                           pin_levels=sum(1 << n for n, high in enumerate(self.levels) if high),
                           select=self.select, id=self.id)

    def delivered(self) -> list:
        sent, self.sent = self.sent, []
        return sent

    # 3.1: two dword registers in the window, and the EOI register
    def read(self, offset: int, size: int = 4) -> int:
        if size != 4:
            return 0
        if offset == IOREGSEL:
            return self.select
        if offset == IOWIN:
            return self.read_register(self.select)
        return 0

    def write(self, offset: int, value: int, size: int = 4) -> list:
        if size == 4 and offset == IOREGSEL:
            self.select = value & 0xFF
        elif size == 4 and offset == IOWIN:
            self.write_register(self.select, value & 0xFFFF_FFFF)
        elif size == 4 and offset == EOI:
            self.end_of_interrupt(value & 0xFF)
        return self.delivered()

    def read_register(self, number: int) -> int:
        if number in (0, 2):                    # 3.2.1 ID, 3.2.3 arbitration ID
            return self.id << 24
        if number == 1:                         # 3.2.2
            return VERSION_REGISTER
        if 0x10 <= number < 0x10 + 2 * PINS:
            pin, high = divmod(number - 0x10, 2)
            return self.entries[pin] >> 32 * high & 0xFFFF_FFFF
        return 0

    def write_register(self, number: int, value: int) -> None:
        if number == 0:
            self.id = value >> 24 & 0xF
        if not 0x10 <= number < 0x10 + 2 * PINS:
            return
        pin, high = divmod(number - 0x10, 2)
        old = self.entries[pin]
        if high:
            self.entries[pin] = old & 0xFFFF_FFFF | (value >> 24) << DESTINATION_SHIFT
        else:
            new = old & ~0xFFFF_FFFF | value & LOW_WRITABLE | old & (DELIVERY_STATUS | REMOTE_IRR)
            if not new & LEVEL:
                new &= ~REMOTE_IRR
            self.entries[pin] = new
        self.examine(pin)

    # The pins and the EOI
    def assert_pin(self, pin: int) -> list:
        if pin < PINS:
            rising = not self.levels[pin]
            self.levels[pin] = True
            if self.takes_edges(pin):
                if rising:
                    self.send(pin)
            else:
                self.examine(pin)
        return self.delivered()

    def deassert_pin(self, pin: int) -> list:
        if pin < PINS:
            self.levels[pin] = False
        return self.delivered()

    def pulse_pin(self, pin: int) -> list:
        return self.assert_pin(pin) + self.deassert_pin(pin)

    def eoi(self, vector: int) -> list:
        self.end_of_interrupt(vector)
        return self.delivered()

    def end_of_interrupt(self, vector: int) -> None:
        """Every level entry with the vector loses Remote IRR, and is examined again."""
        for pin in range(PINS):
            if self.entries[pin] & LEVEL and self.entries[pin] & VECTOR == vector & 0xFF:
                self.entries[pin] &= ~REMOTE_IRR
                self.examine(pin)

    # Delivery
    def mode(self, pin: int) -> int:
        return self.entries[pin] >> DELIVERY_MODE_SHIFT & 7

    def takes_edges(self, pin: int) -> bool:
        return not self.entries[pin] & LEVEL or self.mode(pin) == NMI     # NMI: always an edge

    def examine(self, pin: int) -> None:
        """A level entry delivers while its pin is high and Remote IRR clear."""
        if not self.takes_edges(pin) and self.levels[pin] and not self.entries[pin] & REMOTE_IRR:
            self.send(pin)

    def send(self, pin: int) -> None:
        entry = self.entries[pin]
        if entry & MASKED or not self.accepts(entry >> DESTINATION_SHIFT, bool(entry & LOGICAL)):
            return
        if self.mode(pin) == NMI:
            self.sent.append(("nmi",))
        elif self.mode(pin) in (FIXED, LOWEST_PRIORITY) and entry & VECTOR >= 16:
            level = bool(entry & LEVEL)
            if level:
                self.entries[pin] |= REMOTE_IRR
            self.sent.append(("interrupt", entry & VECTOR, int(level)))

    def accepts(self, destination: int, logical: bool) -> bool:
        """SDM Vol. 3A 11.6.2.1 and 11.6.2.2, for the one local APIC."""
        apic_id, ldr, dfr = self.lapic
        if not logical:
            return destination in (0xFF, apic_id >> 24)
        mine = ldr >> 24
        if dfr >> 28 == 0xF:
            return destination & mine != 0
        if dfr >> 28 == 0x0:
            same_cluster = destination >> 4 in (0xF, mine >> 4)
            return same_cluster and destination & mine & 0xF != 0
        return False


@pytest.fixture(scope="module")
def machine():
    return IoApic()


@pytest.fixture
def ioapic(machine):
    """The model as the guest starts: physical APIC ID 0, flat logical model, LDR 0."""
    machine.reset()
    return machine


# --- registers ---------------------------------------------------------------

def test_reset_state_every_entry_masked_and_the_id_the_tables_give(ioapic):
    assert ioapic.read(IOREGSEL) == 0
    assert ioapic.register(0) == hw.GUEST_IOAPIC_ID << 24
    assert ioapic.register(1) == VERSION_REGISTER
    assert ioapic.register(2) == hw.GUEST_IOAPIC_ID << 24
    for pin in range(PINS):
        assert ioapic.entry(pin) == MASKED, f"pin {pin}"


def test_reset_state_is_the_builders_record(ioapic):
    """builder/devices.py reset_fields packs what the reference starts from."""
    assert ioapic.state() == Reference().state()


def test_id_keeps_bits_27_24_and_version_and_arbitration_are_read_only(ioapic):
    assert ioapic.set_register(0, 0xFFFF_FFFF) == []
    assert ioapic.register(0) == 0x0F00_0000
    assert ioapic.register(2) == 0x0F00_0000              # the arbitration ID follows the ID
    ioapic.set_register(0, 0x0500_0000)
    assert ioapic.register(0) == 0x0500_0000
    for number in (1, 2):
        ioapic.set_register(number, 0x1234_5678)
    assert ioapic.register(1) == VERSION_REGISTER
    assert ioapic.register(2) == 0x0500_0000


def test_every_entry_stores_its_writable_bits_and_reads_reserved_bits_as_0(ioapic):
    for pin in range(PINS):
        low, high = 0x10 + 2 * pin, 0x11 + 2 * pin
        ioapic.set_register(high, 0xFFFF_FFFF)
        assert ioapic.register(high) == 0xFF00_0000, f"pin {pin}: bits 55:32 are reserved"
        ioapic.set_register(low, 0xFFFF_FFFF & ~LEVEL)    # edge: no pin is high, nothing is sent
        assert ioapic.register(low) == 0x1_2FFF, f"pin {pin}: delivery status, Remote IRR, 17-31 read 0"
        ioapic.set_register(low, 0)
        ioapic.set_register(high, 0x5A00_0000 | pin)
        assert ioapic.entry(pin) == 0x5A << 56, f"pin {pin}"
        ioapic.set_register(low, 0x20 + pin | MASKED | POLARITY_LOW)
    # every entry kept its own value
    for pin in range(PINS):
        assert ioapic.entry(pin) == 0x5A << 56 | 0x20 + pin | MASKED | POLARITY_LOW


def test_remote_irr_is_read_only_and_edge_triggered_entries_have_none(ioapic):
    ioapic.program(5, entry_low(0x35, level=True))
    assert ioapic.assert_pin(5) == [("interrupt", 0x35, 1)]
    assert ioapic.register(0x1A) & REMOTE_IRR
    ioapic.set_register(0x1A, entry_low(0x35, level=True, masked=True))      # bit 14 written 0
    assert ioapic.register(0x1A) == entry_low(0x35, level=True, masked=True) | REMOTE_IRR
    ioapic.set_register(0x1A, entry_low(0x35, masked=True) | REMOTE_IRR | DELIVERY_STATUS)  # made edge
    assert ioapic.register(0x1A) == entry_low(0x35, masked=True)
    ioapic.deassert_pin(5)
    ioapic.set_register(0x1A, entry_low(0x35, level=True) | REMOTE_IRR)      # cannot set it either
    assert ioapic.register(0x1A) == entry_low(0x35, level=True)


def test_unknown_registers_read_0_and_writes_to_them_change_nothing(ioapic):
    ioapic.program(0, entry_low(0x40, masked=True), destination=0x12)
    before = ioapic.state()
    for number in [*range(3, 0x10), *range(0x40, 0x100, 7), 0xFF]:
        assert ioapic.set_register(number, 0xFFFF_FFFF) == []
        assert ioapic.register(number) == 0, f"register {number:#x}"
    ioapic.write(IOREGSEL, 0)
    assert ioapic.state()[:IOAPIC.offsets["select"]] == before[:IOAPIC.offsets["select"]]
    assert ioapic.register(0) == hw.GUEST_IOAPIC_ID << 24


def test_ioregsel_keeps_bits_7_0(ioapic):
    ioapic.write(IOREGSEL, 0xABCD_EF12)
    assert ioapic.read(IOREGSEL) == 0x12
    ioapic.write(IOREGSEL, 0x7FFF_FF1E)                  # register 0x1E: pin 7's low dword
    assert ioapic.read(IOREGSEL) == 0x1E
    assert ioapic.read(IOWIN) == MASKED


@pytest.mark.parametrize("offset, size", [
    (IOREGSEL, 1), (IOREGSEL, 2), (IOREGSEL, 8), (IOWIN, 1), (IOWIN, 2), (IOWIN, 8),
    (EOI, 1), (EOI, 2), (EOI, 8), (0x01, 1), (0x04, 4), (0x11, 4), (0x14, 4), (0x20, 4), (0x44, 4),
    (0xFFC, 4), (0x800, 8)])
def test_other_sizes_and_offsets_read_0_and_ignore_writes(ioapic, offset, size):
    ioapic.program(3, entry_low(0x33, level=True))        # an EOI of 0x33 would deliver again
    ioapic.assert_pin(3)
    ioapic.write(IOREGSEL, 0x16)
    before = ioapic.state()
    assert ioapic.read(offset, size) == 0
    assert ioapic.write(offset, 0xFFFF_FFFF_FFFF_FF33, size) == []
    assert ioapic.write(offset, 0x33, size) == []
    assert ioapic.state() == before


# --- delivery -----------------------------------------------------------------

def test_edge_triggered_entries_deliver_on_rising_edges_only(ioapic):
    ioapic.program(4, entry_low(0x34))
    assert ioapic.pulse_pin(4) == [("interrupt", 0x34, 0)]
    assert ioapic.pulse_pin(4) == [("interrupt", 0x34, 0)]
    assert ioapic.assert_pin(4) == [("interrupt", 0x34, 0)]
    assert ioapic.assert_pin(4) == []                     # held high: no new edge
    assert ioapic.pulse_pin(4) == []                      # still high before the pulse
    assert ioapic.assert_pin(4) == [("interrupt", 0x34, 0)]
    assert ioapic.deassert_pin(4) == []
    assert ioapic.eoi(0x34) == []                         # an EOI means nothing to an edge entry
    assert ioapic.register(0x18) == 0x34                  # and never a Remote IRR
    assert ioapic.pulse_pin(5) == []                      # another pin: its entry is masked


def test_level_triggered_entries_hold_remote_irr_until_the_eoi(ioapic):
    ioapic.program(9, entry_low(0x39, level=True))
    assert ioapic.assert_pin(9) == [("interrupt", 0x39, 1)]
    assert ioapic.register(0x22) == entry_low(0x39, level=True) | REMOTE_IRR
    assert ioapic.assert_pin(9) == []                     # Remote IRR set: nothing more
    assert ioapic.deassert_pin(9) == []
    assert ioapic.register(0x22) & REMOTE_IRR             # the EOI clears it, not the pin
    assert ioapic.eoi(0x38) == []                         # another vector
    assert ioapic.register(0x22) & REMOTE_IRR
    assert ioapic.eoi(0x39) == []                         # pin low: nothing delivered again
    assert ioapic.register(0x22) == entry_low(0x39, level=True)
    assert ioapic.pulse_pin(9) == [("interrupt", 0x39, 1)]
    assert ioapic.eoi(0x39) == []


@pytest.mark.parametrize("by_register", [False, True], ids=["broadcast EOI", "EOI register"])
def test_an_eoi_delivers_again_while_the_pin_is_asserted(ioapic, by_register):
    def eoi(vector):
        return ioapic.write(EOI, 0xFFFF_FF00 | vector) if by_register else ioapic.eoi(vector)
    ioapic.program(12, entry_low(0x4C, level=True))
    ioapic.program(13, entry_low(0x4C, level=True))       # a shared vector
    ioapic.program(14, entry_low(0x4C))                   # edge, same vector
    ioapic.program(15, entry_low(0x4D, level=True))
    assert ioapic.assert_pin(12) == [("interrupt", 0x4C, 1)]
    assert ioapic.assert_pin(13) == [("interrupt", 0x4C, 1)]
    assert ioapic.assert_pin(14) == [("interrupt", 0x4C, 0)]
    assert ioapic.assert_pin(15) == [("interrupt", 0x4D, 1)]
    ioapic.deassert_pin(12)
    # both entries with 0x4C lose Remote IRR, the asserted one delivers again
    assert eoi(0x4C) == [("interrupt", 0x4C, 1)]
    assert ioapic.register(0x10 + 2 * 12) & REMOTE_IRR == 0
    assert ioapic.register(0x10 + 2 * 13) & REMOTE_IRR
    assert ioapic.register(0x10 + 2 * 15) & REMOTE_IRR    # 0x4D untouched
    assert eoi(0x4D) == [("interrupt", 0x4D, 1)]
    assert ioapic.assert_pin(12) == [("interrupt", 0x4C, 1)]
    assert ioapic.read(EOI) == 0                          # write-only
    assert eoi(0x4C) == [("interrupt", 0x4C, 1), ("interrupt", 0x4C, 1)]


def test_masking_level_delivers_on_unmask_and_an_edge_is_lost(ioapic):
    ioapic.program(1, entry_low(0x41, masked=True))
    ioapic.program(2, entry_low(0x42, level=True, masked=True))
    assert ioapic.pulse_pin(1) == []
    assert ioapic.assert_pin(1) == []
    assert ioapic.assert_pin(2) == []
    assert ioapic.register(0x14) & REMOTE_IRR == 0
    assert ioapic.set_register(0x12, entry_low(0x41)) == []           # the edges are gone
    assert ioapic.set_register(0x14, entry_low(0x42, level=True)) == [("interrupt", 0x42, 1)]
    assert ioapic.set_register(0x14, entry_low(0x42, level=True)) == []  # Remote IRR set now
    # masked while Remote IRR is set: the EOI clears it, the unmask delivers
    ioapic.set_register(0x14, entry_low(0x42, level=True, masked=True))
    assert ioapic.eoi(0x42) == []
    assert ioapic.set_register(0x14, entry_low(0x42, level=True)) == [("interrupt", 0x42, 1)]
    # an edge entry made level while its pin is high delivers at once
    assert ioapic.set_register(0x12, entry_low(0x41, level=True)) == [("interrupt", 0x41, 1)]


@pytest.mark.parametrize("logical, destination, apic_id, ldr, dfr, accepted", [
    # physical: the APIC ID, or 0xFF for every local APIC (SDM 11.6.2.1)
    (False, 0x00, 0x00, 0x00, DFR_FLAT, True),
    (False, 0x03, 0x03, 0x00, DFR_FLAT, True),
    (False, 0x03, 0x02, 0x03, DFR_FLAT, False),
    (False, 0xFF, 0x05, 0x00, DFR_FLAT, True),
    (False, 0x0F, 0x00, 0x00, DFR_FLAT, False),
    (False, 0x01, 0x00, 0x01, DFR_FLAT, False),            # the LDR means nothing here
    # logical, flat model: a bit per local APIC
    (True, 0x01, 0x00, 0x01, DFR_FLAT, True),
    (True, 0x06, 0x00, 0x04, DFR_FLAT, True),
    (True, 0x06, 0x00, 0x01, DFR_FLAT, False),
    (True, 0xFF, 0x07, 0x80, DFR_FLAT, True),
    (True, 0xFF, 0x00, 0x00, DFR_FLAT, False),             # LDR 0: in no logical group
    (True, 0x00, 0x00, 0x00, DFR_FLAT, False),             # the APIC ID means nothing here
    (True, 0x31, 0x00, 0x21, 0xF000_0000, True),           # DFR bits 27:0 do not matter
    # logical, cluster model: cluster in bits 7:4, members in 3:0
    (True, 0x21, 0x00, 0x21, DFR_CLUSTER, True),
    (True, 0x23, 0x00, 0x22, DFR_CLUSTER, True),
    (True, 0x31, 0x00, 0x21, DFR_CLUSTER, False),          # another cluster (flat would accept)
    (True, 0x22, 0x00, 0x21, DFR_CLUSTER, False),          # another member
    (True, 0xF1, 0x00, 0x21, DFR_CLUSTER, True),           # every cluster
    (True, 0xF2, 0x00, 0x21, DFR_CLUSTER, False),
    (True, 0x01, 0x00, 0x01, DFR_CLUSTER, True),
    # a DFR model the SDM does not define
    (True, 0xFF, 0x00, 0xFF, 0x5FFF_FFFF, False),
])
def test_destinations(machine, logical, destination, apic_id, ldr, dfr, accepted):
    machine.reset(apic_id << 24, ldr << 24, dfr)
    for pin, low in ((6, entry_low(0x66, logical=logical)), (7, entry_low(0x67, level=True, logical=logical)),
                     (8, entry_low(0, NMI, logical=logical))):
        machine.program(pin, low, destination)
    assert machine.pulse_pin(6) == ([("interrupt", 0x66, 0)] if accepted else [])
    assert machine.assert_pin(7) == ([("interrupt", 0x67, 1)] if accepted else [])
    assert bool(machine.register(0x1E) & REMOTE_IRR) == accepted, "Remote IRR: set only when accepted"
    assert machine.pulse_pin(8) == ([("nmi",)] if accepted else [])


def test_nmi_entries_are_edges_whatever_their_trigger_mode(ioapic):
    ioapic.program(2, entry_low(0x00, NMI))
    ioapic.program(3, entry_low(0x77, NMI, level=True))
    assert ioapic.pulse_pin(2) == [("nmi",)]              # the vector is ignored
    assert ioapic.assert_pin(3) == [("nmi",)]
    assert ioapic.assert_pin(3) == []
    assert ioapic.register(0x16) & REMOTE_IRR == 0
    assert ioapic.eoi(0x77) == []
    ioapic.deassert_pin(3)
    assert ioapic.pulse_pin(3) == [("nmi",)]
    ioapic.set_register(0x14, entry_low(0x00, NMI, masked=True))
    assert ioapic.pulse_pin(2) == []


def test_lowest_priority_goes_to_the_one_local_apic(ioapic):
    ioapic.program(10, entry_low(0x5A, LOWEST_PRIORITY))
    ioapic.program(11, entry_low(0x5B, LOWEST_PRIORITY, level=True))
    assert ioapic.pulse_pin(10) == [("interrupt", 0x5A, 0)]
    assert ioapic.assert_pin(11) == [("interrupt", 0x5B, 1)]
    assert ioapic.register(0x26) & REMOTE_IRR


@pytest.mark.parametrize("mode", [SMI, INIT, EXTINT, 3, 6])
def test_smi_init_extint_and_reserved_modes_deliver_nothing(ioapic, mode):
    ioapic.program(0, entry_low(0x50, mode))
    ioapic.program(1, entry_low(0x51, mode, level=True))
    assert ioapic.pulse_pin(0) == []
    assert ioapic.assert_pin(1) == []
    assert ioapic.register(0x12) & REMOTE_IRR == 0


@pytest.mark.parametrize("mode", [FIXED, LOWEST_PRIORITY])
def test_vectors_below_16_are_illegal_and_not_delivered(ioapic, mode):
    for vector in range(16):
        ioapic.program(0, entry_low(vector, mode))
        ioapic.program(1, entry_low(vector, mode, level=True))
        assert ioapic.pulse_pin(0) == [], f"vector {vector}"
        assert ioapic.pulse_pin(1) == [], f"vector {vector}"
        assert ioapic.register(0x12) & REMOTE_IRR == 0
    ioapic.program(0, entry_low(16, mode))
    assert ioapic.pulse_pin(0) == [("interrupt", 16, 0)]


def test_pins_past_23_are_ignored(ioapic):
    for pin in range(PINS):
        ioapic.program(pin, entry_low(0x80 + pin))
    before = ioapic.state()
    for pin in (24, 31, 32, 0xFFFF_FFFF):
        assert ioapic.assert_pin(pin) == []
        assert ioapic.pulse_pin(pin) == []
        assert ioapic.deassert_pin(pin) == []
    assert ioapic.state() == before
    assert ioapic.pulse_pin(23) == [("interrupt", 0x97, 0)]


# --- random sequences against the reference ---------------------------------------

VECTORS = (0x00, 0x0F, 0x10, 0x31, 0x31, 0x32, 0x32, 0x33, 0xFE)      # 0x00, 0x0F: illegal
DESTINATIONS = (0x00, 0x00, 0x01, 0x01, 0x02, 0x10, 0x11, 0x21, 0xF1, 0xFF)
BUSY_PINS = 6                                  # most operations use pins 0-5, so that they meet


def random_pin(rng: random.Random) -> int:
    return rng.randrange(BUSY_PINS) if rng.random() < 0.9 else rng.randrange(PINS)


def random_low(rng: random.Random) -> int:
    """A low dword: reserved and read-only bits random, fields mostly ones that deliver."""
    value = rng.getrandbits(32) & ~(VECTOR | 7 << DELIVERY_MODE_SHIFT | MASKED | LOGICAL)
    value |= rng.choice(VECTORS) | rng.choice((FIXED, FIXED, FIXED, FIXED, LOWEST_PRIORITY, NMI, NMI, SMI,
                                               INIT, EXTINT, 3)) << DELIVERY_MODE_SHIFT
    return value | (rng.random() < 0.2) * MASKED | (rng.random() < 0.3) * LOGICAL


def random_destination(rng: random.Random, lapic: tuple[int, int, int]) -> int:
    """Mostly destinations that may address this local APIC in some mode."""
    apic_id, ldr = lapic[0] >> 24, lapic[1] >> 24
    if rng.random() < 0.7:
        return rng.choice((apic_id, 0xFF, ldr, ldr | 0x80, 0xF0 | ldr & 0xF))
    return rng.choice(DESTINATIONS) if rng.random() < 0.8 else rng.randrange(256)


def random_operation(rng: random.Random, lapic: tuple[int, int, int]) -> tuple[str, tuple[int, ...]]:
    """An operation and its arguments, given the local APIC's ID, LDR and DFR."""
    kind = rng.choices(("program", "select", "window write", "window read", "assert", "deassert",
                        "pulse", "eoi", "eoi register", "stray read", "stray write", "lapic"),
                       weights=(14, 4, 2, 6, 10, 7, 8, 6, 3, 2, 2, 0.5))[0]
    if kind == "program":                      # select an entry's dword and write it
        high = rng.random() < 0.4
        value = random_destination(rng, lapic) << 24 | rng.getrandbits(24) if high else random_low(rng)
        return kind, (0x10 + 2 * random_pin(rng) + high, value)
    if kind == "select":
        number = rng.choice((rng.randrange(0x10, 0x40), rng.randrange(3), rng.randrange(256)))
        if rng.random() < 0.3:
            number |= rng.getrandbits(24) << 8             # reserved bits 31:8
        return kind, (number,)
    if kind == "window write":                 # whatever IOREGSEL selects, any value
        return kind, (rng.getrandbits(32),)
    if kind in ("assert", "deassert", "pulse"):
        return kind, (random_pin(rng),)
    if kind in ("eoi", "eoi register"):
        return kind, (rng.choice(VECTORS),)
    if kind in ("stray read", "stray write"):
        return kind, (rng.choice((0, 0x10, 0x40, rng.randrange(PAGE))), rng.choice((1, 2, 4, 8)),
                      rng.getrandbits(64))
    return kind, (rng.choice((0, 0, 0, 1, 2)) << 24, rng.choice((0x01, 0x01, 0x02, 0x11, 0x21, 0x00)) << 24,
                  rng.choice((DFR_FLAT, DFR_FLAT, DFR_FLAT, DFR_CLUSTER, 0x3FFF_FFFF)))


def perform(target, kind: str, args: tuple[int, ...]) -> object:
    """One operation on the model or the reference: what it gives back."""
    if kind == "program":
        return target.write(IOREGSEL, args[0]) + target.write(IOWIN, args[1])
    if kind == "select":
        return target.write(IOREGSEL, *args)
    if kind == "window write":
        return target.write(IOWIN, *args)
    if kind == "window read":
        return target.read(IOWIN)
    if kind == "assert":
        return target.assert_pin(*args)
    if kind == "deassert":
        return target.deassert_pin(*args)
    if kind == "pulse":
        return target.pulse_pin(*args)
    if kind == "eoi":
        return target.eoi(*args)
    if kind == "eoi register":
        return target.write(EOI, args[0] | 0xFF00)
    offset, size, value = args
    if kind == "stray read":
        return target.read(offset, size)
    return target.write(offset, value & (1 << 8 * size) - 1, size)


@pytest.mark.parametrize("round_", range(4))
def test_random_sequences_agree_with_the_reference_step_by_step(machine, round_):
    rng = random.Random(f"{SEED} {round_}")
    machine.reset(0, 0x01 << 24, DFR_FLAT)
    reference = Reference(0, 0x01 << 24, DFR_FLAT)
    counts = {"interrupt": 0, "nmi": 0, "level": 0, "again": 0}
    for step in range(3000):
        kind, args = random_operation(rng, reference.lapic)
        if kind == "lapic":
            machine.set_lapic(*args)
            reference.lapic = args
            continue
        want = perform(reference, kind, args)
        got = perform(machine, kind, args)
        assert got == want, f"step {step}: {kind} {[hex(a) for a in args]}"
        assert machine.state() == reference.state(), f"step {step}: {kind} {[hex(a) for a in args]}"
        if isinstance(want, list):
            for call in want:
                counts[call[0]] += 1
                counts["level"] += call[0] == "interrupt" and call[2]
                counts["again"] += kind in ("eoi", "eoi register")
    # the sequences reached what they are meant to test
    assert counts["interrupt"] > 40 and counts["nmi"] > 10 and counts["level"] > 20, counts
    assert counts["again"] > 3, counts
    for number in [0, 1, 2, *range(0x10, 0x40)]:
        assert machine.register(number) == reference.read_register(number)
