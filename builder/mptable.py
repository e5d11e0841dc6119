"""The MP table a guest finds in its memory (Intel MultiProcessor
Specification 1.4, chapter 4), computed for a given guest-physical
placement: the floating pointer structure (4.1), then the configuration
table (4.2) with one processor, the ISA bus, the I/O APIC, an interrupt
assignment per ISA IRQ (builder/platform.py) and the local APIC's LINT0
(ExtINT from the 8259A) and LINT1 (NMI).  No extended entries.

An OS that does not read ACPI (or is told not to) learns the same machine
from it: Linux checks the signatures, the lengths, the specification
revision (1 or 4), both checksums and a non-zero local APIC address.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder import hw, platform

FLOATING_POINTER = struct.Struct("<4sIBBBB4x")      # 4.1: 16 bytes
FLOATING_POINTER_SIGNATURE = b"_MP_"
FLOATING_POINTER_ALIGNMENT = 16
FLOATING_POINTER_PARAGRAPHS = 1                     # its length, in 16-byte units
FLOATING_POINTER_CHECKSUM_OFFSET = 10
SPEC_REVISION = 4                                   # version 1.4
FEATURE_CONFIGURATION_TABLE = 0                     # feature byte 1: a table follows, not a default
                                                    #   configuration; byte 2 bit 7 (IMCRP) clear:
                                                    #   virtual wire mode, no IMCR to switch

HEADER = struct.Struct("<4sHBB8s12sIHHIHBx")        # 4.2: 44 bytes
HEADER_SIGNATURE = b"PCMP"
HEADER_CHECKSUM_OFFSET = 7
OEM_ID = b"HVBLD   "                                # 8 bytes
PRODUCT_ID = b"HVBUILD     "                        # 12 bytes

PROCESSOR = struct.Struct("<BBBBII8x")              # 4.3.1: 20 bytes
BUS = struct.Struct("<BB6s")                        # 4.3.2
IO_APIC = struct.Struct("<BBBBI")                   # 4.3.3
INTERRUPT = struct.Struct("<BBHBBBB")               # 4.3.4 (I/O) and 4.3.5 (local): same layout
ENTRY_PROCESSOR, ENTRY_BUS, ENTRY_IO_APIC, ENTRY_IO_INTERRUPT, ENTRY_LOCAL_INTERRUPT = range(5)
CPU_ENABLED = hw.bit(0)
CPU_BOOTSTRAP = hw.bit(1)
IO_APIC_ENABLED = hw.bit(0)
BUS_ISA_ID = 0
BUS_TYPE_ISA = b"ISA   "                           # 4.3.2: bus type strings, padded with blanks
INTERRUPT_INT, INTERRUPT_NMI, INTERRUPT_SMI, INTERRUPT_EXTINT = range(4)   # 4.3.4: interrupt types
ALL_LOCAL_APICS = 0xFF
LINT0, LINT1 = 0, 1


def checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


def _entries() -> list[bytes]:
    """Ordered by entry type, as 4.3 lists them."""
    return [
        PROCESSOR.pack(ENTRY_PROCESSOR, hw.GUEST_LAPIC_ID, hw.GUEST_LAPIC_VERSION,
                       CPU_ENABLED | CPU_BOOTSTRAP, hw.GUEST_CPU_SIGNATURE, hw.GUEST_CPU_FEATURES),
        BUS.pack(ENTRY_BUS, BUS_ISA_ID, BUS_TYPE_ISA),
        IO_APIC.pack(ENTRY_IO_APIC, hw.GUEST_IOAPIC_ID, hw.GUEST_IOAPIC_VERSION, IO_APIC_ENABLED,
                     hw.IOAPIC_BASE),
        *(INTERRUPT.pack(ENTRY_IO_INTERRUPT, INTERRUPT_INT, route.flags, BUS_ISA_ID, route.irq,
                         hw.GUEST_IOAPIC_ID, route.pin) for route in platform.ISA_ROUTES),
        INTERRUPT.pack(ENTRY_LOCAL_INTERRUPT, INTERRUPT_EXTINT, hw.MPS_INTI_CONFORMS, BUS_ISA_ID, 0,
                       ALL_LOCAL_APICS, LINT0),
        INTERRUPT.pack(ENTRY_LOCAL_INTERRUPT, INTERRUPT_NMI, hw.MPS_INTI_CONFORMS, BUS_ISA_ID, 0,
                       ALL_LOCAL_APICS, LINT1),
    ]


def configuration_table() -> bytes:
    """4.2: the header, then the base entries; its checksum covers them all."""
    entries = _entries()
    body = b"".join(entries)
    header = HEADER.pack(HEADER_SIGNATURE, HEADER.size + len(body), SPEC_REVISION, 0, OEM_ID,
                         PRODUCT_ID, 0, 0, len(entries), hw.LAPIC_BASE, 0, 0)
    table = bytearray(header + body)
    table[HEADER_CHECKSUM_OFFSET] = checksum(table)
    return bytes(table)


def floating_pointer(table_address: int) -> bytes:
    data = bytearray(FLOATING_POINTER.pack(FLOATING_POINTER_SIGNATURE, table_address,
                                           FLOATING_POINTER_PARAGRAPHS, SPEC_REVISION, 0,
                                           FEATURE_CONFIGURATION_TABLE))
    data[FLOATING_POINTER_CHECKSUM_OFFSET] = checksum(data)
    return bytes(data)


@dataclass(frozen=True)
class MpTables:
    address: int                # the floating pointer; the configuration table follows it
    data: bytes

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def tables(address: int) -> MpTables:
    """The floating pointer at guest-physical `address` (16-byte aligned,
    4.1), the configuration table right after it."""
    if address % FLOATING_POINTER_ALIGNMENT:
        raise ValueError(f"the MP floating pointer must be 16-byte aligned, not at {address:#x}")
    return MpTables(address, floating_pointer(address + FLOATING_POINTER.size) + configuration_table())
