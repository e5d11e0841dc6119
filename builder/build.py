"""The pipeline: config -> guest images -> layout -> rendered assembly ->
machine code -> static tables -> ELF image (+ GRUB ISO, report).

`build()` computes everything in memory; `write_outputs()` writes the files
through a temporary directory, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder import (cmos, control, cpuid, devices, elf, pool, fw_cfg, hw, isolation, msrs, paging, svm, tables,
                     resources, vcpu, virtio, vmcs)
from builder.assemble import assemble
from builder.config import Config
from builder.errors import BuildError
from builder.guest_images import HYPERCALLS, GuestImage
from builder.guest_images import load as load_image
from builder.layout import (
    EXIT_COUNTERS,
    CAPS_KINDS,
    CAPS_SOURCE_SIZE,
    GDT_ENTRIES,
    HV_BASE,
    IDT_GATE_SIZE,
    IDT_VECTORS,
    SVM_IOPM_SIZE,
    SVM_MSRPM_SIZE,
    TEXT_BUDGET,
    Layout,
    align_up,
    plan,
)
from builder.render import render
from builder.structs import (
    CAPS,
    GUEST,
    GUEST_EXITED,
    GUEST_LINE_SIZE,
    GUEST_RUNNABLE,
    GUEST_SLEEPING,
    GUEST_STOPPED,
    HV,
    PIT_CHANNEL,
    mmio_asm_constants,
    SAVED_REGISTERS,
)

HV_TEMPLATE = "hv/hypervisor.s.j2"
GRUB_CFG = resources.root() / "qemu" / "grub.cfg"
ISO_TIMEOUT_S = 120
ISO_EPOCH = 946684800           # 2000-01-01, the date every ISO of ours carries
ISO_UUID_DATE = "2000010100000000"
SEGMENT_GAP = 64 * 1024         # zeros worth a new ELF segment rather than file bytes


@dataclass(frozen=True)
class BuildResult:
    config: Config
    layout: Layout
    images: tuple[GuestImage, ...]
    labels: dict[str, int]
    code_size: int
    text_size: int
    elf: bytes
    pool: pool.Plan | None = None       # the storage pool as this build leaves it (write_outputs)

    def report(self) -> str:
        return _report(self)


def panic_frame_offsets() -> dict[str, int]:
    """panic_report's stack, from its RSP: the saved registers, the vector
    and error code the stub pushed, then the CPU's frame (SDM Vol. 3A 6.14.2)."""
    slots = [*SAVED_REGISTERS, "vector", "error", "rip", "cs", "rflags", "rsp", "ss"]
    return {f"PANIC_FRAME_{name.upper()}": 8 * slots.index(name)
            for name in ("vector", "error", "rip", "rflags", "rsp")}


def asm_constants(config: Config, layout: Layout) -> dict[str, int]:
    """Every number the hypervisor templates may use, by name."""
    constants = {**hw.asm_constants(), **GUEST.asm_constants(), **HV.asm_constants(),
                 **CAPS.asm_constants(), **devices.asm_constants(), **cmos.asm_constants(),
                 **fw_cfg.asm_constants(), **mmio_asm_constants(), **msrs.asm_constants(),
                 **control.asm_constants(), **virtio.asm_constants(), **pool.asm_constants()}
    constants.update({f"LAYOUT_{name.upper()}": address for name, address in
                      {**layout.rodata, **layout.rwdata}.items()})
    # keystone keeps one symbol of [A + B] (see builder.assemble), so each
    # global variable gets its absolute address as one name.
    constants.update({f"HV_{name.upper()}_ADDR": layout.rwdata["hv"] + offset
                      for name, offset in HV.offsets.items()})
    for kind in (vmcs.Adjust.CR0, vmcs.Adjust.CR4):
        for name, offset in CAPS.offsets.items():
            address = layout.rwdata["caps"] + CAPS.size * kind + offset
            constants[f"CAPS_{kind.name}_{name.upper()}_ADDR"] = address
    constants.update({f"GUEST_UART_{name}": GUEST.offsets["uart_regs"] + register for name, register in
                      (("IER", hw.UART_IER), ("LCR", hw.UART_LCR), ("MCR", hw.UART_MCR), ("LSR", hw.UART_LSR))})
    constants["GUEST_PIT_CHANNEL0_NEXT_EDGE"] = GUEST.offsets["pit"] + PIT_CHANNEL.offsets["next_edge"]
    constants["GUEST_PIT_CHANNEL2"] = GUEST.offsets["pit"] + 2 * PIT_CHANNEL.size
    constants["VMCB_CS_BASE"] = hw.Vmcb.CS + hw.VMCB_SEGMENT_BASE
    constants["VMCB_CS_ATTRIBUTES"] = hw.Vmcb.CS + hw.VMCB_SEGMENT_ATTRIBUTES
    # A restart keeps the guest's battery-backed RTC and CMOS (hv/core/restart.s.j2).
    battery_backed = GUEST.offsets["cmos"] + hw.CMOS_SIZE - GUEST.offsets["rtc_offset"]
    constants["GUEST_BATTERY_BACKED_QWORDS"] = battery_backed // 8
    constants["GUEST_BATTERY_BACKED_SIZE"] = battery_backed
    constants.update({f"GUEST_CMOS_{name}": GUEST.offsets["cmos"] + register for name, register in
                      (("REGISTER_A", hw.RTC_REGISTER_A), ("REGISTER_B", hw.RTC_REGISTER_B),
                       ("SECONDS_ALARM", hw.RTC_SECONDS_ALARM), ("MINUTES_ALARM", hw.RTC_MINUTES_ALARM),
                       ("HOURS_ALARM", hw.RTC_HOURS_ALARM))})
    constants.update({f"LAYOUT_SVM_{name.upper()}": address for name, address in layout.svm.items()})
    # The VMCB's guest RAX, seen from the end of a guest record's register
    # area (where RSP points around VMRUN: hv/svm/entry.s.j2).
    constants["GUEST_VMCB_FROM_REGISTERS_END"] = GUEST.offsets["vmcb"] - 8 * len(SAVED_REGISTERS)
    arena_start, arena_end = layout.guest_memory
    constants.update(
        ISOLATION_ARENA_BASE=arena_start, ISOLATION_ARENA_FRAMES=(arena_end - arena_start) // hw.PAGE_SIZE,
        FRAME_BITMAP_QWORDS=-(-(arena_end - arena_start) // hw.PAGE_SIZE // 64),
        NESTED_TABLES_BASE=layout.nested_tables[0], NESTED_TABLES_END=layout.nested_tables[1],
        NESTED_PRESENT_VMX=hw.EPT_RWX, NESTED_PRESENT_SVM=hw.PTE_PRESENT,
        LAYOUT_STACK_TOP=layout.stack_top,
        LAYOUT_HV_PML4=layout.hv_tables[0],
        LAYOUT_GDT_LIMIT=GDT_ENTRIES * 8 - 1,
        LAYOUT_IDT_LIMIT=IDT_VECTORS * IDT_GATE_SIZE - 1,
        LAYOUT_END=layout.end,
        LAYOUT_GUESTS_END=layout.rwdata["guests"] + len(layout.guests) * GUEST.size,
        LAYOUT_HV_BASE=HV_BASE,
        CAPS_KINDS=CAPS_KINDS,
        CAPS_SIZE_SHIFT=CAPS.size.bit_length() - 1,
        CAPS_STYLE_CONTROL=int(vmcs.CapsStyle.CONTROL),
        CAPS_STYLE_FIXED=int(vmcs.CapsStyle.FIXED),
        CAPS_STYLE_TRUE_CONTROL=int(vmcs.CapsStyle.TRUE_CONTROL),
        VMCS_COMMON_COUNT=layout.common_entries,
        GUEST_COUNT=len(layout.guests),
        GUEST_LINE_SIZE_BYTES=GUEST_LINE_SIZE,
        NIBBLE_MASK=0xF,
        CAPS_SOURCE_SIZE=CAPS_SOURCE_SIZE,
        SYMTAB_ENTRY_SIZE=tables.SYMTAB_ENTRY_SIZE,
        PANIC_SAVED_REGISTERS=len(SAVED_REGISTERS), PANIC_REGISTER_NAME_SIZE=5,
        GUEST_REGISTERS_SIZE=8 * len(SAVED_REGISTERS),
        **panic_frame_offsets(),
        GUEST_RUNNABLE=GUEST_RUNNABLE, GUEST_EXITED=GUEST_EXITED, GUEST_STOPPED=GUEST_STOPPED,
        GUEST_SLEEPING=GUEST_SLEEPING,
        TIME_SLICE_CYCLES=config.hypervisor.time_slice,
        LAYOUT_MSR_TABLE_END=layout.rodata["msr_table"] + msrs.TABLE_SIZE,
        LAYOUT_CPUID_TABLE_END=layout.rodata["cpuid_table"] + cpuid.TABLE_COUNT * cpuid.ENTRY_SIZE,
        CPUID_ANY_SUBLEAF=cpuid.ANY_SUBLEAF,
        CPUID_GUEST_FEATURES_1_ECX=cpuid.GUEST_FEATURES_1_ECX,
        CPUID_GUEST_FEATURES_1_EDX=cpuid.GUEST_FEATURES_1_EDX,
        CPUID_GUEST_FEATURES_6_EAX=cpuid.GUEST_FEATURES_6_EAX,
        CPUID_ENTRY_SIZE=cpuid.ENTRY_SIZE,
        **{f"CPUID_ENTRY_{name.upper()}": offset for name, offset in cpuid.ENTRY_OFFSETS.items()},
        GUEST_XFEATURES=vcpu.GUEST_XFEATURES,
        VCPU_XSAVE_AREA_SIZE=vcpu.XSAVE_AREA_SIZE,
        VCPU_XSAVE_AREA_QWORDS=vcpu.XSAVE_AREA_SIZE // 8,
        GUEST_QWORDS=GUEST.size // 8,
        SVM_VMCB_QWORDS=hw.PAGE_SIZE // 8,
        SELECTOR_CODE64=vmcs.SELECTOR_CODE64, SELECTOR_DATA=vmcs.SELECTOR_DATA,
        SELECTOR_TSS=vmcs.SELECTOR_TSS, HOST_CR0=vmcs.HOST_CR0,
        # what boot sets in EFER; the CPU adds LMA when paging turns on
        BOOT_EFER=vmcs.HOST_EFER & ~hw.EFER_LMA,
        HV_SIGNATURE_EBX=int.from_bytes(hw.CPUID_HV_SIGNATURE[0:4], "little"),
        HV_SIGNATURE_ECX=int.from_bytes(hw.CPUID_HV_SIGNATURE[4:8], "little"),
        HV_SIGNATURE_EDX=int.from_bytes(hw.CPUID_HV_SIGNATURE[8:12], "little"),
        **{f"HYPERCALL_{name}": number for name, number in HYPERCALLS.items()},
    )
    return constants


def render_hypervisor(config: Config, layout: Layout, test_hooks: frozenset[str]) -> str:
    """The hypervisor's whole assembly source, constants first."""
    return render(HV_TEMPLATE, asm_constants(config, layout), layout=layout,
                  backends=layout.backends, port_devices=devices.PORT_DEVICES,
                  mmio_devices=devices.MMIO_DEVICES, isa_irq_pins=devices.isa_irq_pins(),
                  rtc_register_kinds=cmos.REGISTER_KINDS, rtc_time_registers=cmos.TIME_FIELDS,
                  rtc_march_month_starts=cmos.MARCH_MONTH_STARTS, rtc_periodic_periods=cmos.PERIODIC_PERIODS,
                  fw_cfg_directory=fw_cfg.DIRECTORY,
                  vcpu_state={backend: vcpu.switched(backend) for backend in layout.backends},
                  vcpu_dump=[item for item in vcpu.STATE if item.access is not vcpu.Access.FPU],
                  exception_names=hw.EXCEPTION_NAMES,
                  exceptions_with_error_code=hw.EXCEPTIONS_WITH_ERROR_CODE,
                  control_commands=list(control.COMMANDS), control_usages=control.COMMANDS,
                  control_share_range=control.SHARE_RANGE,
                  pool_disks=sum(len(guest.disks) for guest in config.guests),
                  test_hooks=test_hooks, config=config)


def build(config: Config, *, test_hooks: frozenset[str] = frozenset(),
          release: tuple[str, ...] = ()) -> BuildResult:
    """Build the image for `config`.  `test_hooks` enables template blocks
    that exist only for the boot tests (e.g. a deliberate hypervisor fault).
    The storage pool is read, not written (write_outputs writes it); its
    disks named in `release` ("GUEST/DISK", gone from the config) are freed."""
    storage = config.storage
    if storage is None and release:
        raise BuildError(config.source, "--release needs a [storage] pool")
    pool_plan = None
    if storage is not None:
        disks = [(guest.name, disk.name, disk.size, disk.where) for guest in config.guests for disk in guest.disks]
        pool_plan = pool.plan(storage.pool, storage.size, disks, release)
    images = tuple(load_image(guest, f"{config.source}: guest[{i}]", config.hypervisor.backend)
                   for i, guest in enumerate(config.guests))
    modes = [image.mode for image in images]
    common_count = guest_count = 0
    if "vmx" in config.hypervisor.backends:
        draft = plan(config, modes, 0, 0)
        common_count = len(vmcs.common_entries(draft, {}))
        guest_count = len(vmcs.guest_entries(draft.guests[0], images[0]))
    layout = plan(config, modes, common_count, guest_count)

    source = render_hypervisor(config, layout, test_hooks)
    assembly = assemble(source, layout.text, "hypervisor")
    labels = assembly.labels
    code = assembly.code + bytes(-len(assembly.code) % 8)
    symtab_address = layout.text + len(code)
    if labels.get("hv_symtab") != symtab_address:
        raise AssertionError("hv/hypervisor.s.j2 must end with the hv_symtab label")
    text = code + tables.symbol_table(symtab_address, labels)
    if len(text) > TEXT_BUDGET:
        raise AssertionError(f"hypervisor text is {len(text)} bytes, over its {TEXT_BUDGET} budget")

    memory = _Memory()
    memory.place(layout.text, text)
    _place_static_data(memory, config, layout, labels, images, pool_plan)
    segments = _segments(memory, layout, len(text))
    image = elf.write_elf(segments, labels["boot_entry"], (layout.text, len(assembly.code)), labels)
    isolation.check(image, layout, config.source)     # refuse an image whose guests are not isolated
    return BuildResult(config, layout, images, labels, len(assembly.code), len(text), image, pool_plan)


class _Memory:
    """Sparse physical memory: bytes placed at addresses, read back by range."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def place(self, address: int, data: bytes) -> None:
        self.chunks.append((address, bytes(data)))

    def read(self, start: int, end: int) -> bytes:
        """Bytes of [start, end) up to the last placed byte (the rest is zero)."""
        inside = [(a, d) for a, d in self.chunks if start <= a and a + len(d) <= end]
        top = max((a + len(d) for a, d in inside), default=start)
        out = bytearray(top - start)
        for address, data in inside:
            out[address - start:address - start + len(data)] = data
        return bytes(out)

    def segments(self, start: int, end: int, flags: int) -> list[elf.LoadSegment]:
        """Load segments that together zero-fill [start, end) and carry what
        was placed there; long runs of zeros between placed bytes are left out
        of the file (each segment's memory size reaches to the next one)."""
        inside = sorted((a, a + len(d)) for a, d in self.chunks if start <= a and a + len(d) <= end)
        runs: list[list[int]] = []
        for low, high in inside:
            if runs and low - runs[-1][1] < SEGMENT_GAP:
                runs[-1][1] = max(runs[-1][1], high)
            else:
                runs.append([low, high])
        if not runs or runs[0][0] > start:
            runs.insert(0, [start, start])
        bounds = [run[0] for run in runs[1:]] + [end]
        return [elf.LoadSegment(low, self.read(low, high), bound - low, flags)
                for (low, high), bound in zip(runs, bounds)]


def _place_static_data(memory: _Memory, config: Config, layout: Layout, labels: dict[str, int],
                       images: tuple[GuestImage, ...], result_pool: pool.Plan | None) -> None:
    ro, rw = layout.rodata, layout.rwdata
    for name, data in tables.exit_tables(layout, labels).items():
        memory.place(ro[name], data)
    memory.place(ro["idt"], tables.idt(labels))
    memory.place(ro["caps_sources"], vmcs.pack_caps_sources())
    memory.place(ro["msr_table"], msrs.table())
    memory.place(ro["cpuid_table"], cpuid.table())
    memory.place(rw["gdt"], tables.gdt(layout))
    memory.place(rw["tss"], tables.tss(layout))
    memory.place(rw["hv"], tables.hv_record(layout))
    for guest, guest_config, image in zip(layout.guests, config.guests, images):
        record = tables.guest_record(layout, guest, guest_config.max_restarts, image.registers,
                                     guest_config.expect_exit, guest_config.share,
                                     virtio.record_fields(virtio.disks(guest_config, result_pool)))
        memory.place(guest.record, record)
        memory.place(guest.exit_counters, bytes(EXIT_COUNTERS * 8))
        memory.place(guest.restart.record, record)
    memory.place(ro["xsave_reset"], vcpu.xsave_area_reset())
    if result_pool is not None:
        memory.place(ro["pool_header"], pool.pack(result_pool.header))
    # Every bit set: every port and every MSR access exits.
    if "vmx" in layout.backends:
        memory.place(ro["vmcs_common"], vmcs.pack(vmcs.common_entries(layout, labels)))
        for name in ("io_bitmap_a", "io_bitmap_b", "msr_bitmap"):
            memory.place(layout.vmx[name], b"\xff" * hw.PAGE_SIZE)
    if "svm" in layout.backends:
        memory.place(layout.svm["iopm"], b"\xff" * SVM_IOPM_SIZE)
        memory.place(layout.svm["msrpm"], b"\xff" * SVM_MSRPM_SIZE)
    for guest, image in zip(layout.guests, images):
        memory.place(guest.xsave_area, vcpu.xsave_area_reset())
        if guest.ept is not None:
            memory.place(guest.vmcs_init, vmcs.pack(vmcs.guest_entries(guest, image)))
            for address, table in paging.nested_tables(guest, guest.ept, paging.EPT_DIRECTORY,
                                                       paging.EPT_LEAF).items():
                memory.place(address, table)
        if guest.npt is not None:
            memory.place(guest.vmcb, svm.vmcb(layout, guest, image))
            memory.place(guest.restart.vmcb, svm.vmcb(layout, guest, image))
            for address, table in paging.nested_tables(guest, guest.npt, paging.NPT_DIRECTORY,
                                                       paging.NPT_LEAF).items():
                memory.place(address, table)
        for segment in image.segments:
            memory.place(guest.memory_base + segment.address, segment.data)
        for gpa, data in tables.guest_startup(guest, image).items():
            memory.place(guest.memory_base + gpa, data)


def _hv_mappings(layout: Layout, text_size: int) -> list[tuple[int, int, int]]:
    """What the hypervisor maps: its code executable, read-only data
    no-execute, and writable data and stacks (not their guard pages)."""
    present, writable, nx = hw.PTE_PRESENT, hw.PTE_WRITABLE, hw.PTE_NX
    page = hw.PAGE_SIZE
    mappings = [(layout.text, align_up(layout.text + text_size, page), present)]
    for name, start, size in layout.regions:
        end = align_up(start + size, page)
        if name in ("text",) or "unmapped" in name:
            continue
        if start >= layout.mapped_end:
            break
        flags = present | nx if start < layout.rwdata["gdt"] else present | writable | nx
        mappings.append((start - start % page, end, flags))
    uncached = present | writable | nx | hw.PTE_PCD | hw.PTE_PWT
    mappings.append((hw.IOAPIC_BASE, hw.IOAPIC_BASE + page, uncached))   # it routes the PIT's NMI
    if "vmx" in layout.backends:    # external-interrupt exits end with the local APIC's EOI
        mappings.append((hw.LAPIC_BASE, hw.LAPIC_BASE + page, uncached))
    # The run-time isolation check (hv/core/isolation.s.j2) walks the guests' EPT and NPT.
    mappings.append((*layout.nested_tables, present | writable | nx))
    for guest in layout.guests:
        # The MMIO decoder reads a guest's instructions and page tables; a
        # restart copies the pristine image over the guest's memory.
        mappings.append((guest.memory_base, guest.memory_base + guest.memory_size, present | writable | nx))
        mappings.append((guest.restart.image, guest.restart.image + guest.memory_size, present | nx))
    return mappings


def _segments(memory: _Memory, layout: Layout, text_size: int) -> list[elf.LoadSegment]:
    for address, table in paging.hypervisor_tables(layout.hv_tables,
                                                   _hv_mappings(layout, text_size)).items():
        memory.place(address, table)
    rodata_start = layout.rodata["idt"]
    rwdata_start = layout.rwdata["gdt"]
    tables_start = layout.hv_tables[0]
    first_guest = layout.guests[0].memory_base
    r, w, x = elf.PF_R, elf.PF_W, elf.PF_X
    segments = [
        elf.LoadSegment(layout.text, memory.read(layout.text, rodata_start), text_size, r | x),
        elf.LoadSegment(rodata_start, memory.read(rodata_start, rwdata_start),
                        rwdata_start - rodata_start, r),
        elf.LoadSegment(rwdata_start, memory.read(rwdata_start, tables_start),
                        tables_start - rwdata_start, r | w),
        elf.LoadSegment(tables_start, memory.read(tables_start, first_guest),
                        first_guest - tables_start, r),
    ]
    for guest in layout.guests:
        segments += memory.segments(guest.memory_base, guest.memory_base + guest.memory_size,
                                    r | w | x)
    for guest in layout.guests:     # filled at boot from the guest's memory (boot/multiboot.s.j2)
        segments.append(elf.LoadSegment(guest.restart.image, b"", guest.memory_size, r))
    return segments


def _report(result: BuildResult) -> str:
    layout = result.layout
    lines = [f"hvbuild report for {result.config.source}",
             f"hypervisor code: {result.code_size} bytes; with symbol table: {result.text_size} bytes",
             f"image: {len(result.elf)} bytes; machine memory needed: {layout.machine_memory >> 20} MiB",
             "", "physical memory map:"]
    for name, start, size in layout.regions:
        lines.append(f"  {start:#010x}-{start + size:#010x}  {size:>9}  {name}")
    lines += ["", "guests:"]
    for guest, image in zip(layout.guests, result.images):
        lines.append(f"  {guest.name}: {guest.memory_size >> 10} KiB at {guest.memory_base:#x}, "
                     f"{image.mode.value} mode, entry {image.entry:#x}, VPID/ASID {guest.vpid}"
                     + (f", EPTP {guest.ept.ept_pointer:#x}" if guest.ept else "")
                     + (f", nCR3 {guest.npt.pml4:#x}" if guest.npt else ""))
    if result.pool is not None:
        lines += ["", *pool_report(result.pool)]
    return "\n".join(lines) + "\n"


def pool_report(plan: pool.Plan) -> list[str]:
    """The storage pool's lines of the build report (and of hvbuild's output)."""
    header = plan.header
    used = sum(e.size for e in header.extents)
    lines = [f"storage pool {plan.path}: {header.size >> 20} MiB, "
             f"{(header.size - pool.HEADER_SIZE - used) >> 20} MiB free"
             + (" (created)" if plan.creates else "")]
    for extent in header.extents:
        how = ("new, zeroed" if extent in plan.fresh
               else "not in the config: kept until --release" if extent in plan.kept
               else f"kept, grown at run time from {plan.asked[extent.key] >> 20} MiB" if plan.grown(extent)
               else "kept")
        lines.append(f"  {extent.key}: {extent.size >> 20} MiB at byte {extent.start:#x} ({how})")
    return lines


POOL_POINTER = "hv.pool"        # beside hv.elf: the storage pool's path, for hvrun


def write_outputs(result: BuildResult, out_dir: Path, *, iso: bool = True) -> list[Path]:
    """Write hv.elf, build-report.txt, (unless `iso` is false) hv.iso and,
    with a storage pool, hv.pool (its path, for hvrun), and the pool's new
    allocation (builder/pool.py) once they are ready, before they replace
    the old outputs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hvbuild-", dir=out_dir))
    try:
        (staging / "hv.elf").write_bytes(result.elf)
        (staging / "build-report.txt").write_text(result.report())
        if iso:
            make_iso(staging / "hv.elf", staging / "hv.iso")
        if result.pool is not None:
            (staging / POOL_POINTER).write_text(f"{result.pool.path}\n")
            pool.commit(result.pool)
        else:
            (out_dir / POOL_POINTER).unlink(missing_ok=True)     # a pool the config no longer has
        written = []
        for item in sorted(staging.iterdir()):
            target = out_dir / item.name
            os.replace(item, target)
            written.append(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_iso(kernel: Path, iso: Path) -> None:
    """A small GRUB rescue ISO that boots `kernel` with multiboot at once."""
    tool = shutil.which("grub-mkrescue")
    if tool is None:
        raise BuildError("grub-mkrescue", "not found: install grub-pc-bin, xorriso and mtools "
                         "(`make setup`), or pass --no-iso")
    with tempfile.TemporaryDirectory(prefix="hvbuild-iso-") as tree:
        boot = Path(tree) / "boot"
        (boot / "grub").mkdir(parents=True)
        shutil.copy(kernel, boot / "hv.elf")
        shutil.copy(GRUB_CFG, boot / "grub" / "grub.cfg")
        # Reproducible: xorriso (the options after "--") stamps every file
        # and the volume UUID with one fixed date instead of the clock.
        environment = {**os.environ, "SOURCE_DATE_EPOCH": str(ISO_EPOCH)}
        done = subprocess.run(
            [tool, "--install-modules=multiboot normal iso9660 biosdisk", "--fonts=",
             "--locales=", "--themes=", "-o", str(iso), tree, "--",
             "-volume_date", "all_file_dates", f"={ISO_EPOCH}",
             "-volume_date", "uuid", ISO_UUID_DATE],
            capture_output=True, text=True, timeout=ISO_TIMEOUT_S, env=environment, check=False)
        if done.returncode != 0 or not iso.is_file():
            detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError("grub-mkrescue", f"failed: {detail}")
