"""Where a guest's boot tables lie: the ACPI tables (builder/acpi.py) and
the MP table (builder/mptable.py), computed for their place and returned
as one block of guest memory.

Both sit at the start of the BIOS ROM area, 0xF0000, where an OS searches
for them: the RSDP on a 16-byte boundary of 0xE0000-0xFFFFF (ACPI 6.4
5.2.5.1), the MP floating pointer on one of 0xF0000-0xFFFFF (MP spec 1.4
chapter 4).  The tables follow them in the same area, which the guest's memory map marks reserved (multiboot:
builder/multiboot.py memory_map), so nothing a loader places may overlap
it: `check_clear`.  Every guest kind that boots an OS calls `place`.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import acpi, hw, mptable
from builder.errors import BuildError

TABLES_BASE = hw.BIOS_ROM_START


@dataclass(frozen=True)
class BootTables:
    address: int                # guest-physical: the RSDP
    data: bytes
    rsdp: int
    mp_floating_pointer: int

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def place(memory: int, guest: str, where: str) -> BootTables:
    """The tables of a guest with `memory` bytes of memory; a BuildError
    naming the guest if its memory does not reach past the BIOS area."""
    if memory < hw.BIOS_AREA_END:
        raise BuildError(where, f"guest {guest}: its ACPI and MP tables go in the BIOS area "
                         f"[{hw.BIOS_AREA_START:#x}, {hw.BIOS_AREA_END:#x}), but its memory ends at "
                         f"{memory:#x}: give it at least 1M")
    acpi_tables = acpi.tables(TABLES_BASE)
    mp_at = -(-acpi_tables.end // mptable.FLOATING_POINTER_ALIGNMENT) * mptable.FLOATING_POINTER_ALIGNMENT
    mp_tables = mptable.tables(mp_at)
    data = acpi_tables.data + bytes(mp_at - acpi_tables.end) + mp_tables.data
    assert TABLES_BASE + len(data) <= hw.BIOS_AREA_END
    return BootTables(TABLES_BASE, data, acpi_tables.address, mp_tables.address)


def check_clear(segments: list[tuple[int, int]], tables: BootTables, where: str) -> None:
    """No loaded range [start, end) may overlap the tables."""
    for start, end in segments:
        if start < tables.end and tables.address < end:
            raise BuildError(where, f"segment [{start:#x}, {end:#x}) overlaps the ACPI and MP tables at "
                             f"[{tables.address:#x}, {tables.end:#x}) in the BIOS area, which the memory "
                             f"map reserves")
