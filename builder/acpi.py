"""The ACPI tables a guest finds in its memory (ACPI Specification 6.4,
section 5.2), computed for a given guest-physical placement.

    RSDP  5.2.5.3   revision 2: points at the RSDT and the XSDT
    XSDT  5.2.8     64-bit pointers to the FADT and the MADT
    RSDT  5.2.7     the same, 32-bit, for ACPI 1.0 readers
    FADT  5.2.9     revision 6 (ACPI 6.4), not hardware-reduced: the PM1a
                    event and control blocks, SCI on IRQ 9, no SMI_CMD (the
                    machine is always in ACPI mode), no PM timer, no GPE
                    block, no reset register; points at the FACS and DSDT
    FACS  5.2.10    no waking vector, the global lock free
    DSDT  5.2.11.1  one object: \\_S5, the soft-off state's SLP_TYP values
    MADT  5.2.12    the local APIC, the I/O APIC, the ISA interrupt source
                    overrides (builder/platform.py) and LINT1 as NMI

Every checksum makes its table's bytes sum to zero (5.2.5.3, 5.2.6).  The
OEM fields name the project, so a guest can tell whose tables it has.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder import hw, platform

OEM_ID = b"HVBLD "                  # 6 bytes
OEM_TABLE_ID = b"HVBUILD "          # 8 bytes
OEM_REVISION = 1
CREATOR_ID = b"HVBL"                # the tool that made the tables (hand-encoded AML: no ASL compiler)
CREATOR_REVISION = 1

# 5.2.6: the header of every description table
SDT_HEADER = struct.Struct("<4sIBB6s8sI4sI")
SDT_CHECKSUM_OFFSET = 9

# 5.2.5.3: the RSDP, ACPI 2.0 and later
RSDP = struct.Struct("<8sB6sBIIQB3x")
RSDP_SIGNATURE = b"RSD PTR "
RSDP_REVISION = 2
RSDP_V1_LENGTH = 20                 # the part the first checksum covers
RSDP_CHECKSUM_OFFSET = 8
RSDP_EXTENDED_CHECKSUM_OFFSET = 32

RSDT_REVISION = 1
XSDT_REVISION = 1
FADT_REVISION = 6                   # ACPI 6.x, FADT minor version 4: ACPI 6.4
FADT_MINOR_VERSION = 4
FADT_SIZE = 276
MADT_REVISION = 5
DSDT_REVISION = 2                   # 2 and up: AML integers are 64 bits (5.2.11.1)

# 5.2.3.2: Generic Address Structure
GAS = struct.Struct("<BBBBQ")
GAS_SYSTEM_IO = 1
GAS_ACCESS_WORD = 2
GAS_ACCESS_DWORD = 3

# 5.2.9: FADT field offsets
FADT_FIRMWARE_CTRL = 36
FADT_DSDT = 40
FADT_PREFERRED_PM_PROFILE = 45
FADT_SCI_INT = 46
FADT_PM1A_EVT_BLK = 56
FADT_PM1A_CNT_BLK = 64
FADT_PM_TMR_BLK = 76
FADT_PM1_EVT_LEN = 88
FADT_PM1_CNT_LEN = 89
FADT_PM_TMR_LEN = 91
FADT_P_LVL2_LAT = 96
FADT_P_LVL3_LAT = 98
FADT_IAPC_BOOT_ARCH = 109
FADT_FLAGS = 112
FADT_MINOR_VERSION_OFFSET = 131
FADT_X_DSDT = 140
FADT_X_PM1A_EVT_BLK = 148
FADT_X_PM1A_CNT_BLK = 172
FADT_X_PM_TMR_BLK = 208
FADT_HYPERVISOR_VENDOR_IDENTITY = 268
PM_PROFILE_UNSPECIFIED = 0
P_LVL2_LAT_NONE = 101               # above 100 us: no C2 state
P_LVL3_LAT_NONE = 1001              # above 1000 us: no C3 state
# 5.2.9: FADT flags
FADT_WBINVD = hw.bit(0)             # WBINVD flushes and invalidates the caches
FADT_PROC_C1 = hw.bit(2)            # C1 (HLT) on every processor
FADT_PWR_BUTTON = hw.bit(4)         # set: no fixed-feature power button
FADT_SLP_BUTTON = hw.bit(5)         # set: no fixed-feature sleep button
FADT_FIX_RTC = hw.bit(6)            # set: no RTC wake status in the fixed registers
FADT_TMR_VAL_EXT = hw.bit(8)        # the PM timer counts 32 bits, not 24
FADT_FLAGS_VALUE = (FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_FIX_RTC
                    | FADT_TMR_VAL_EXT)
# 5.2.9.3: IA-PC boot architecture flags.  8042 clear: no
# keyboard controller; CMOS RTC Not Present clear: the RTC is there.
IAPC_LEGACY_DEVICES = hw.bit(0)     # ISA devices the OS cannot enumerate (COM1, the RTC, the PIT)
IAPC_VGA_NOT_PRESENT = hw.bit(2)
IAPC_MSI_NOT_SUPPORTED = hw.bit(3)  # no PCI, so no MSI
IAPC_BOOT_ARCH_VALUE = IAPC_LEGACY_DEVICES | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED
HYPERVISOR_VENDOR_IDENTITY = b"HVBUILD\0"   # 6.0 and later: who provides the virtual machine

# 5.2.10: FACS
FACS = struct.Struct("<4sIIIIIQB3xI24x")
FACS_SIZE = 64
FACS_ALIGNMENT = 64
FACS_VERSION = 2

# 5.2.12: MADT, then its interrupt controller structures
MADT_LOCAL_APIC_ADDRESS_AND_FLAGS = struct.Struct("<II")
MADT_PCAT_COMPAT = hw.bit(0)        # the 8259A pair is there too (the OS masks it)
MADT_LOCAL_APIC = struct.Struct("<BBBBI")           # 5.2.12.2: type 0
MADT_IO_APIC = struct.Struct("<BBBBII")             # 5.2.12.3: type 1
MADT_INTERRUPT_OVERRIDE = struct.Struct("<BBBBIH")  # 5.2.12.5: type 2
MADT_LOCAL_APIC_NMI = struct.Struct("<BBBHB")       # 5.2.12.7: type 4
MADT_TYPE_LOCAL_APIC = 0
MADT_TYPE_IO_APIC = 1
MADT_TYPE_INTERRUPT_OVERRIDE = 2
MADT_TYPE_LOCAL_APIC_NMI = 4
MADT_LOCAL_APIC_ENABLED = hw.bit(0)
MADT_BUS_ISA = 0
MADT_ALL_PROCESSORS = 0xFF          # an ACPI processor UID meaning every processor
ACPI_PROCESSOR_UID = 0
LAPIC_LINT_NMI = 1                  # LINT1 carries NMI, as on PCs

# 20.2, the AML encodings the DSDT uses
AML_NAME_OP = 0x08                  # 20.2.5.2: DefName := NameOp NameString DataRefObject
AML_PACKAGE_OP = 0x12               # 20.2.5.4: DefPackage := PackageOp PkgLength NumElements
                                    #   PackageElementList
AML_BYTE_PREFIX = 0x0A              # 20.2.3: BytePrefix ByteData
AML_ZERO_OP = 0x00                  # 20.2.3: ZeroOp, the constant 0
AML_PKG_LENGTH_ONE_BYTE_MAX = 0x3F  # 20.2.4: bits 7:6 zero, the length in bits 5:0
AML_S5_NAME = b"_S5_"               # 20.2.2: a NameSeg is 4 characters, padded with '_'


def checksum(data: bytes) -> int:
    """The byte that makes `data` (with it) sum to zero modulo 256."""
    return -sum(data) & 0xFF


def _with_checksum(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] = 0
    out[offset] = checksum(out)
    return bytes(out)


def sdt(signature: bytes, revision: int, body: bytes) -> bytes:
    """A description table: the 36-byte header (5.2.6), then `body`."""
    header = SDT_HEADER.pack(signature, SDT_HEADER.size + len(body), revision, 0, OEM_ID,
                             OEM_TABLE_ID, OEM_REVISION, CREATOR_ID, CREATOR_REVISION)
    return _with_checksum(header + body, SDT_CHECKSUM_OFFSET)


def rsdp(rsdt_address: int, xsdt_address: int) -> bytes:
    """5.2.5.3: the first checksum covers the ACPI 1.0 part (20 bytes), the
    extended one the whole structure."""
    data = RSDP.pack(RSDP_SIGNATURE, 0, OEM_ID, RSDP_REVISION, rsdt_address, RSDP.size,
                     xsdt_address, 0)
    first = _with_checksum(data[:RSDP_V1_LENGTH], RSDP_CHECKSUM_OFFSET)
    return _with_checksum(first + data[RSDP_V1_LENGTH:], RSDP_EXTENDED_CHECKSUM_OFFSET)


def rsdt(tables: tuple[int, ...]) -> bytes:
    return sdt(b"RSDT", RSDT_REVISION, b"".join(struct.pack("<I", a) for a in tables))


def xsdt(tables: tuple[int, ...]) -> bytes:
    return sdt(b"XSDT", XSDT_REVISION, b"".join(struct.pack("<Q", a) for a in tables))


def _io_block(port: int, length: int, access: int = GAS_ACCESS_WORD) -> bytes:
    """A GAS for `length` bytes of ports from `port`, accessed by words
    (or `access`)."""
    return GAS.pack(GAS_SYSTEM_IO, 8 * length, 0, access, port)


def fadt(facs_address: int, dsdt_address: int) -> bytes:
    """5.2.9.  The 32-bit FIRMWARE_CTRL holds the FACS (X_FIRMWARE_CTRL must
    then be 0); DSDT and X_DSDT agree; the PM1a blocks and the PM timer
    are given both ways."""
    table = bytearray(FADT_SIZE)
    struct.pack_into("<II", table, FADT_FIRMWARE_CTRL, facs_address, dsdt_address)
    struct.pack_into("<BH", table, FADT_PREFERRED_PM_PROFILE, PM_PROFILE_UNSPECIFIED, hw.ISA_IRQ_SCI)
    struct.pack_into("<I", table, FADT_PM1A_EVT_BLK, hw.ACPI_PM1A_EVT_BLK)
    struct.pack_into("<I", table, FADT_PM1A_CNT_BLK, hw.ACPI_PM1A_CNT_BLK)
    struct.pack_into("<BB", table, FADT_PM1_EVT_LEN, hw.ACPI_PM1_EVT_LEN, hw.ACPI_PM1_CNT_LEN)
    struct.pack_into("<I", table, FADT_PM_TMR_BLK, hw.ACPI_PM_TMR_BLK)
    table[FADT_PM_TMR_LEN] = hw.ACPI_PM_TMR_LEN
    struct.pack_into("<HH", table, FADT_P_LVL2_LAT, P_LVL2_LAT_NONE, P_LVL3_LAT_NONE)
    struct.pack_into("<H", table, FADT_IAPC_BOOT_ARCH, IAPC_BOOT_ARCH_VALUE)
    struct.pack_into("<I", table, FADT_FLAGS, FADT_FLAGS_VALUE)
    table[FADT_MINOR_VERSION_OFFSET] = FADT_MINOR_VERSION
    struct.pack_into("<Q", table, FADT_X_DSDT, dsdt_address)
    table[FADT_X_PM1A_EVT_BLK:FADT_X_PM1A_EVT_BLK + GAS.size] = _io_block(hw.ACPI_PM1A_EVT_BLK,
                                                                        hw.ACPI_PM1_EVT_LEN)
    table[FADT_X_PM1A_CNT_BLK:FADT_X_PM1A_CNT_BLK + GAS.size] = _io_block(hw.ACPI_PM1A_CNT_BLK,
                                                                        hw.ACPI_PM1_CNT_LEN)
    table[FADT_X_PM_TMR_BLK:FADT_X_PM_TMR_BLK + GAS.size] = _io_block(hw.ACPI_PM_TMR_BLK, hw.ACPI_PM_TMR_LEN,
                                                                    GAS_ACCESS_DWORD)
    table[FADT_HYPERVISOR_VENDOR_IDENTITY:FADT_SIZE] = HYPERVISOR_VENDOR_IDENTITY
    return sdt(b"FACP", FADT_REVISION, bytes(table[SDT_HEADER.size:]))


def facs() -> bytes:
    """5.2.10: no hardware signature, no waking vector (there is no sleep
    state to wake from), the global lock free, no flags."""
    return FACS.pack(b"FACS", FACS_SIZE, 0, 0, 0, 0, 0, FACS_VERSION, 0)


def aml_s5() -> bytes:
    """Name (_S5, Package (0x04) {5, 5, 0, 0}) in the root scope: the
    SLP_TYPa and SLP_TYPb values of soft-off, then two reserved elements
    (7.4.2: \\_Sx packages).  Only PM1a exists; SLP_TYPb repeats the value."""
    elements = (bytes([AML_BYTE_PREFIX, hw.ACPI_S5_SLP_TYP]), bytes([AML_BYTE_PREFIX, hw.ACPI_S5_SLP_TYP]),
                bytes([AML_ZERO_OP]), bytes([AML_ZERO_OP]))
    contents = bytes([len(elements)]) + b"".join(elements)       # NumElements, then the elements
    length = 1 + len(contents)                                     # PkgLength counts its own byte
    assert length <= AML_PKG_LENGTH_ONE_BYTE_MAX
    return bytes([AML_NAME_OP]) + AML_S5_NAME + bytes([AML_PACKAGE_OP, length]) + contents


def dsdt() -> bytes:
    return sdt(b"DSDT", DSDT_REVISION, aml_s5())


def madt() -> bytes:
    """5.2.12: the local APIC's address and PCAT_COMPAT, then one entry per
    interrupt controller, the overrides and the NMI line."""
    entries = [
        MADT_LOCAL_APIC.pack(MADT_TYPE_LOCAL_APIC, MADT_LOCAL_APIC.size, ACPI_PROCESSOR_UID,
                             hw.GUEST_LAPIC_ID, MADT_LOCAL_APIC_ENABLED),
        MADT_IO_APIC.pack(MADT_TYPE_IO_APIC, MADT_IO_APIC.size, hw.GUEST_IOAPIC_ID, 0,
                          hw.IOAPIC_BASE, hw.GUEST_IOAPIC_GSI_BASE),
        *(MADT_INTERRUPT_OVERRIDE.pack(MADT_TYPE_INTERRUPT_OVERRIDE, MADT_INTERRUPT_OVERRIDE.size,
                                       MADT_BUS_ISA, route.irq, hw.GUEST_IOAPIC_GSI_BASE + route.pin,
                                       route.flags)
          for route in platform.ISA_ROUTES if route.overridden),
        MADT_LOCAL_APIC_NMI.pack(MADT_TYPE_LOCAL_APIC_NMI, MADT_LOCAL_APIC_NMI.size, MADT_ALL_PROCESSORS,
                                 hw.MPS_INTI_CONFORMS, LAPIC_LINT_NMI),
    ]
    body = MADT_LOCAL_APIC_ADDRESS_AND_FLAGS.pack(hw.LAPIC_BASE, MADT_PCAT_COMPAT) + b"".join(entries)
    return sdt(b"APIC", MADT_REVISION, body)


@dataclass(frozen=True)
class AcpiTables:
    """The whole set, as bytes from `address` on."""

    address: int
    data: bytes
    addresses: dict[str, int]       # by signature ("RSDP" for the RSD PTR)

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def tables(address: int) -> AcpiTables:
    """The RSDP at guest-physical `address` (16-byte aligned, 5.2.5.1),
    then the XSDT, RSDT, FADT, FACS, DSDT and MADT, each 8-byte aligned
    (the FACS 64-byte, 5.2.10)."""
    if address % hw.ACPI_RSDP_ALIGNMENT:
        raise ValueError(f"the RSDP must be {hw.ACPI_RSDP_ALIGNMENT}-byte aligned, not at {address:#x}")
    described = ("FACP", "APIC")                   # what the RSDT and XSDT point at
    fixed = {"FACS": facs(), "DSDT": dsdt(), "APIC": madt()}
    sizes = (("RSDP", RSDP.size, hw.ACPI_RSDP_ALIGNMENT),
             ("XSDT", SDT_HEADER.size + 8 * len(described), 8),
             ("RSDT", SDT_HEADER.size + 4 * len(described), 8),
             ("FACP", FADT_SIZE, 8), ("FACS", FACS_SIZE, FACS_ALIGNMENT),
             ("DSDT", len(fixed["DSDT"]), 8), ("APIC", len(fixed["APIC"]), 8))
    addresses, cursor = {}, address
    for name, size, alignment in sizes:
        addresses[name] = _align(cursor, alignment)
        cursor = addresses[name] + size
    pointers = tuple(addresses[name] for name in described)
    placed = {**fixed, "FACP": fadt(addresses["FACS"], addresses["DSDT"]),
              "XSDT": xsdt(pointers), "RSDT": rsdt(pointers),
              "RSDP": rsdp(addresses["RSDT"], addresses["XSDT"])}
    data = bytearray(cursor - address)
    for name, size, _ in sizes:
        assert len(placed[name]) == size, name
        start = addresses[name] - address
        data[start:start + size] = placed[name]
    return AcpiTables(address, bytes(data), addresses)
