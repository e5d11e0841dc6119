"""Stage 2: turn each guest's image spec into bytes at guest-physical addresses.

A guest image is a list of segments (guest-physical address, bytes), an
entry point and a start mode.  Builtin demo guests are rendered from
`guests/` and assembled; ELF files are read with pyelftools (each PT_LOAD
segment at its physical address, the entry from the header); flat binaries
go to their configured load address.
"""

from __future__ import annotations

from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from builder import boot_tables, hw, linux, multiboot, virtio
from builder.assemble import assemble
from builder.config import (
    TIME_SLICE_MIN,
    BuiltinImage,
    ElfImage,
    FlatImage,
    GuestConfig,
    LinuxImage,
    MultibootImage,
    StartMode,
)
from builder.errors import BuildError
from builder.layout import startup_layout
from builder.render import render

BUILTIN_LOAD_ADDRESS = 0x1000       # page 0 stays empty, so null pointers fault in the guest
HEARTBEAT_DELAY = 300_000           # busy-wait iterations between heartbeats: several time slices
# Hypercalls: VMCALL or VMMCALL with the number in EAX (see README, "The guest's view").
HYPERCALLS = {"EXIT": 0, "YIELD": 1}
# The hypercall instruction of an image built for one backend; an image with
# both ("auto") has none: its guests ask CPUID (guests/lib.s.j2 guest_exit).
HYPERCALL_INSTRUCTIONS = {"vmx": "vmcall", "svm": "vmmcall"}
# What the prober guest tries (guests/prober.s.j2)
PROBE_PORT = 0x378                  # the first parallel port: no device emulated
PROBE_MSR_VALUE = 0x5EED1000
GUEST_CODE_SELECTOR = 0x08          # the start-up GDT's 32-bit code segment
INTERRUPT_GATE_32 = 0x8E00          # present, DPL 0, 32-bit interrupt gate (SDM Vol. 3A 6.11)
IDT_GATE_32_SIZE = 8
PROBE_IDT_VECTORS = 32
REAL_MODE_LIMIT = 0x100000

# The benchmark guests (guests/bench_*.s.j2), run by `make bench` (docs/BENCHMARKS.md)
BENCH_EXIT_ITERATIONS = 1000        # exits per measured loop
BENCH_EXIT_REPEATS = 5              # measured loops per kind of exit; bench/ keeps the least
BENCH_HYPERCALL_NOOP = len(HYPERCALLS)  # no such hypercall: answered with -1 at once
BENCH_IDLE_PORT = 0x80              # the POST-code port: no device emulated, reads all ones
# Ticks between two TSC reads of the spinner: a plain loop takes 9, the one
# after a gap about 20; a switch out and back, even to the same guest, 60 or more.
BENCH_GAP_THRESHOLD = 40
BENCH_WINDOW_SLICES = 32            # time slices measured for fairness and the world switch
BENCH_EXIT_KINDS = 4                # exits the probe measures (guests/bench_probe.s.j2), each
                                    #   repeat on a slice of its own
BENCH_PROBE_TAIL_SLICES = 2         # slices spun after the window, so that every guest's window
                                    #   sees only spinners
# The peers spin through the probe's tail and its exit repeats (a slice each), and 2 more.
BENCH_PEER_TAIL_SLICES = BENCH_PROBE_TAIL_SLICES + BENCH_EXIT_KINDS * BENCH_EXIT_REPEATS + 2
# Compute victims beside an exit storm (guests/bench_victim.s.j2,
# guests/bench_storm.s.j2): the victims measure whole rounds, identical in
# Bochs, so a few are enough.  The storm takes a gap in its TSC reads above
# half the shortest time slice for another guest's slice (a CPUID round trip
# takes about 80 ticks) and storms through the victims' start-up slice,
# their window and one more slice; the victims spin two slices past their
# window, so that the storm still sees them in its last slice.
BENCH_VICTIM_ROUNDS = 4
BENCH_VICTIM_TAIL_SLICES = 2
BENCH_STORM_GAP_THRESHOLD = TIME_SLICE_MIN // 2
BENCH_STORM_SLICES = BENCH_VICTIM_ROUNDS + 2
# CPU shares (guests/bench_share.s.j2): a guest's heartbeats are its window
# in units of half the default time slice, so that a config can make it
# whole rounds of the scheduler.
BENCH_SHARE_UNIT = 100_000
BENCH_KERNEL_BUFFER = 0x10000       # guest-physical; the kernel guest needs memory past its end
BENCH_KERNEL_BYTES = 2 * 1024 * 1024
BENCH_KERNEL_FILL_STEP = 0x9E3779B9  # the fill pattern: 2^32 / golden ratio per word
BENCH_KERNEL_STRIDE = 4096 + 64     # a new page and cache line at every step
BENCH_KERNEL_PASS_SHIFT = 4         # each pass starts one dword further
BENCH_KERNEL_PASSES = 1024


def bench_kernel_constants(buffer: int) -> dict[str, int]:
    """The compute kernel of guests/bench_compute.s.j2, on a buffer at `buffer`."""
    span = BENCH_KERNEL_PASSES * BENCH_KERNEL_PASS_SHIFT
    return {"BENCH_KERNEL_BUFFER": buffer, "BENCH_KERNEL_WORDS": BENCH_KERNEL_BYTES // 4,
            "BENCH_KERNEL_FILL_STEP": BENCH_KERNEL_FILL_STEP, "BENCH_KERNEL_STRIDE": BENCH_KERNEL_STRIDE,
            "BENCH_KERNEL_STEPS": (BENCH_KERNEL_BYTES - span) // BENCH_KERNEL_STRIDE,
            "BENCH_KERNEL_PASS_SHIFT": BENCH_KERNEL_PASS_SHIFT, "BENCH_KERNEL_PASS_END": span}


def bench_constants() -> dict[str, int]:
    """What the benchmark guests (guests/bench_*.s.j2) need."""
    return {"BENCH_EXIT_ITERATIONS": BENCH_EXIT_ITERATIONS, "BENCH_EXIT_REPEATS": BENCH_EXIT_REPEATS,
            "BENCH_HYPERCALL_NOOP": BENCH_HYPERCALL_NOOP, "BENCH_IDLE_PORT": BENCH_IDLE_PORT,
            "BENCH_GAP_THRESHOLD": BENCH_GAP_THRESHOLD, "BENCH_WINDOW_SLICES": BENCH_WINDOW_SLICES,
            "BENCH_PROBE_TAIL_SLICES": BENCH_PROBE_TAIL_SLICES,
            "BENCH_PEER_TAIL_SLICES": BENCH_PEER_TAIL_SLICES,
            "BENCH_VICTIM_ROUNDS": BENCH_VICTIM_ROUNDS,
            "BENCH_VICTIM_TAIL_SLICES": BENCH_VICTIM_TAIL_SLICES,
            "BENCH_STORM_GAP_THRESHOLD": BENCH_STORM_GAP_THRESHOLD,
            "BENCH_STORM_SLICES": BENCH_STORM_SLICES, "BENCH_SHARE_UNIT": BENCH_SHARE_UNIT,
            **bench_kernel_constants(BENCH_KERNEL_BUFFER)}


# The witness guest (guests/witness.s.j2), run beside hostile guests
# (tests/boot/test_hostile.py): it fills its memory below its stack with a
# pattern, plants values in CPU state the hypervisor switches per guest, and
# at every heartbeat checksums the memory and checks the state.
WITNESS_STACK_SIZE = 0x1000         # below its GDT page; neither is checksummed
WITNESS_LCG_MULTIPLIER = 1664525    # x -> a*x + c mod 2^32 (Numerical Recipes' LCG)
WITNESS_LCG_INCREMENT = 1013904223
WITNESS_PATTERN_SEED = 0x5EED0001   # the pattern, a dword at a time
WITNESS_STATE_SEED = 0x5EED0002     # the planted XMM, DR, SYSENTER_ESP and TSC_AUX values
WITNESS_PAT = 0x0001050406070400    # every byte a valid memory type; not the power-on PAT
WITNESS_FNV_OFFSET_BASIS = 0x811C9DC5   # the checksum: 32-bit FNV-1a, a dword at a time
WITNESS_FNV_PRIME = 0x01000193
# The planted state, in the order of the witness's state buffer: (name, dwords).
# The MSRs take two dwords (EDX:EAX); all but PAT are LCG values, high halves zero.
WITNESS_XMM_DWORDS, WITNESS_DR_DWORDS, WITNESS_MSR_DWORDS = 4, 1, 2
WITNESS_STATE = (*((f"xmm{n}", WITNESS_XMM_DWORDS) for n in range(8)),
                 *((f"dr{n}", WITNESS_DR_DWORDS) for n in range(4)),
                 *((name, WITNESS_MSR_DWORDS) for name in ("sysenter_esp", "tsc_aux", "pat")))


def witness_constants(stack_top: int) -> dict[str, int]:
    """What guests/witness.s.j2 needs, for a witness whose stack ends at `stack_top`."""
    offsets, offset = {}, 0
    for name, dwords in WITNESS_STATE:
        offsets[f"WITNESS_OFFSET_{name.upper()}"] = offset
        offset += 4 * dwords
    return {"WITNESS_PATTERN_END": stack_top - WITNESS_STACK_SIZE,
            "WITNESS_LCG_MULTIPLIER": WITNESS_LCG_MULTIPLIER,
            "WITNESS_LCG_INCREMENT": WITNESS_LCG_INCREMENT,
            "WITNESS_PATTERN_SEED": WITNESS_PATTERN_SEED, "WITNESS_STATE_SEED": WITNESS_STATE_SEED,
            "WITNESS_PAT_LOW": WITNESS_PAT & 0xFFFFFFFF, "WITNESS_PAT_HIGH": WITNESS_PAT >> 32,
            "WITNESS_FNV_OFFSET_BASIS": WITNESS_FNV_OFFSET_BASIS, "WITNESS_FNV_PRIME": WITNESS_FNV_PRIME,
            "WITNESS_STATE_BYTES": offset, "WITNESS_XMM_DWORDS": WITNESS_XMM_DWORDS,
            "WITNESS_DR_DWORDS": WITNESS_DR_DWORDS, "WITNESS_MSR_DWORDS": WITNESS_MSR_DWORDS,
            "WITNESS_RANDOM_DWORDS": offsets["WITNESS_OFFSET_SYSENTER_ESP"] // 4, **offsets}


# The secret the heartbeat guest plants and the scanner looks for.  The
# scanner's code holds it only masked, so its own memory never contains it.
SECRET = bytes.fromhex("5ec7e75ec7e75ec7c0ffee11d00dfeed")
SECRET_MASK = bytes.fromhex("a5a5a5a55a5a5a5a3c3c3c3cc3c3c3c3")


@dataclass(frozen=True)
class Segment:
    address: int        # guest-physical
    data: bytes


@dataclass(frozen=True)
class GuestImage:
    segments: tuple[Segment, ...]
    entry: int
    mode: StartMode
    registers: tuple[tuple[str, int], ...] = ()    # general registers at the first instruction


def secret_words() -> dict[str, int]:
    """The secret as four dwords, plain and masked, for the demo templates."""
    words = {}
    for i in range(4):
        plain = int.from_bytes(SECRET[4 * i:4 * i + 4], "little")
        mask = int.from_bytes(SECRET_MASK[4 * i:4 * i + 4], "little")
        words[f"SECRET_{i}"] = plain
        words[f"SECRET_MASK_{i}"] = mask
        words[f"SECRET_MASKED_{i}"] = plain ^ mask
    return words


def load(guest: GuestConfig, where: str, backend: str) -> GuestImage:
    """Load `guest`'s image and check that it fits the guest's memory.
    `backend` is the config's ("auto", "vmx" or "svm"): builtin guests
    built for one backend may use its hypercall instruction directly."""
    spec = guest.image
    if isinstance(spec, BuiltinImage):
        where = f"{where}.builtin"
        image = _builtin(guest, spec, where, backend)
    elif isinstance(spec, ElfImage):
        where = f"{where}.elf"
        image = _elf(spec, guest.mode, where)
    elif isinstance(spec, MultibootImage):
        where = f"{where}.multiboot"
        image = _multiboot(spec, guest, where)
    elif isinstance(spec, LinuxImage):
        where = f"{where}.linux"
        image = _linux(spec, guest, where)
    else:
        where = f"{where}.flat"
        image = _flat(spec, guest.mode, where)
    check_fits(image, guest, where)
    return image


def usable_top(mode: StartMode, memory: int) -> int:
    """End of the guest memory an image may use: its start-up tables follow."""
    return startup_layout(mode, memory).usable_top


def _builtin(guest: GuestConfig, spec: BuiltinImage, where: str, backend: str) -> GuestImage:
    top = usable_top(StartMode.PROTECTED, guest.memory)
    share_window = spec.heartbeats * BENCH_SHARE_UNIT
    if spec.program == "bench_share" and not 0 < share_window < 1 << 31:
        raise BuildError(f"{where}.heartbeats", f"bench_share's window is heartbeats x {BENCH_SHARE_UNIT} "
                         "TSC ticks, at least one and under 2^31")
    constants = {**hw.asm_constants(), **secret_words(),
                 **{f"HYPERCALL_{name}": number for name, number in HYPERCALLS.items()},
                 "GUEST_MEMORY_SIZE": guest.memory, "GUEST_STACK_TOP": top,
                 "SECRET_ADDRESS": guest.memory // 2, "HEARTBEATS": spec.heartbeats,
                 "HEARTBEAT_DELAY": HEARTBEAT_DELAY, "PROBE_PORT": PROBE_PORT,
                 "PROBE_MSR": hw.IA32_PERF_STATUS, "PROBE_MSR_VALUE": PROBE_MSR_VALUE,
                 "PROBE_CODE_SELECTOR": GUEST_CODE_SELECTOR,
                 "PROBE_INTERRUPT_GATE": INTERRUPT_GATE_32,
                 "PROBE_GATE_UD": IDT_GATE_32_SIZE * hw.VECTOR_UD,
                 "PROBE_GATE_GP": IDT_GATE_32_SIZE * hw.VECTOR_GP,
                 "PROBE_IDT_SIZE": IDT_GATE_32_SIZE * PROBE_IDT_VECTORS,
                 "PROBE_IDT_LIMIT": IDT_GATE_32_SIZE * PROBE_IDT_VECTORS - 1,
                 "OUT_OF_BOUNDS_ADDRESS": guest.memory, **bench_constants(),
                 "BENCH_SHARE_WINDOW": share_window,
                 "VIRTIO_WINDOWS_BASE": virtio.BASE, "VIRTIO_BLK_DATA_MAX": virtio.BLK_DATA_MAX,
                 "DISK_PATTERN_SEED": sum(guest.name.encode()) & 0xFF,
                 **witness_constants(top)}
    source = render(f"guests/{spec.program}.s.j2", constants, name=guest.name,
                    hypercall=HYPERCALL_INSTRUCTIONS.get(backend))
    code = assemble(source, BUILTIN_LOAD_ADDRESS, f"{where} ({spec.program})").code
    return GuestImage((Segment(BUILTIN_LOAD_ADDRESS, code),), BUILTIN_LOAD_ADDRESS,
                      StartMode.PROTECTED)


def _elf(spec: ElfImage, mode: StartMode | None, where: str) -> GuestImage:
    try:
        with open(spec.path, "rb") as stream:
            elf = ELFFile(stream)
            if elf["e_machine"] not in ("EM_386", "EM_X86_64"):
                raise BuildError(where, f"{spec.path.name}: machine {elf['e_machine']} is not x86")
            segments = tuple(
                Segment(segment["p_paddr"],
                        segment.data() + bytes(segment["p_memsz"] - segment["p_filesz"]))
                for segment in elf.iter_segments()
                if segment["p_type"] == "PT_LOAD" and segment["p_memsz"] > 0)
            entry = elf["e_entry"]
            default_mode = StartMode.LONG if elf.elfclass == 64 else StartMode.PROTECTED
    except ELFError as error:
        raise BuildError(where, f"{spec.path.name}: not a valid ELF file ({error})") from None
    except OSError as error:
        raise BuildError(where, f"{spec.path.name}: {error.strerror}") from None
    if not segments:
        raise BuildError(where, f"{spec.path.name}: no PT_LOAD segment to load")
    return GuestImage(segments, entry, mode or default_mode)


def _multiboot(spec: MultibootImage, guest: GuestConfig, where: str) -> GuestImage:
    """The kernel's ELF segments, its modules, the multiboot information and
    the ACPI and MP tables (builder/boot_tables.py); EAX and EBX as a
    multiboot loader leaves them (builder/multiboot.py)."""
    try:
        data = spec.path.read_bytes()
    except OSError as error:
        raise BuildError(where, f"{spec.path.name}: {error.strerror}") from None
    multiboot.header_flags(data, where, spec.path.name)
    kernel = _elf(ElfImage(spec.path), StartMode.PROTECTED, where)
    check_fits(kernel, guest, where)
    modules = []
    for path, name in zip(spec.modules, spec.module_names):
        try:
            modules.append((name, path.read_bytes()))
        except OSError as error:
            raise BuildError(where, f"module {name}: {error.strerror}") from None
    tables = boot_tables.place(guest.memory, guest.name, where)
    image_end = max(s.address + len(s.data) for s in kernel.segments)
    placed = multiboot.place(image_end, guest.memory, usable_top(StartMode.PROTECTED, guest.memory),
                             spec.cmdline, modules, where)
    loaded = kernel.segments + tuple(Segment(address, data) for address, data in placed.segments)
    boot_tables.check_clear([(s.address, s.address + len(s.data)) for s in loaded], tables, where)
    segments = loaded + (Segment(tables.address, tables.data),)
    return GuestImage(segments, kernel.entry, StartMode.PROTECTED,
                      (("rax", hw.MULTIBOOT_BOOTLOADER_MAGIC), ("rbx", placed.info)))


def _linux(spec: LinuxImage, guest: GuestConfig, where: str) -> GuestImage:
    """The kernel, its command line, initrd and zero page (builder/linux.py)
    and the ACPI and MP tables; RSI = the zero page, as the 64-bit boot
    protocol starts a kernel."""
    try:
        data = spec.path.read_bytes()
    except OSError as error:
        raise BuildError(where, f"{spec.path.name}: {error.strerror}") from None
    header = linux.read_header(data, where, spec.path.name)
    initrd = None
    if spec.initrd is not None:
        try:
            initrd = spec.initrd.read_bytes()
        except OSError as error:
            raise BuildError(f"{where}.initrd", f"{spec.initrd.name}: {error.strerror}") from None
    tables = boot_tables.place(guest.memory, guest.name, where)
    cmdline = " ".join(part for part in (spec.cmdline, virtio.cmdline(guest)) if part)
    placed = linux.place(data, header, guest.memory, usable_top(StartMode.LONG, guest.memory),
                         cmdline, initrd, tables.rsdp, where, spec.path.name)
    loaded = tuple(Segment(address, data) for address, data in placed.segments)
    boot_tables.check_clear([(s.address, s.address + len(s.data)) for s in loaded], tables, where)
    return GuestImage(loaded + (Segment(tables.address, tables.data),), placed.entry, StartMode.LONG,
                      (("rsi", placed.zero_page),))


def _flat(spec: FlatImage, mode: StartMode | None, where: str) -> GuestImage:
    assert mode is not None  # config requires it for flat images
    data = spec.path.read_bytes()
    if not data:
        raise BuildError(where, f"{spec.path.name}: file is empty")
    return GuestImage((Segment(spec.load_address, data),), spec.entry, mode)


def check_fits(image: GuestImage, guest: GuestConfig, where: str) -> None:
    top = usable_top(image.mode, guest.memory)
    for segment in image.segments:
        end = segment.address + len(segment.data)
        if end > top:
            what = "its memory" if top == guest.memory else "its memory below the start-up tables"
            raise BuildError(where, f"segment [{segment.address:#x}, {end:#x}) lies outside "
                             f"{what} [0, {top:#x})")
    if not any(s.address <= image.entry < s.address + len(s.data) for s in image.segments):
        raise BuildError(where, f"entry point {image.entry:#x} is not inside any loaded segment")
    if image.mode is StartMode.REAL and image.entry >= REAL_MODE_LIMIT:
        raise BuildError(where, f"entry point {image.entry:#x} is beyond real mode's 1 MiB")
