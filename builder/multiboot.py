"""Booting a multiboot v1 kernel as a guest (Multiboot Specification
0.6.96): its header checked, its modules and the boot information
structure placed in its memory, and the registers it starts with.

The kernel is entered as section 3.2 says: 32-bit protected mode with flat
segments, paging off, interrupts off, EAX = 0x2BADB002 and EBX = the
guest-physical address of the multiboot information (section 3.3), which
the builder computes here and places in the guest's memory beside the
command line, the boot loader's name, the memory map and the module list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder import hw
from builder.errors import BuildError

HEADER_ALIGN = 4                          # 3.1.1: the header is 32-bit aligned
# Flags a kernel may require (bits 0-15, 3.1.2) and that this loader
# honours: page-aligned modules, memory information.  Video modes (bit 2)
# are refused; bit 16 (a.out kludge addresses) is ignored: ELF headers give
# the addresses.
HEADER_REQUIRED_MASK = 0xFFFF
HEADER_SUPPORTED = hw.MULTIBOOT_FLAG_PAGE_ALIGN | hw.MULTIBOOT_FLAG_MEMORY_INFO
# multiboot_info.flags bits (3.3)
INFO_MEMORY = 1 << 0
INFO_CMDLINE = 1 << 2
INFO_MODULES = 1 << 3
INFO_MMAP = 1 << 6
INFO_LOADER_NAME = 1 << 9
INFO_SIZE = 88                            # through the framebuffer fields, all zero but ours
MODULE_ENTRY = struct.Struct("<IIII")     # mod_start, mod_end, string, reserved
MMAP_ENTRY = struct.Struct("<IQQI")       # size (of the rest: 20), base_addr, length, type
MMAP_AVAILABLE = 1
MMAP_RESERVED = 2
LOW_MEMORY_END = 0x9FC00                  # 639 KiB: a PC's conventional memory, less its EBDA
LOW_MEMORY_HOLE_END = 0x100000
LOADER_NAME = b"hvbuild\0"


def find_header(data: bytes) -> int | None:
    """The offset of the multiboot header (magic, flags, checksum) in the
    file's first 8 KiB, or None."""
    limit = min(len(data), hw.MULTIBOOT_SEARCH_LIMIT) - 12
    for offset in range(0, limit + 1, HEADER_ALIGN):
        magic, flags, checksum = struct.unpack_from("<III", data, offset)
        if magic == hw.MULTIBOOT_HEADER_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return offset
    return None


def header_flags(data: bytes, where: str, name: str) -> int:
    """The flags of the multiboot header in the first 8 KiB of the file:
    one line naming the file if there is none, or if the kernel requires
    what this loader does not do."""
    offset = find_header(data)
    if offset is not None:
        flags = struct.unpack_from("<I", data, offset + 4)[0]
        unsupported = flags & HEADER_REQUIRED_MASK & ~HEADER_SUPPORTED
        if unsupported:
            raise BuildError(where, f"{name}: the kernel requires multiboot features this loader "
                             f"lacks (header flags {unsupported:#x}; video modes are not offered)")
        return flags
    raise BuildError(where, f"{name}: no multiboot header (magic {hw.MULTIBOOT_HEADER_MAGIC:#x} with a valid "
                     f"checksum) in its first {hw.MULTIBOOT_SEARCH_LIMIT} bytes")


@dataclass(frozen=True)
class Placed:
    """What the loader adds to the guest's memory, and its start registers."""

    segments: tuple[tuple[int, bytes], ...]   # (guest-physical address, bytes)
    info: int                                 # the multiboot information's address


def align_page(value: int) -> int:
    return (value + hw.PAGE_SIZE - 1) // hw.PAGE_SIZE * hw.PAGE_SIZE


def memory_map(memory: int, usable_top: int) -> list[tuple[int, int, int]]:
    """(base, length, type): RAM below the legacy hole and from 1 MiB to the
    start-up tables, which are reserved, as are the EBDA and the hole."""
    regions = [(0, min(memory, LOW_MEMORY_END), MMAP_AVAILABLE)]
    if memory > LOW_MEMORY_END:
        regions.append((LOW_MEMORY_END, min(memory, LOW_MEMORY_HOLE_END) - LOW_MEMORY_END, MMAP_RESERVED))
    if usable_top > LOW_MEMORY_HOLE_END:
        regions.append((LOW_MEMORY_HOLE_END, usable_top - LOW_MEMORY_HOLE_END, MMAP_AVAILABLE))
    if memory > usable_top:
        regions.append((usable_top, memory - usable_top, MMAP_RESERVED))
    return regions


def clear_of_low_reserved(address: int, size: int) -> int:
    """`address`, or 1 MiB if [address, address + size) would reach into the
    reserved range below it: the EBDA, the legacy hole and the BIOS area,
    where the boot tables lie (builder/boot_tables.py)."""
    if address < LOW_MEMORY_HOLE_END and address + size > LOW_MEMORY_END:
        return LOW_MEMORY_HOLE_END
    return address


def place(image_end: int, memory: int, usable_top: int, cmdline: str,
          modules: list[tuple[str, bytes]], where: str) -> Placed:
    """Modules page-aligned after the kernel's last byte, then one block of
    boot information: the structure, the memory map, the module list and
    the strings.  None of it in the reserved range below 1 MiB; everything
    must end below `usable_top`."""
    segments = []
    cursor = align_page(image_end)
    module_entries = []
    for name, data in modules:
        cursor = clear_of_low_reserved(cursor, len(data))
        module_entries.append((cursor, cursor + len(data), name))
        segments.append((cursor, data))
        cursor = align_page(cursor + max(len(data), 1))
    regions = memory_map(memory, usable_top)
    mmap = b"".join(MMAP_ENTRY.pack(MMAP_ENTRY.size - 4, base, length, kind) for base, length, kind in regions)
    string_bytes = (len(cmdline.encode()) + 1 + len(LOADER_NAME)
                    + sum(len(name.encode()) + 1 for name, _ in modules))
    info = clear_of_low_reserved(cursor, INFO_SIZE + len(mmap) + MODULE_ENTRY.size * len(modules)
                                 + string_bytes)
    mods_at = info + INFO_SIZE + len(mmap)
    strings_at = mods_at + MODULE_ENTRY.size * len(modules)
    strings = bytearray()

    def string(text: bytes) -> int:
        address = strings_at + len(strings)
        strings.extend(text)
        return address
    cmdline_at = string(cmdline.encode() + b"\0")
    loader_at = string(LOADER_NAME)
    mods = b"".join(MODULE_ENTRY.pack(start, end, string(name.encode() + b"\0"), 0)
                    for start, end, name in module_entries)
    low_kib = min(memory, LOW_MEMORY_END) // 1024
    upper_kib = max(usable_top - LOW_MEMORY_HOLE_END, 0) // 1024
    flags = INFO_MEMORY | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME | (INFO_MODULES if modules else 0)
    structure = bytearray(INFO_SIZE)
    struct.pack_into("<III", structure, 0, flags, low_kib, upper_kib)
    struct.pack_into("<I", structure, 16, cmdline_at)
    struct.pack_into("<II", structure, 20, len(modules), mods_at if modules else 0)
    struct.pack_into("<II", structure, 44, len(mmap), info + INFO_SIZE)
    struct.pack_into("<I", structure, 64, loader_at)
    block = bytes(structure) + mmap + mods + bytes(strings)
    assert len(strings) == string_bytes
    if info + len(block) > usable_top:
        raise BuildError(where, f"the kernel, its modules and the boot information need "
                         f"{info + len(block):#x} bytes; the guest's memory below its start-up "
                         f"tables ends at {usable_top:#x}")
    segments.append((info, block))
    return Placed(tuple(segments), info)
