"""The storage pool: one file the user keeps, holding every guest's disks
as extents, with a small header that records who has which.

Layout of the file (little-endian):

    [0, HEADER_SIZE)      the header: HEADER_FORMAT, then MAX_DISKS entries
                          of ENTRY_FORMAT; CRC-32 over the header with its
                          checksum field zero
    [HEADER_SIZE, size)   extents, each a multiple of EXTENT_ALIGN and
                          aligned to it; free space between them

A disk keeps its extent, and so its data, from build to build; a new disk
gets free space, zeroed before the header records it (a guest never reads
another's old data); a disk that leaves the config keeps its extent until
`hvbuild --release GUEST/DISK` frees it.  Nothing is written until the
whole new allocation is known to fit: a pool too small, or a header that
is damaged, is refused with the pool untouched.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder import hw
from builder.errors import BuildError

MIB = 1 << 20
SECTOR_SIZE = hw.ATA_SECTOR_SIZE          # the ATA disk's sector, and virtio-blk's
assert SECTOR_SIZE == hw.VIRTIO_BLK_SECTOR_SIZE
HEADER_SIZE = 1 * MIB                   # extents start here
EXTENT_ALIGN = 1 * MIB                  # extents and disk sizes are whole MiB
MAGIC = b"hvbpool\0"
VERSION = 1
MAX_DISKS = 128
NAME_SIZE = 16                          # GUEST_NAME_SIZE: 15 characters and a NUL
# magic, version, entries in use, pool size, generation, checksum
HEADER_FORMAT = struct.Struct("<8sIIQQI4x")
# guest, disk, first byte, size
ENTRY_FORMAT = struct.Struct(f"<{NAME_SIZE}s{NAME_SIZE}sQQ16x")
HEADER_BYTES = HEADER_FORMAT.size + MAX_DISKS * ENTRY_FORMAT.size
HEADER_SECTORS = -(-HEADER_BYTES // SECTOR_SIZE)    # what the hypervisor reads back at boot
HEADER_SECTORS_BYTES = HEADER_SECTORS * SECTOR_SIZE
CHECKSUM_OFFSET = HEADER_FORMAT.size - 8
GENERATION_OFFSET = CHECKSUM_OFFSET - 8
COUNT_OFFSET = 12
SIZE_OFFSET = 16
ENTRY_START_OFFSET = 2 * NAME_SIZE
ENTRY_SIZE_OFFSET = ENTRY_START_OFFSET + 8
CRC32_POLYNOMIAL = 0xEDB88320           # zlib.crc32's, bit-reversed (ISO 3309)
assert struct.unpack_from("<I", HEADER_FORMAT.pack(b"", 0, 7, 0, 0, 0), COUNT_OFFSET)[0] == 7
assert struct.unpack_from("<Q", HEADER_FORMAT.pack(b"", 0, 0, 7, 0, 0), SIZE_OFFSET)[0] == 7
assert struct.unpack_from("<Q", HEADER_FORMAT.pack(b"", 0, 0, 0, 7, 0), GENERATION_OFFSET)[0] == 7
assert struct.unpack_from("<Q", ENTRY_FORMAT.pack(b"", b"", 0, 7), ENTRY_SIZE_OFFSET)[0] == 7
ZERO_CHUNK = 4 * MIB


@dataclass(frozen=True)
class Extent:
    guest: str
    disk: str
    start: int                          # byte offset in the pool file, EXTENT_ALIGN-aligned
    size: int                           # bytes, a multiple of EXTENT_ALIGN

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def key(self) -> str:
        return f"{self.guest}/{self.disk}"


@dataclass(frozen=True)
class Header:
    size: int                           # the pool's bytes
    generation: int                     # writes so far
    extents: tuple[Extent, ...]         # by start

    def extent(self, guest: str, disk: str) -> Extent:
        return next(e for e in self.extents if e.guest == guest and e.disk == disk)

    def entry(self, guest: str, disk: str) -> int:
        """The disk's entry number in the packed header (extents by start)."""
        return self.extents.index(self.extent(guest, disk))


def asm_constants() -> dict[str, int]:
    """The header's layout, for the hypervisor, which checks it at boot and
    rewrites it when a disk grows (hv/drivers/ata.s.j2, hv/core/control.s.j2)."""
    return {"POOL_HEADER_SECTORS": HEADER_SECTORS, "POOL_HEADER_BYTES": HEADER_BYTES,
            "POOL_HEADER_FIXED": GENERATION_OFFSET, "POOL_GENERATION": GENERATION_OFFSET,
            "POOL_CHECKSUM": CHECKSUM_OFFSET, "POOL_COUNT": COUNT_OFFSET, "POOL_SIZE": SIZE_OFFSET,
            "POOL_ENTRIES": HEADER_FORMAT.size, "POOL_ENTRY_SIZE": ENTRY_FORMAT.size,
            "POOL_ENTRY_START": ENTRY_START_OFFSET, "POOL_ENTRY_LENGTH": ENTRY_SIZE_OFFSET,
            "POOL_ENTRY_TAIL": ENTRY_SIZE_OFFSET + 8, "POOL_EXTENT_ALIGN": EXTENT_ALIGN,
            "POOL_NEXT_ENTRY_START": ENTRY_FORMAT.size + ENTRY_START_OFFSET,
            "POOL_CRC32_POLYNOMIAL": CRC32_POLYNOMIAL, "MIB_SECTORS_SHIFT": (MIB // SECTOR_SIZE).bit_length() - 1}


def pack(header: Header) -> bytes:
    """The header's HEADER_BYTES, its checksum in place."""
    if len(header.extents) > MAX_DISKS:
        raise ValueError(f"{len(header.extents)} disks; a pool holds at most {MAX_DISKS}")
    entries = b"".join(ENTRY_FORMAT.pack(e.guest.encode(), e.disk.encode(), e.start, e.size)
                       for e in header.extents)
    entries += bytes(ENTRY_FORMAT.size * (MAX_DISKS - len(header.extents)))
    blank = HEADER_FORMAT.pack(MAGIC, VERSION, len(header.extents), header.size, header.generation, 0)
    checksum = zlib.crc32(blank + entries)
    return HEADER_FORMAT.pack(MAGIC, VERSION, len(header.extents), header.size, header.generation,
                              checksum) + entries


def unpack(data: bytes, where: str) -> Header:
    """The header of a pool file, checked; BuildError(where, ...) says what
    is wrong with a damaged one."""
    if len(data) < HEADER_BYTES:
        raise BuildError(where, f"not a storage pool: {len(data)} bytes, shorter than its header")
    magic, version, count, size, generation, checksum = HEADER_FORMAT.unpack_from(data)
    if magic != MAGIC:
        raise BuildError(where, "not a storage pool (no pool header at its start)")
    if version != VERSION:
        raise BuildError(where, f"pool header version {version}; this hvbuild reads version {VERSION}")
    blank = bytearray(data[:HEADER_BYTES])
    blank[CHECKSUM_OFFSET:CHECKSUM_OFFSET + 4] = bytes(4)
    if zlib.crc32(blank) != checksum:
        raise BuildError(where, "the pool header is damaged (its checksum does not match): "
                         "restore the file from a copy")
    if count > MAX_DISKS:
        raise BuildError(where, f"the pool header is damaged: {count} disks, at most {MAX_DISKS}")
    extents = []
    for index in range(count):
        guest, disk, start, length = ENTRY_FORMAT.unpack_from(data, HEADER_FORMAT.size
                                                              + index * ENTRY_FORMAT.size)
        extents.append(Extent(guest.rstrip(b"\0").decode("ascii", "replace"),
                              disk.rstrip(b"\0").decode("ascii", "replace"), start, length))
    extents.sort(key=lambda e: e.start)
    previous_end = HEADER_SIZE
    for extent in extents:
        if (extent.start % EXTENT_ALIGN or extent.size % EXTENT_ALIGN or not extent.size
                or extent.start < previous_end or extent.end > size):
            raise BuildError(where, f"the pool header is damaged: disk {extent.key}'s extent "
                             f"[{extent.start:#x}, {extent.end:#x}) overlaps or leaves the pool")
        previous_end = extent.end
    if len({e.key for e in extents}) != len(extents):
        raise BuildError(where, "the pool header is damaged: a disk is recorded twice")
    return Header(size, generation, tuple(extents))


def read(path: Path) -> Header | None:
    """The pool's header, or None if there is no pool file yet."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(HEADER_BYTES)
            stream.seek(0, os.SEEK_END)
            length = stream.tell()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BuildError(str(path), f"cannot read the storage pool: {error.strerror}") from None
    header = unpack(data, str(path))
    if length < header.size:
        raise BuildError(str(path), f"the pool file is {length} bytes, shorter than the {header.size} "
                         "its header records (truncated?)")
    return header


@dataclass(frozen=True)
class Plan:
    """What the build makes of the pool: the header it will write, and the
    extents it must zero first (new ones)."""

    path: Path
    creates: bool
    header: Header
    fresh: tuple[Extent, ...]           # new extents: zeroed before the header names them
    kept: tuple[Extent, ...]            # extents of disks no longer in the config
    asked: dict[str, int] = field(default_factory=dict)   # each config disk's size, by key

    def grown(self, extent: Extent) -> bool:
        """Is the disk larger than its config says (grown at run time)?"""
        return extent.key in self.asked and extent.size > self.asked[extent.key]

    def extent(self, guest: str, disk: str) -> Extent:
        return self.header.extent(guest, disk)


def plan(path: Path, size: int | None, disks: list[tuple[str, str, int, str]],
         release: tuple[str, ...] = ()) -> Plan:
    """Allocate `disks` ((guest, disk, size, config key) each) in the pool
    at `path` (created with `size` if missing), freeing the extents named
    in `release` ("GUEST/DISK").  Raises BuildError naming the key or file
    if they do not fit; reads, never writes."""
    where = str(path)
    existing = read(path)
    if existing is None:
        if size is None:
            raise BuildError(f"{where}", "no such pool: give [storage] size to create it")
        existing = Header(size, 0, ())
        creates = True
    else:
        creates = False
        if size is not None and size < existing.size:
            raise BuildError(where, f"the pool is {existing.size} bytes; [storage] size {size} "
                             "cannot shrink it")
        if size is not None and size > existing.size:
            existing = replace(existing, size=size)
    wanted = {f"{guest}/{disk}": (guest, disk, length, key) for guest, disk, length, key in disks}
    recorded = {extent.key: extent for extent in existing.extents}
    for name in release:
        if name not in recorded:
            raise BuildError(where, f"--release {name}: the pool has no such disk "
                             f"(it has: {', '.join(sorted(recorded)) or 'none'})")
        if name in wanted:
            raise BuildError(where, f"--release {name}: the config still has that disk")
    extents = [e for e in existing.extents if e.key not in release]
    fresh = []
    for name, (guest, disk, length, key) in wanted.items():
        if name in recorded and name not in release:
            if recorded[name].size < length:
                raise BuildError(key, f"disk {name} has {recorded[name].size // MIB}M in the pool; "
                                 f"a disk cannot grow at build time (grow it at run time: the "
                                 f"control console's disk command)")
            continue                    # as recorded: grown at run time, if larger (a disk never shrinks)
        start = _first_fit(extents, existing.size, length)
        if start is None:
            free = existing.size - HEADER_SIZE - sum(e.size for e in extents)
            raise BuildError(key, f"disk {name} needs {length // MIB}M; the pool {path.name} has "
                             f"{max(free, 0) // MIB}M free in all (grow [storage] size, or "
                             "--release a disk the config no longer has)")
        extent = Extent(guest, disk, start, length)
        extents.append(extent)
        extents.sort(key=lambda e: e.start)
        fresh.append(extent)
    if len(extents) > MAX_DISKS:
        raise BuildError(where, f"{len(extents)} disks; a pool holds at most {MAX_DISKS}")
    kept = tuple(e for e in extents if e.key not in wanted)
    header = Header(existing.size, existing.generation + 1, tuple(extents))
    asked = {key: length for key, (_, _, length, _) in wanted.items()}
    return Plan(path, creates, header, tuple(fresh), kept, asked)


def _first_fit(extents: list[Extent], pool_size: int, length: int) -> int | None:
    cursor = HEADER_SIZE
    for extent in sorted(extents, key=lambda e: e.start):
        if extent.start - cursor >= length:
            return cursor
        cursor = max(cursor, extent.end)
    return cursor if pool_size - cursor >= length else None


def commit(plan: Plan) -> None:
    """Write the plan: create or grow the file, zero the new extents, then
    the header in one write, each flushed to the disk before the next, so
    that a pool cut short at any moment holds either header."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if plan.creates else 0)
    try:
        fd = os.open(plan.path, flags, 0o644)
    except OSError as error:
        raise BuildError(str(plan.path), f"cannot open the storage pool: {error.strerror}") from None
    try:
        written_end = os.fstat(fd).st_size      # beyond it the file is new: zeros, and sparse
        if written_end < plan.header.size:
            os.ftruncate(fd, plan.header.size)
        zeros = bytes(ZERO_CHUNK)
        for extent in plan.fresh:
            for offset in range(extent.start, min(extent.end, written_end), ZERO_CHUNK):
                os.pwrite(fd, zeros[:min(ZERO_CHUNK, extent.end - offset)], offset)
        os.fsync(fd)
        os.pwrite(fd, pack(plan.header), 0)
        os.fsync(fd)
    except OSError as error:
        os.close(fd)
        if plan.creates:
            plan.path.unlink(missing_ok=True)
        raise BuildError(str(plan.path), f"cannot write the storage pool: {error.strerror}") from None
    os.close(fd)
