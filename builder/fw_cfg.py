"""The items of each guest's fw_cfg device (QEMU docs/specs/fw_cfg.rst),
decided at build time (hv/devices/fw_cfg.s.j2 serves them).

The item bytes of one guest are packed one after the other into its
record (`data`); `DIRECTORY` gives the assembly each item's selector,
where its bytes start there and how many there are.  Every item has the
same length for every guest, so one directory serves them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from builder import hw

CPUS = 1                # one vCPU per guest


@dataclass(frozen=True)
class Item:
    selector: int
    name: str
    value: Callable[[int], bytes]       # the guest's memory size -> the item's bytes


ITEMS: tuple[Item, ...] = (
    Item(hw.FW_CFG_SIGNATURE, "signature", lambda memory: b"QEMU"),
    Item(hw.FW_CFG_ID, "id", lambda memory: hw.FW_CFG_ID_TRADITIONAL.to_bytes(4, "little")),  # no DMA
    Item(hw.FW_CFG_RAM_SIZE, "ram size", lambda memory: memory.to_bytes(8, "little")),
    Item(hw.FW_CFG_NB_CPUS, "cpus", lambda memory: CPUS.to_bytes(2, "little")),
    Item(hw.FW_CFG_MAX_CPUS, "max cpus", lambda memory: CPUS.to_bytes(2, "little")),
    Item(hw.FW_CFG_FILE_DIR, "file directory", lambda memory: (0).to_bytes(4, "big")),  # no files
)


@dataclass(frozen=True)
class Entry:
    selector: int
    offset: int         # of its first byte in the record's fw_cfg_items
    length: int


def _directory() -> tuple[Entry, ...]:
    entries, offset = [], 0
    for item in ITEMS:
        length = len(item.value(0))
        entries.append(Entry(item.selector, offset, length))
        offset += length
    return tuple(entries)


DIRECTORY = _directory()
DATA_SIZE = sum(entry.length for entry in DIRECTORY)


def data(memory_size: int) -> bytes:
    """A guest's item bytes, in DIRECTORY's order."""
    packed = b"".join(item.value(memory_size) for item in ITEMS)
    if len(packed) != DATA_SIZE:
        raise ValueError("an fw_cfg item's length depends on the guest")
    return packed


# DIRECTORY as the assembly reads it: three words per entry.
ENTRY_FIELDS = ("selector", "offset", "length")
ENTRY_SIZE = 2 * len(ENTRY_FIELDS)


def asm_constants() -> dict[str, int]:
    names = {f"FW_CFG_ENTRY_{name.upper()}": 2 * index for index, name in enumerate(ENTRY_FIELDS)}
    names.update(FW_CFG_ENTRY_SIZE=ENTRY_SIZE, FW_CFG_ENTRIES=len(DIRECTORY))
    return names
