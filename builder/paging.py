"""Page tables built at build time: the hypervisor's own, each guest's EPT,
and the identity map a long-mode guest starts on.

Every table is a 4 KiB page of 512 little-endian 64-bit entries
(SDM Vol. 3A 4.5 for IA-32e paging, Vol. 3C 29.3 for EPT).
"""

from __future__ import annotations

from builder import hw
from builder.layout import EptLayout, GuestLayout, Layout, align_up

TableSet = dict[int, bytearray]      # physical address -> table page


def _table() -> bytearray:
    return bytearray(hw.PAGE_SIZE)


def _set(table: bytearray, index: int, value: int) -> None:
    table[8 * index:8 * index + 8] = value.to_bytes(8, "little")


def _index(address: int, level: int) -> int:
    """Index into the table of `level` (4 = PML4 ... 1 = PT) for `address`."""
    return (address >> (12 + 9 * (level - 1))) & (hw.ENTRIES_PER_TABLE - 1)


def hypervisor_tables(layout: Layout, mappings: list[tuple[int, int, int]]) -> TableSet:
    """The hypervisor's page tables: only what it uses is mapped.

    `mappings` holds (start, end, leaf flags) ranges, page aligned.  All of
    them lie in the first 2 MiB, which one page table covers.
    """
    tables = layout.hv_tables
    pml4, pdpt, pd, pt = _table(), _table(), _table(), _table()
    directory = hw.PTE_PRESENT | hw.PTE_WRITABLE
    _set(pml4, 0, tables["pdpt"] | directory)
    _set(pdpt, 0, tables["pd"] | directory)
    _set(pd, 0, tables["pt"] | directory)
    for start, end, flags in mappings:
        assert end <= hw.LARGE_PAGE_SIZE
        for page in range(start, end, hw.PAGE_SIZE):
            _set(pt, _index(page, 1), page | flags)
    return {tables["pml4"]: pml4, tables["pdpt"]: pdpt, tables["pd"]: pd, tables["pt"]: pt}


def ept_tables(guest: GuestLayout) -> TableSet:
    """Map guest-physical [0, size) onto the guest's own host memory, 4 KiB
    pages, read/write/execute, write-back.  Nothing else is reachable."""
    ept: EptLayout = guest.ept
    pml4, pdpt, pd = _table(), _table(), _table()
    _set(pml4, 0, ept.pdpt | hw.EPT_RWX)
    _set(pdpt, 0, ept.pd | hw.EPT_RWX)
    tables = {ept.pml4: pml4, ept.pdpt: pdpt, ept.pd: pd}
    leaf = hw.EPT_RWX | hw.EPT_MEMTYPE_WB << hw.EPT_MEMTYPE_SHIFT
    for number, pt_address in enumerate(ept.pts):
        _set(pd, number, pt_address | hw.EPT_RWX)
        pt = _table()
        first = number * hw.LARGE_PAGE_SIZE
        for gpa in range(first, min(first + hw.LARGE_PAGE_SIZE, guest.memory_size), hw.PAGE_SIZE):
            _set(pt, _index(gpa, 1), (guest.memory_base + gpa) | leaf)
        tables[pt_address] = pt
    return tables


def guest_identity_map(guest: GuestLayout) -> dict[int, bytes]:
    """A long-mode guest's own page tables (guest-physical addresses):
    2 MiB pages mapping [0, size rounded up to 2 MiB) one to one."""
    pml4_address = guest.startup.pml4
    assert pml4_address is not None
    pdpt_address = pml4_address + hw.PAGE_SIZE
    pd_address = pdpt_address + hw.PAGE_SIZE
    pml4, pdpt, pd = _table(), _table(), _table()
    directory = hw.PTE_PRESENT | hw.PTE_WRITABLE
    _set(pml4, 0, pdpt_address | directory)
    _set(pdpt, 0, pd_address | directory)
    for number in range(align_up(guest.memory_size, hw.LARGE_PAGE_SIZE) // hw.LARGE_PAGE_SIZE):
        _set(pd, number, number * hw.LARGE_PAGE_SIZE | directory | hw.PTE_LARGE)
    return {pml4_address: bytes(pml4), pdpt_address: bytes(pdpt), pd_address: bytes(pd)}
