"""Page tables built at build time: the hypervisor's own, each guest's EPT
or NPT, and the identity map a long-mode guest starts on.

Every table is a 4 KiB page of 512 little-endian 64-bit entries
(SDM Vol. 3A 4.5 for IA-32e paging, Vol. 3C 29.3 for EPT; AMD APM Vol. 2
15.25 for nested paging, which uses the ordinary long-mode format).
"""

from __future__ import annotations

from builder import hw
from builder.layout import GuestLayout, NestedTables, align_up

TableSet = dict[int, bytearray]      # physical address -> table page

# Second-level entries: EPT (SDM Vol. 3C 29.3.2) and NPT (APM 15.25.5;
# leaves need the user bit, as every guest access counts as a user access).
EPT_DIRECTORY = hw.EPT_RWX
EPT_LEAF = hw.EPT_RWX | hw.EPT_MEMTYPE_WB << hw.EPT_MEMTYPE_SHIFT
NPT_DIRECTORY = hw.PTE_PRESENT | hw.PTE_WRITABLE | hw.PTE_USER
NPT_LEAF = NPT_DIRECTORY


def _table() -> bytearray:
    return bytearray(hw.PAGE_SIZE)


def _set(table: bytearray, index: int, value: int) -> None:
    table[8 * index:8 * index + 8] = value.to_bytes(8, "little")


def _get(table: bytearray, index: int) -> int:
    return int.from_bytes(table[8 * index:8 * index + 8], "little")


def _index(address: int, level: int) -> int:
    """Index into the table of `level` (4 = PML4 ... 1 = PT) for `address`."""
    return (address >> (12 + 9 * (level - 1))) & (hw.ENTRIES_PER_TABLE - 1)


def hypervisor_tables(pool: tuple[int, ...], mappings: list[tuple[int, int, int]]) -> TableSet:
    """The hypervisor's page tables, 4 KiB pages only: exactly `mappings`,
    (start, end, leaf flags) ranges mapped one to one, nothing else.

    The tables come from `pool` (the PML4 first), in order of need.
    """
    free = list(pool)
    root = free.pop(0)
    tables: TableSet = {root: _table()}
    directory = hw.PTE_PRESENT | hw.PTE_WRITABLE
    for start, end, flags in mappings:
        for page in range(start, end, hw.PAGE_SIZE):
            table = tables[root]
            for level in (4, 3, 2):
                entry = _get(table, _index(page, level))
                if not entry & hw.PTE_PRESENT:
                    address = free.pop(0)
                    tables[address] = _table()
                    entry = address | directory
                    _set(table, _index(page, level), entry)
                table = tables[entry & ~(hw.PAGE_SIZE - 1) & ~hw.PTE_NX]
            _set(table, _index(page, 1), page | flags)
    return tables


def nested_tables(guest: GuestLayout, nested: NestedTables, directory: int, leaf: int) -> TableSet:
    """Map guest-physical [0, size) onto the guest's own host memory in
    4 KiB pages.  Nothing else is reachable from the guest."""
    pml4, pdpt, pd = _table(), _table(), _table()
    _set(pml4, 0, nested.pdpt | directory)
    _set(pdpt, 0, nested.pd | directory)
    tables = {nested.pml4: pml4, nested.pdpt: pdpt, nested.pd: pd}
    for number, pt_address in enumerate(nested.pts):
        _set(pd, number, pt_address | directory)
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
