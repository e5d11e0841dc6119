"""Booting a Linux bzImage as a guest, by the x86 boot protocol
(the kernel's Documentation/arch/x86/boot.rst), with no firmware: the
setup header checked, the protected-mode kernel, the command line, the
initrd and a zero page (struct boot_params) placed in the guest's memory,
and the 64-bit entry's registers.

The kernel is entered as "64-bit Boot Protocol" says: long mode, paging
on with an identity map over the guest's memory (builder/paging.py
guest_identity_map), interrupts off, RSI = the zero page, at the
protected-mode kernel's load address + 0x200.  The memory map (e820)
describes the guest's RAM as a PC's firmware would: the EBDA, the legacy
hole and BIOS area (where the ACPI and MP tables lie) and the start-up
tables at its top reserved, and the virtio, I/O APIC and local APIC pages
as device windows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder import hw, virtio
from builder.errors import BuildError

# The setup header (boot.rst, "The Real-Mode Kernel Header"): offsets in
# the bzImage and in the zero page, which begins with a copy of it.
SETUP_SECTS = 0x1F1
BOOT_FLAG = 0x1FE
BOOT_FLAG_VALUE = 0xAA55
HEADER_END_OFFSET = 0x201                 # the byte whose value + 0x202 ends the header
HEADER_MAGIC = 0x202
HEADER_MAGIC_VALUE = b"HdrS"
VERSION = 0x206
TYPE_OF_LOADER = 0x210
LOADFLAGS = 0x211
RAMDISK_IMAGE = 0x218
RAMDISK_SIZE = 0x21C
CMD_LINE_PTR = 0x228
INITRD_ADDR_MAX = 0x22C
KERNEL_ALIGNMENT = 0x230
RELOCATABLE_KERNEL = 0x234
XLOADFLAGS = 0x236
CMDLINE_SIZE = 0x238
PREF_ADDRESS = 0x258
INIT_SIZE = 0x260
# Zero page fields outside the header (Documentation/arch/x86/zero-page.rst)
ACPI_RSDP_ADDR = 0x070
E820_ENTRIES = 0x1E8
E820_TABLE = 0x2D0
E820_ENTRY = struct.Struct("<QQI")        # addr, size, type
E820_MAX_ENTRIES = 128
E820_RAM = 1
E820_RESERVED = 2

PROTOCOL_MIN = 0x020C                     # 2.12: xloadflags, the 64-bit entry
PROTOCOL_RSDP = 0x020E                    # 2.14: acpi_rsdp_addr
DEFAULT_SETUP_SECTS = 4                   # setup_sects 0 means 4
SECTOR_SIZE = 512
LOADED_HIGH = 1 << 0                      # loadflags: the protected-mode kernel is at 0x100000
XLF_KERNEL_64 = 1 << 0                    # xloadflags: it has the 64-bit entry
LOADER_UNDEFINED = 0xFF                   # type_of_loader: a boot loader with no assigned ID
ENTRY_64_OFFSET = 0x200                   # the 64-bit entry: load address + 0x200
ZERO_PAGE_SIZE = 0x1000

# Where the loader puts things (Firecracker's layout, where it fits ours):
KERNEL_LOAD = 0x100000                    # the protected-mode kernel, at 1 MiB as "loaded high"
ZERO_PAGE = 0x7000
CMDLINE = 0x20000
LOW_MEMORY_END = 0x9FC00                  # 639 KiB of conventional memory, below the EBDA
LOW_MEMORY_HOLE_END = 0x100000
DEVICE_WINDOWS = ((virtio.BASE, virtio.WINDOWS_SIZE), (hw.IOAPIC_BASE, hw.PAGE_SIZE),
                  (hw.LAPIC_BASE, hw.PAGE_SIZE))


@dataclass(frozen=True)
class Header:
    """What the loader needs of a bzImage's setup header."""

    version: int
    setup_size: int                       # bytes of the real-mode part (boot sector + setup)
    header: bytes                         # 0x1F1 up to its end, to copy into the zero page
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    cmdline_size: int
    pref_address: int
    init_size: int


def read_header(data: bytes, where: str, name: str) -> Header:
    """The setup header, checked: one line naming the file if it is not a
    bzImage this loader can start in 64-bit mode."""
    if len(data) < INIT_SIZE + 4 or data[HEADER_MAGIC:HEADER_MAGIC + 4] != HEADER_MAGIC_VALUE:
        raise BuildError(where, f"{name}: not a Linux bzImage (no \"HdrS\" setup header at "
                         f"{HEADER_MAGIC:#x})")
    if struct.unpack_from("<H", data, BOOT_FLAG)[0] != BOOT_FLAG_VALUE:
        raise BuildError(where, f"{name}: not a Linux bzImage (boot flag at {BOOT_FLAG:#x} is not "
                         f"{BOOT_FLAG_VALUE:#x})")
    version = struct.unpack_from("<H", data, VERSION)[0]
    if version < PROTOCOL_MIN:
        raise BuildError(where, f"{name}: boot protocol {version >> 8}.{version & 0xFF} is too old; "
                         f"the 64-bit entry needs {PROTOCOL_MIN >> 8}.{PROTOCOL_MIN & 0xFF} or newer")
    if not struct.unpack_from("<H", data, XLOADFLAGS)[0] & XLF_KERNEL_64:
        raise BuildError(where, f"{name}: the kernel has no 64-bit entry (xloadflags bit 0 clear): "
                         f"a 32-bit kernel")
    sects = data[SETUP_SECTS] or DEFAULT_SETUP_SECTS
    setup_size = (sects + 1) * SECTOR_SIZE
    if setup_size >= len(data):
        raise BuildError(where, f"{name}: truncated: its setup is {setup_size} bytes of {len(data)}")
    header_end = HEADER_MAGIC + data[HEADER_END_OFFSET]
    initrd_addr_max, alignment, relocatable = struct.unpack_from("<IIB", data, INITRD_ADDR_MAX)
    cmdline_size = struct.unpack_from("<I", data, CMDLINE_SIZE)[0]
    pref_address, init_size = struct.unpack_from("<QI", data, PREF_ADDRESS)
    return Header(version, setup_size, data[SETUP_SECTS:header_end], initrd_addr_max, alignment,
                  bool(relocatable), cmdline_size, pref_address, init_size)


@dataclass(frozen=True)
class Placed:
    segments: tuple[tuple[int, bytes], ...]   # (guest-physical address, bytes)
    zero_page: int
    entry: int


def e820_map(memory: int, usable_top: int) -> list[tuple[int, int, int]]:
    """(base, size, type): the guest's RAM as a PC's firmware reports it."""
    regions = [(0, min(memory, LOW_MEMORY_END), E820_RAM),
               (LOW_MEMORY_END, LOW_MEMORY_HOLE_END - LOW_MEMORY_END, E820_RESERVED),
               (LOW_MEMORY_HOLE_END, usable_top - LOW_MEMORY_HOLE_END, E820_RAM)]
    if memory > usable_top:
        regions.append((usable_top, memory - usable_top, E820_RESERVED))
    regions += [(base, size, E820_RESERVED) for base, size in DEVICE_WINDOWS]
    return regions


def place(data: bytes, header: Header, memory: int, usable_top: int, cmdline: str,
          initrd: bytes | None, rsdp: int, where: str, name: str) -> Placed:
    """The kernel at 1 MiB, the command line, the initrd as high as the
    header and the guest's memory allow and clear of the kernel's own
    footprint, and the zero page.  A BuildError naming what does not fit."""
    kernel = data[header.setup_size:]
    # The kernel needs init_size bytes where it decompresses itself: at
    # pref_address (LOAD_PHYSICAL_ADDR), which a relocatable kernel loaded
    # below it moves up to as well (arch/x86/boot/compressed/head_64.S).
    footprint_end = max(KERNEL_LOAD + max(header.init_size, len(kernel)),
                        header.pref_address + header.init_size)
    if footprint_end > usable_top:
        raise BuildError(where, f"{name}: the kernel needs guest memory up to {footprint_end:#x} "
                         f"(init_size {header.init_size:#x}); the guest's ends at {usable_top:#x}")
    encoded = cmdline.encode()
    if len(encoded) > header.cmdline_size:
        raise BuildError(f"{where}.cmdline", f"{len(encoded)} bytes; the kernel takes at most "
                         f"{header.cmdline_size} (its header's cmdline_size)")
    segments = [(KERNEL_LOAD, kernel), (CMDLINE, encoded + b"\0")]
    zero_page = bytearray(ZERO_PAGE_SIZE)
    zero_page[SETUP_SECTS:SETUP_SECTS + len(header.header)] = header.header
    zero_page[TYPE_OF_LOADER] = LOADER_UNDEFINED
    zero_page[LOADFLAGS] |= LOADED_HIGH
    struct.pack_into("<I", zero_page, CMD_LINE_PTR, CMDLINE)
    if initrd is not None:
        top = min(usable_top, header.initrd_addr_max + 1)
        address = (top - len(initrd)) // hw.PAGE_SIZE * hw.PAGE_SIZE
        if address < footprint_end:
            raise BuildError(f"{where}.initrd", f"{len(initrd)} bytes do not fit between the kernel "
                             f"(up to {footprint_end:#x}) and {top:#x}, the top of the guest's memory "
                             f"the kernel can reach it in: give the guest more memory")
        segments.append((address, initrd))
        struct.pack_into("<II", zero_page, RAMDISK_IMAGE, address, len(initrd))
    if header.version >= PROTOCOL_RSDP:
        struct.pack_into("<Q", zero_page, ACPI_RSDP_ADDR, rsdp)
    regions = e820_map(memory, usable_top)
    assert len(regions) <= E820_MAX_ENTRIES
    zero_page[E820_ENTRIES] = len(regions)
    for index, region in enumerate(regions):
        E820_ENTRY.pack_into(zero_page, E820_TABLE + index * E820_ENTRY.size, *region)
    segments.append((ZERO_PAGE, bytes(zero_page)))
    return Placed(tuple(segments), ZERO_PAGE, KERNEL_LOAD + ENTRY_64_OFFSET)
