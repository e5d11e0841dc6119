"""Stage 2b: place everything in physical memory.

The whole machine image is laid out here, before any code is assembled, so
every address the assembly needs is a constant.  Host-physical memory, from
1 MiB up (multiboot loads nothing below):

    text      hypervisor code and its symbol table     mapped read + execute
    rodata    IDT, exit dispatch, VMCS set-up tables     mapped read-only, NX
    rwdata    GDT, TSS, records, VMXON region, VMCSs,    mapped read-write, NX
              VMCBs, XSAVE areas
    stacks    each below an unmapped guard page          mapped read-write, NX
    tables    hypervisor page tables, I/O and MSR        not mapped: only the
              bitmaps and permission maps, every         CPU reads them
              guest's EPT and NPT, SVM host save areas
    guests    each guest's memory, side by side          not mapped

The VMX pieces exist when the image carries the VMX backend, the SVM
pieces when it carries the SVM backend (`backend = "auto"`: both).

A guest's memory is guest-physical [0, size); its last pages hold the
start-up tables a protected- or long-mode guest needs (a GDT, and the page
tables of a long-mode guest), so its image must end below `usable_top`.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import cpuid, hw, msrs, pool, vcpu
from builder.config import MIB, Config, StartMode
from builder.errors import BuildError
from builder.structs import CAPS, GUEST, HV

HV_BASE = 1 * MIB
TEXT_BUDGET = 128 * 1024            # code + symbol table; a build error if exceeded
STACK_SIZE = 16 * 1024
EXCEPTION_STACK_SIZE = 8 * 1024
PHYSICAL_LIMIT = 3 * 1024 * MIB     # stay below the PCI hole of a PC
IDT_VECTORS = 32                    # exceptions only: the hypervisor runs with IF=0
IDT_GATE_SIZE = 16
GDT_ENTRIES = 6                     # null, code64, data, code32, TSS (two slots)
TSS_SIZE = 104                      # SDM Vol. 3A 8.7, figure 8-11
CAPS_KINDS = 8                      # see builder.vmcs.Adjust
CAPS_SOURCE_SIZE = 16               # msr (4), style (4), relax (8): builder/vmcs.py
VMCS_INIT_ENTRY = 16                # (adjust << 32 | field, value)
SVM_IOPM_SIZE = 3 * 4096            # AMD APM Vol. 2 15.10.1
SVM_MSRPM_SIZE = 2 * 4096           # AMD APM Vol. 2 15.11


class Allocator:
    """Hands out consecutive aligned ranges and remembers them for the report."""

    def __init__(self, start: int) -> None:
        self.next = start
        self.regions: list[tuple[str, int, int]] = []

    def take(self, name: str, size: int, align: int = 8) -> int:
        address = align_up(self.next, align)
        self.next = address + size
        self.regions.append((name, address, size))
        return address


def align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@dataclass(frozen=True)
class NestedTables:
    """A guest's second-level paging structures (EPT or NPT): 4 levels,
    one PDPT and one PD (a guest has at most 1 GiB), a PT per 2 MiB."""

    pml4: int
    pdpt: int
    pd: int
    pts: tuple[int, ...]

    @property
    def ept_pointer(self) -> int:
        """The EPTP: root table, 4-level walk, write-back (SDM Vol. 3C 25.6.11)."""
        return self.pml4 | hw.EPTP_WALK_LENGTH_4 | hw.EPTP_MEMTYPE_WB


@dataclass(frozen=True)
class StartupLayout:
    """Guest-physical addresses of the start-up tables at the top of a guest."""

    gdt: int | None
    pml4: int | None        # long mode only: PML4, PDPT, PD follow page by page
    memory: int             # the guest's memory size

    @property
    def usable_top(self) -> int:
        """End of the memory an image may use: the tables, or the memory's end."""
        return min(a for a in (self.gdt, self.pml4, self.memory) if a is not None)


@dataclass(frozen=True)
class GuestLayout:
    index: int
    name: str
    vpid: int
    record: int
    memory_base: int
    memory_size: int
    usable_top: int
    startup: StartupLayout
    vmcs: int | None            # VMX backend: the VMCS, its set-up table, the EPT
    vmcs_init: int | None
    ept: NestedTables | None
    vmcb: int | None            # SVM backend: the VMCB, the NPT
    npt: NestedTables | None
    xsave_area: int             # the guest's x87/SSE/AVX state while another guest runs
    restart: RestartLayout      # what a restart (on_fault, the control console) copies back
    exit_counters: int = 0      # its VM exits by reason, EXIT_COUNTERS qwords (outside the record)


@dataclass(frozen=True)
class RestartLayout:
    """The pristine copies a restart reloads a guest from.  The hypervisor
    maps the guest's memory (read-write) and its pristine image (read-only)
    to copy one over the other.  Every guest has them: its policy (on_fault)
    restarts it after a fault, the control console whenever asked."""

    image: int                  # host-physical copy of the guest's memory as built
    record: int                 # the guest record as built (rodata)
    vmcb: int | None            # the VMCB as built (rodata), SVM backend


@dataclass(frozen=True)
class Layout:
    text: int
    rodata: dict[str, int]
    rwdata: dict[str, int]
    stack_top: int
    exception_stack_top: int
    hv_tables: tuple[int, ...]  # PML4 first; the rest are handed out as needed
    backends: tuple[str, ...]
    vmx: dict[str, int]         # VMX-wide structures (bitmaps); empty without VMX
    svm: dict[str, int]         # SVM-wide structures (permission maps, save areas)
    guests: tuple[GuestLayout, ...]
    regions: tuple[tuple[str, int, int], ...]
    mapped_end: int
    end: int
    common_entries: int
    guest_entries: int
    nested_tables: tuple[int, int] = (0, 0)    # [start, end): every guest's EPT and NPT pages

    @property
    def guest_memory(self) -> tuple[int, int]:
        """[start, end) of host memory that holds the guests' memory (no holes)."""
        return self.guests[0].memory_base, self.guests[-1].memory_base + self.guests[-1].memory_size

    @property
    def machine_memory(self) -> int:
        """Smallest RAM, in whole MiB, that holds the image."""
        return align_up(self.end, MIB)


# A guest's VM exits by reason: one qword per VMX basic exit reason, or
# per SVM exit code of the dispatch table and one for those above it.
EXIT_COUNTERS = max(hw.EXIT_REASON_COUNT, hw.SVM_EXIT_COUNTER_NAMES)


def startup_layout(mode: StartMode, memory: int) -> StartupLayout:
    page = hw.PAGE_SIZE
    if mode is StartMode.REAL:
        return StartupLayout(None, None, memory)
    if mode is StartMode.PROTECTED:
        return StartupLayout(memory - page, None, memory)
    # GDT page, then PML4, PDPT and one PD: the guest has at most 1 GiB.
    return StartupLayout(memory - 4 * page, memory - 3 * page, memory)


def hv_table_count(backends: tuple[str, ...]) -> int:
    """The hypervisor's own page tables: PML4, PDPT, a PD and a PT for its
    first 2 MiB; near 4 GiB a PD, and a PT each for the I/O APIC page and
    the VMX backend's local APIC page; a PD for each GiB below
    PHYSICAL_LIMIT, where guests' memory lies."""
    return 4 + 1 + 1 + ("vmx" in backends) + PHYSICAL_LIMIT // (1024 * MIB)


def guest_map_table_count(memory: int) -> int:
    """The hypervisor's page tables that map a guest's memory (the MMIO
    decoder reads its instructions and page tables there) and, for a
    pristine image (restarts): a PT per 2 MiB a range touches."""
    return 2 * (memory // hw.LARGE_PAGE_SIZE + 2)


def _nested_tables(alloc: Allocator, name: str, memory: int) -> NestedTables:
    page = hw.PAGE_SIZE
    pts = align_up(memory, hw.LARGE_PAGE_SIZE) // hw.LARGE_PAGE_SIZE
    return NestedTables(alloc.take(f"{name} pml4", page, page), alloc.take(f"{name} pdpt", page, page),
                        alloc.take(f"{name} pd", page, page),
                        tuple(alloc.take(f"{name} pt{i}", page, page) for i in range(pts)))


def plan(config: Config, modes: list[StartMode], common_entries: int,
         guest_entries: int) -> Layout:
    """Compute every address.

    `modes[i]` is guest i's start mode; `common_entries` and `guest_entries`
    are the lengths of the VMCS set-up tables (see `builder.vmcs`).
    """
    page = hw.PAGE_SIZE
    backends = config.hypervisor.backends
    has_vmx, has_svm = "vmx" in backends, "svm" in backends
    alloc = Allocator(HV_BASE)
    text = alloc.take("text", TEXT_BUDGET, page)

    rodata = {
        "idt": alloc.take("idt", IDT_VECTORS * IDT_GATE_SIZE, page),
        "caps_sources": alloc.take("capability sources", CAPS_KINDS * CAPS_SOURCE_SIZE),
        "msr_table": alloc.take("emulated MSR table", msrs.TABLE_SIZE),
        "cpuid_table": alloc.take("CPUID rules", cpuid.TABLE_COUNT * cpuid.ENTRY_SIZE),
        "strings": alloc.take("exit names", sum(len(name) + 1 for backend in backends
                                                for name in hw.exit_counter_names(backend))),
    }
    if has_vmx:
        rodata["vmx_exit_dispatch"] = alloc.take("VMX exit dispatch table", hw.EXIT_REASON_COUNT * 8)
        rodata["vmx_exit_names"] = alloc.take("VMX exit reason names", hw.EXIT_REASON_COUNT * 8)
        rodata["vmcs_common"] = alloc.take("VMCS common set-up", common_entries * VMCS_INIT_ENTRY)
    if has_svm:
        rodata["svm_exit_dispatch"] = alloc.take("SVM exit dispatch table", hw.SVM_EXITCODE_TABLE_SIZE * 8)
        rodata["svm_exit_names"] = alloc.take("SVM exit code names", hw.SVM_EXIT_COUNTER_NAMES * 8)
    vmcs_init = [alloc.take(f"VMCS set-up {g.name}", guest_entries * VMCS_INIT_ENTRY) if has_vmx else None
                 for g in config.guests]
    rodata["xsave_reset"] = alloc.take("XSAVE area at reset", vcpu.XSAVE_AREA_SIZE, page)
    if config.storage is not None:      # the pool's header as this build writes it (builder/pool.py)
        rodata["pool_header"] = alloc.take("storage pool header as built", pool.HEADER_SECTORS_BYTES, 16)
    pristine_records = [alloc.take(f"guest record {g.name} as built", GUEST.size, 64) for g in config.guests]
    pristine_vmcbs = [alloc.take(f"VMCB {g.name} as built", page, page) if has_svm else None
                      for g in config.guests]
    rwdata = {
        "gdt": alloc.take("gdt", GDT_ENTRIES * 8, page),
        "tss": alloc.take("tss", TSS_SIZE, 16),
        "hv": alloc.take("hypervisor state", HV.size),
        "caps": alloc.take("capabilities", CAPS_KINDS * CAPS.size),
        "guests": alloc.take("guest records", len(config.guests) * GUEST.size, 64),
    }
    exit_counters = [alloc.take(f"VM exits by reason {g.name}", EXIT_COUNTERS * 8, 64)
                     for g in config.guests]
    # One bit per frame of the guests' memory: the run-time isolation check
    # (hv/core/isolation.s.j2) marks each frame a guest reaches.
    guest_frames = sum(g.memory for g in config.guests) // page
    rwdata["frame_bitmap"] = alloc.take("frames the guests reach (isolation check)",
                                        align_up(guest_frames, 64) // 8, 8)
    if config.storage is not None:      # what the ATA driver reads the pool's header into
        rwdata["ata_buffer"] = alloc.take("ATA sector buffer", pool.HEADER_SECTORS_BYTES, 16)
        # the header as the disk holds it: as built, or with disks grown since
        rwdata["pool_state"] = alloc.take("storage pool header as served", pool.HEADER_SECTORS_BYTES, 16)
    if has_vmx:
        rwdata["vmxon"] = alloc.take("VMXON region", page, page)
    vmcs = [alloc.take(f"VMCS {g.name}", page, page) if has_vmx else None for g in config.guests]
    vmcb = [alloc.take(f"VMCB {g.name}", page, page) if has_svm else None for g in config.guests]
    xsave = [alloc.take(f"XSAVE area {g.name}", vcpu.XSAVE_AREA_SIZE, page) for g in config.guests]
    alloc.take("stack guard (unmapped)", page, page)
    stack_top = alloc.take("stack", STACK_SIZE, page) + STACK_SIZE
    alloc.take("exception stack guard (unmapped)", page, page)
    exception_stack_top = alloc.take("exception stack", EXCEPTION_STACK_SIZE, page) + EXCEPTION_STACK_SIZE
    mapped_end = alloc.next
    assert mapped_end <= hw.LARGE_PAGE_SIZE, "the hypervisor's mapped range outgrew its one page table"

    hv_tables = tuple(alloc.take(f"hv page table {i}", page, page) for i in range(hv_table_count(backends)))
    hv_tables += tuple(alloc.take(f"hv page table {i} mapping {g.name}", page, page)
                       for g in config.guests for i in range(guest_map_table_count(g.memory)))
    nested_pages = sum(3 + align_up(g.memory, hw.LARGE_PAGE_SIZE) // hw.LARGE_PAGE_SIZE
                       for g in config.guests) * (has_vmx + has_svm)
    hv_tables += tuple(alloc.take(f"hv page table {i} mapping the nested tables", page, page)
                       for i in range(nested_pages * page // hw.LARGE_PAGE_SIZE + 2))
    vmx, svm = {}, {}
    if has_vmx:
        vmx["io_bitmap_a"] = alloc.take("I/O bitmap A", page, page)
        vmx["io_bitmap_b"] = alloc.take("I/O bitmap B", page, page)
        vmx["msr_bitmap"] = alloc.take("MSR bitmap", page, page)
    if has_svm:
        svm["iopm"] = alloc.take("I/O permission map", SVM_IOPM_SIZE, page)
        svm["msrpm"] = alloc.take("MSR permission map", SVM_MSRPM_SIZE, page)
        svm["host_save_area"] = alloc.take("SVM host save area", page, page)
        svm["host_vmcb"] = alloc.take("SVM host VMCB (VMSAVE/VMLOAD)", page, page)
    epts = [_nested_tables(alloc, f"EPT {g.name}", g.memory) if has_vmx else None for g in config.guests]
    npts = [_nested_tables(alloc, f"NPT {g.name}", g.memory) if has_svm else None for g in config.guests]

    nested_end = alloc.next
    nested_start = next(t.pml4 for t in epts + npts if t is not None)
    assert nested_end - nested_start == nested_pages * page, "the nested tables are not one run"
    bases = [alloc.take(f"guest {g.name} memory", g.memory, page) for g in config.guests]
    assert bases[-1] + config.guests[-1].memory - bases[0] == guest_frames * page, "guest memory has holes"
    pristine_images = [alloc.take(f"guest {g.name} memory as built (restarts)", g.memory, page)
                       for g in config.guests]
    guests = []
    for index, (guest, mode) in enumerate(zip(config.guests, modes)):
        base = bases[index]
        startup = startup_layout(mode, guest.memory)
        restart = RestartLayout(pristine_images[index], pristine_records[index], pristine_vmcbs[index])
        guests.append(GuestLayout(
            index=index, name=guest.name, vpid=index + 1,
            record=rwdata["guests"] + index * GUEST.size, memory_base=base,
            memory_size=guest.memory, usable_top=startup.usable_top, startup=startup,
            vmcs=vmcs[index], vmcs_init=vmcs_init[index], ept=epts[index],
            vmcb=vmcb[index], npt=npts[index], xsave_area=xsave[index], restart=restart,
            exit_counters=exit_counters[index]))
    if alloc.next > PHYSICAL_LIMIT:
        raise BuildError(config.source, f"the guests need {alloc.next // MIB} MiB of physical "
                         f"memory; the machine layout allows {PHYSICAL_LIMIT // MIB} MiB")
    return Layout(text=text, rodata=rodata, rwdata=rwdata, stack_top=stack_top,
                  exception_stack_top=exception_stack_top, hv_tables=hv_tables,
                  backends=backends, vmx=vmx, svm=svm, guests=tuple(guests), regions=tuple(alloc.regions), mapped_end=mapped_end,
                  nested_tables=(nested_start, nested_end),
                  end=alloc.next, common_entries=common_entries,
                  guest_entries=guest_entries)
