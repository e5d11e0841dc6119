"""Stage 6b: prove from the finished image that the guests are isolated.

An independent check of what `builder.paging` built: it reads the image
back as a boot loader loads it (the ELF's PT_LOAD segments, zero-filled to
their memory sizes), takes each guest's EPT pointer from its VMCS set-up
tables and its nested CR3 from its VMCB, and walks every present entry of
the tables those reach.  It trusts nothing but the image bytes and what the
config gave each guest: its name and its host memory [base, base + size).

Per guest and per structure (EPT, NPT) it proves:

1. every entry is well formed: EPT (SDM Vol. 3C 29.3.2, 29.3.3.1) has read
   access wherever it has any, no reserved bits in directory entries, and
   leaves of memory type UC or WB only (29.3.7); a large page (bit 7 in a
   PDPT or PD entry) leaves the address bits below its size clear.  NPT
   uses the long-mode format (APM Vol. 2 15.25, SDM Vol. 3A 4.5): present
   is bit 0, bit 7 is the page size (reserved in a PML4 entry), bit 12 of a
   large page is its PAT bit;
2. every table lies inside the image's loaded memory (no dangling pointer)
   and is reached once in all the walks together (no loop, no table shared
   between guests or structures);
3. guest-physical [0, size) is mapped, all of it, and nothing else, each
   page to base + its guest-physical address: the guest reaches its own
   memory and no frame of the hypervisor (everything below the first
   guest's memory) or of memory no guest was given;
4. no guest reaches a paging-structure page of any guest.

Since the guests' memories are checked to be disjoint, 3 also proves that
no frame is reachable by two guests.  `builder.build.build` runs the check
on every image, so `hvbuild` never writes one that fails it.

Tables are walked, not pages: a page table whose 512 entries map 2 MiB in
one run is recognised by comparing its bytes with that run, a large page
is one range, and the ranges are checked, so a 1 GiB guest costs 512
table comparisons rather than 262,144 entry checks.
"""

from __future__ import annotations

import bisect
import io
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile

from builder import elf, hw
from builder.errors import BuildError
from builder.layout import VMCS_INIT_ENTRY, GuestLayout, Layout
from builder.vmcs import Adjust

PAGE = hw.PAGE_SIZE
ENTRY_SIZE = 8
TABLE_FORMAT = f"<{hw.ENTRIES_PER_TABLE}Q"
LEVELS = {4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}    # 4-level walks only
LARGE_PAGES = {3: "1 GiB", 2: "2 MiB"}                # what a leaf in a PDPT or PD maps
ADDRESS_BITS = (1 << 52) - PAGE     # bits 51:12 of an entry: SDM Vol. 3C 29.3.2, Vol. 3A 4.5
EPT_DIRECTORY_RESERVED = 0xF8       # bits 7:3 of an entry that references a table: SDM Vol. 3C 29.3.2
EPT_MEMTYPE_UC = 0                  # SDM Vol. 3C 29.3.7 (memory types: SDM Vol. 3A 12.3)
EPT_MEMTYPES = (EPT_MEMTYPE_UC, hw.EPT_MEMTYPE_WB)
EPT_MEMTYPE_MASK = 0x7              # leaf bits 5:3, shifted down; EPTP bits 2:0 (SDM Vol. 3C 25.6.11)
EPTP_WALK_LENGTH_MASK = 0x7 << 3    # EPTP bits 5:3: walk length - 1 (SDM Vol. 3C 25.6.11)
NPT_LARGE_PAT = hw.bit(12)          # a 1 GiB / 2 MiB page's PAT bit: SDM Vol. 3A 4.5, tables 4-16, 4-18
VMCS_INIT_ADJUST_SHIFT = 32         # a set-up entry's first quadword: adjust << 32 | field (builder/vmcs.py)


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD segment: `data` at `address`, zeros up to `memory_size`."""

    address: int
    data: bytes
    memory_size: int
    flags: int

    @property
    def permissions(self) -> str:
        return "".join(letter if self.flags & flag else "-"
                       for letter, flag in (("r", elf.PF_R), ("w", elf.PF_W), ("x", elf.PF_X)))


@dataclass(frozen=True)
class PhysicalMemory:
    """Physical memory as a multiboot loader leaves it: each PT_LOAD at its
    physical address; everything else is not the image's."""

    segments: tuple[Segment, ...]       # sorted by address

    @classmethod
    def from_elf(cls, image: bytes) -> PhysicalMemory:
        file = ELFFile(io.BytesIO(image))
        return cls(tuple(sorted((Segment(s["p_paddr"], s.data(), s["p_memsz"], s["p_flags"])
                                 for s in file.iter_segments() if s["p_type"] == "PT_LOAD"),
                                key=lambda segment: segment.address)))

    def segment(self, address: int) -> Segment | None:
        """The segment whose memory holds `address`, if any."""
        index = bisect.bisect_right(self.segments, address, key=lambda segment: segment.address) - 1
        if index >= 0 and address < self.segments[index].address + self.segments[index].memory_size:
            return self.segments[index]
        return None

    def read(self, address: int, size: int) -> bytes | None:
        """The `size` bytes at `address`, or None unless one segment loads them all."""
        segment = self.segment(address)
        if segment is None or address + size > segment.address + segment.memory_size:
            return None
        offset = address - segment.address
        return segment.data[offset:offset + size].ljust(size, b"\0")


@dataclass(frozen=True)
class Format:
    """How a second-level paging structure's entries read."""

    name: str                                   # "EPT" or "NPT"
    present: int                                # an entry with any of these bits is used
    large_page_low_bits: int                    # bits below a large page's address that are not reserved
    problem: Callable[[int, int, bool], str | None]     # (entry, level, leaf) -> what is wrong


def _ept_problem(entry: int, level: int, leaf: bool) -> str | None:
    if not entry & hw.EPT_READ:
        return ("write or execute without read (SDM Vol. 3C 29.3.3.1: write-only is an EPT "
                "misconfiguration, execute-only needs a CPU feature)")
    if not leaf:
        return "reserved bits 7:3 set" if entry & EPT_DIRECTORY_RESERVED else None
    memtype = entry >> hw.EPT_MEMTYPE_SHIFT & EPT_MEMTYPE_MASK
    if memtype not in EPT_MEMTYPES:
        return f"memory type {memtype} (only UC {EPT_MEMTYPE_UC} and WB {hw.EPT_MEMTYPE_WB} are allowed)"
    return None


def _npt_problem(entry: int, level: int, leaf: bool) -> str | None:
    if level == 4 and entry & hw.PTE_LARGE:
        return "reserved bit 7 set in a PML4 entry"
    return None


EPT = Format("EPT", hw.EPT_RWX, 0, _ept_problem)
NPT = Format("NPT", hw.PTE_PRESENT, NPT_LARGE_PAT, _npt_problem)


@dataclass(frozen=True)
class Mapping:
    """Guest-physical [gpa, gpa + size) -> host-physical [hpa, hpa + size)."""

    gpa: int
    hpa: int
    size: int


@dataclass(frozen=True)
class Proof:
    """What was proved for one guest's EPT or NPT."""

    guest: str
    kind: str           # "EPT" or "NPT"
    root: int           # host-physical address of its PML4
    tables: int         # paging-structure pages walked


class _Refused(Exception):
    """One line saying why the image fails the check."""


class Walk:
    """One guest's EPT or NPT, walked from its root; `seen` is shared by
    every walk of an image: table page -> whose table it is."""

    def __init__(self, memory: PhysicalMemory, fmt: Format, guest: str, seen: dict[int, str]) -> None:
        self.memory, self.fmt, self.seen = memory, fmt, seen
        self.prefix = f"isolation check failed: guest {guest} ({fmt.name})"
        self.owner = f"guest {guest}'s {fmt.name}"
        self.mappings: list[Mapping] = []
        self.tables = 0

    def table(self, address: int, level: int, gpa: int, reference: str) -> None:
        """Walk the table at `address` of `level` (4 = PML4 ... 1 = PT),
        which covers guest-physical addresses from `gpa`; `reference` says
        which entry points at it."""
        page = self.memory.read(address, PAGE)
        if page is None:
            raise _Refused(f"{self.prefix} {reference} points to host-physical {address:#x}, which the "
                           "image does not load: a dangling table pointer")
        if address in self.seen:
            raise _Refused(f"{self.prefix} {reference} points to host-physical {address:#x}, already "
                           f"reached as {self.seen[address]}: a loop or a shared table")
        self.seen[address] = f"{self.owner} {LEVELS[level]}"
        self.tables += 1
        if level == 1 and self._one_run(page, gpa):
            return
        span = PAGE * hw.ENTRIES_PER_TABLE ** (level - 1)      # what one entry of this table maps
        for index, entry in enumerate(struct.unpack(TABLE_FORMAT, page)):
            if not entry & self.fmt.present:
                continue
            here = gpa + index * span
            # Bit 7 of a PDPT or PD entry maps a 1 GiB or 2 MiB page, in EPT
            # (SDM Vol. 3C 29.3.2) and NPT (SDM Vol. 3A 4.5) alike.
            leaf = level == 1 or (level < 4 and bool(entry & hw.PTE_LARGE))
            where = f"{LEVELS[level]} entry for guest-physical {here:#x}"
            problem = self.fmt.problem(entry, level, leaf)
            if problem is None and leaf and entry & ADDRESS_BITS & (span - 1) & ~self.fmt.large_page_low_bits:
                problem = f"a {LARGE_PAGES[level]} page with reserved address bits set"
            if problem is not None:
                raise _Refused(f"{self.prefix} {where} ({entry:#x} at host-physical "
                               f"{address + ENTRY_SIZE * index:#x}): {problem}")
            if leaf:
                self._map(here, entry & ADDRESS_BITS & ~(span - 1), span)
            else:
                self.table(entry & ADDRESS_BITS, level - 1, here, where)

    def _one_run(self, page: bytes, gpa: int) -> bool:
        """Map a page table at once if its entries are one valid leaf
        repeated over 512 consecutive pages (the usual case)."""
        first = int.from_bytes(page[:ENTRY_SIZE], "little")
        hpa = first & ADDRESS_BITS
        if (not first & self.fmt.present or self.fmt.problem(first, 1, True) is not None
                or hpa + hw.LARGE_PAGE_SIZE > ADDRESS_BITS + PAGE):
            return False
        if page != struct.pack(TABLE_FORMAT, *range(first, first + hw.LARGE_PAGE_SIZE, PAGE)):
            return False
        self._map(gpa, hpa, hw.LARGE_PAGE_SIZE)
        return True

    def _map(self, gpa: int, hpa: int, size: int) -> None:
        last = self.mappings[-1] if self.mappings else None
        if last and last.gpa + last.size == gpa and last.hpa + last.size == hpa:
            self.mappings[-1] = Mapping(last.gpa, last.hpa, last.size + size)
        else:
            self.mappings.append(Mapping(gpa, hpa, size))


def _owns(guest: GuestLayout, address: int) -> bool:
    return guest.memory_base <= address < guest.memory_base + guest.memory_size


class _Owners:
    """Whose each host-physical page is: a guest's memory, a paging
    structure, the hypervisor (below the first guest) or nobody's."""

    def __init__(self, memory: PhysicalMemory, guests: tuple[GuestLayout, ...],
                 tables: dict[int, str]) -> None:
        self.memory, self.guests, self.tables = memory, guests, tables
        self.table_pages = sorted(tables)
        self.hypervisor_end = min(guest.memory_base for guest in guests)

    def first_table(self, start: int, end: int) -> int | None:
        """The lowest paging-structure page in [start, end), if any."""
        index = bisect.bisect_left(self.table_pages, start)
        if index < len(self.table_pages) and self.table_pages[index] < end:
            return self.table_pages[index]
        return None

    def describe(self, hpa: int, guest: GuestLayout) -> str:
        """The page at `hpa`, as `guest` sees it, for a message."""
        if hpa in self.tables:
            return f"a paging-structure page ({self.tables[hpa]})"
        owner = next((other for other in self.guests if _owns(other, hpa)), None)
        if owner is guest:
            return "a page of its own memory"
        if owner is not None:
            return f"a page of guest {owner.name}'s memory"
        if hpa < self.hypervisor_end:
            segment = self.memory.segment(hpa)
            return "a page of the hypervisor" + (f" (its {segment.permissions} segment at "
                                                 f"{segment.address:#x})" if segment else "")
        return "memory no guest was given"


def check(image: bytes, layout: Layout, where: str) -> tuple[Proof, ...]:
    """Prove the guests of `image` (the finished ELF) isolated, or raise
    BuildError(where, ...) saying which guest reaches what."""
    try:
        return _check(PhysicalMemory.from_elf(image), layout)
    except _Refused as refusal:
        raise BuildError(where, str(refusal)) from None


def _check(memory: PhysicalMemory, layout: Layout) -> tuple[Proof, ...]:
    _check_disjoint(layout.guests)
    seen: dict[int, str] = {}
    walks: list[tuple[GuestLayout, Walk, int]] = []
    for guest in layout.guests:
        roots = []
        if guest.vmcs_init is not None:
            roots.append((EPT, _ept_root(memory, layout, guest), "its EPT_POINTER"))
        if guest.vmcb is not None:
            roots.append((NPT, _npt_root(memory, guest), "its VMCB's N_CR3"))
        for fmt, root, reference in roots:
            walk = Walk(memory, fmt, guest.name, seen)
            walk.table(root, 4, 0, reference)
            walks.append((guest, walk, root))
    owners = _Owners(memory, layout.guests, seen)
    for guest, walk, _ in walks:
        for mapping in walk.mappings:
            _check_mapping(walk, mapping, guest, owners)
        _check_complete(walk, guest)
    return tuple(Proof(guest.name, walk.fmt.name, root, walk.tables) for guest, walk, root in walks)


def _check_disjoint(guests: tuple[GuestLayout, ...]) -> None:
    ordered = sorted(guests, key=lambda guest: guest.memory_base)
    for low, high in itertools.pairwise(ordered):
        if _owns(low, high.memory_base):
            raise _Refused(f"isolation check failed: guest {high.name}'s memory at {high.memory_base:#x} "
                           f"overlaps guest {low.name}'s")


def _ept_root(memory: PhysicalMemory, layout: Layout, guest: GuestLayout) -> int:
    """The EPT pointer the VMCS ends up with: the common set-up table is
    written first, then the guest's (hv/vmx/init.s.j2); the last write wins."""
    prefix = f"isolation check failed: guest {guest.name} (EPT)"
    fields: dict[int, tuple[int, int]] = {}
    for address, count in ((layout.rodata["vmcs_common"], layout.common_entries),
                           (guest.vmcs_init, layout.guest_entries)):
        table = memory.read(address, count * VMCS_INIT_ENTRY)
        if table is None:
            raise _Refused(f"{prefix}: the VMCS set-up table at {address:#x} is not in the image")
        for key, value in struct.iter_unpack("<QQ", table):
            adjust, field = divmod(key, 1 << VMCS_INIT_ADJUST_SHIFT)
            fields[field] = (adjust, value)
    primary = fields.get(hw.Vmcs.CPU_BASED_VM_EXEC_CONTROL, (0, 0))[1]
    secondary = fields.get(hw.Vmcs.SECONDARY_VM_EXEC_CONTROL, (0, 0))[1]
    if not (primary & hw.PROC_ACTIVATE_SECONDARY_CONTROLS and secondary & hw.PROC2_ENABLE_EPT):
        raise _Refused(f"{prefix}: the VMCS set-up tables do not enable EPT: the guest would reach "
                       "host-physical memory directly")
    if hw.Vmcs.EPT_POINTER not in fields:
        raise _Refused(f"{prefix}: no EPT_POINTER in its VMCS set-up table at {guest.vmcs_init:#x}")
    adjust, pointer = fields[hw.Vmcs.EPT_POINTER]
    if adjust != Adjust.NONE:
        raise _Refused(f"{prefix}: its EPT_POINTER is adjusted to the CPU (kind {adjust}), so the "
                       "image does not fix it")
    if (pointer & EPT_MEMTYPE_MASK not in EPT_MEMTYPES
            or pointer & EPTP_WALK_LENGTH_MASK != hw.EPTP_WALK_LENGTH_4):
        raise _Refused(f"{prefix}: EPT pointer {pointer:#x} is not a 4-level walk of memory type UC or WB")
    return pointer & ADDRESS_BITS


def _npt_root(memory: PhysicalMemory, guest: GuestLayout) -> int:
    prefix = f"isolation check failed: guest {guest.name} (NPT)"
    vmcb = memory.read(guest.vmcb, PAGE)
    if vmcb is None:
        raise _Refused(f"{prefix}: its VMCB at {guest.vmcb:#x} is not in the image")
    np_control, = struct.unpack_from("<Q", vmcb, hw.Vmcb.NP_CONTROL)
    if not np_control & hw.SVM_NP_ENABLE:
        raise _Refused(f"{prefix}: its VMCB at {guest.vmcb:#x} does not enable nested paging: the "
                       "guest would reach host-physical memory directly")
    n_cr3, = struct.unpack_from("<Q", vmcb, hw.Vmcb.N_CR3)
    return n_cr3 & ADDRESS_BITS


def _check_mapping(walk: Walk, mapping: Mapping, guest: GuestLayout, owners: _Owners) -> None:
    """Refuse the first page of `mapping` that does not map guest-physical
    [0, size) to base + the same offset, or that is a paging structure."""
    base, size = guest.memory_base, guest.memory_size
    bad = []
    if mapping.hpa - mapping.gpa != base:
        bad.append(mapping.gpa)
    if mapping.gpa + mapping.size > size:
        bad.append(max(mapping.gpa, size))
    table = owners.first_table(mapping.hpa, mapping.hpa + mapping.size)
    if table is not None:
        bad.append(mapping.gpa + table - mapping.hpa)
    if not bad:
        return
    gpa = min(bad)
    hpa = mapping.hpa + gpa - mapping.gpa
    frame = owners.describe(hpa, guest)
    if gpa >= size:
        reason = f"past the {size:#x} bytes of memory the config gave it; the frame is {frame}"
    elif _owns(guest, hpa) and hpa not in owners.tables:
        reason = f"{frame}, but guest-physical {gpa:#x} belongs at host-physical {base + gpa:#x}"
    else:
        reason = frame
    raise _Refused(f"{walk.prefix} maps guest-physical {gpa:#x} to host-physical {hpa:#x}: {reason}")


def _check_complete(walk: Walk, guest: GuestLayout) -> None:
    """Every mapping is inside [0, size) by now, in order: find the first hole."""
    base, size = guest.memory_base, guest.memory_size
    covered = 0
    for mapping in walk.mappings:
        if mapping.gpa != covered:
            break
        covered += mapping.size
    if covered != size:
        raise _Refused(f"{walk.prefix} does not map guest-physical {covered:#x} (host-physical "
                       f"{base + covered:#x}): the config gives it [0, {size:#x})")
