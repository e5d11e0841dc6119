"""Stage 1: read a TOML config into a validated, frozen model.

Every rule a config must follow is checked here, so that the later stages
can trust the model.  A broken config raises `BuildError` naming the file
and the key.
"""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import hw
from builder.errors import BuildError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

GUEST_MEMORY_MIN = 64 * KIB
GUEST_MEMORY_MAX = 1 * GIB
GUEST_MEMORY_GRANULE = 4 * KIB          # one EPT page
MAX_GUESTS = 32
TIME_SLICE_MIN = 10_000
TIME_SLICE_MAX = (1 << 32) - 1          # the VMX-preemption timer is a 32-bit field
DEFAULT_TIME_SLICE = 200_000
FAULT_POLICIES = ("stop", "restart")    # what happens to a guest the hypervisor stops
DEFAULT_MAX_RESTARTS = 10
# CPU shares: a guest's weight in the scheduler (hv/core/sched.s.j2); each
# runnable guest gets CPU time in proportion to its share.  The bounds are
# cgroup v2's cpu.weight.
SHARE_MIN, SHARE_MAX, DEFAULT_SHARE = 1, 10_000, 1
MAX_RESTARTS_LIMIT = 1_000_000
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,14}")

BUILTIN_GUESTS = ("heartbeat", "scanner", "prober",
                  "bench_probe", "bench_peer", "bench_kernel",   # bench_*: `make bench`
                  "bench_victim", "bench_storm", "bench_share", "witness",
                  "disk_tester")                                  # disk_tester: its first disk
# Builtins that execute their backend's hypercall instruction (VMCALL or
# VMMCALL) directly: they need an image built for one backend.
ONE_BACKEND_BUILTINS = ("bench_probe",)
DEFAULT_CONFIG = Path(__file__).with_name("default.toml")


class StartMode(enum.Enum):
    """The CPU mode a guest's first instruction runs in."""

    REAL = "real"           # 16-bit real mode, CS:IP from the entry address
    PROTECTED = "protected"  # 32-bit flat protected mode, paging off
    LONG = "long"           # 64-bit mode, identity-mapped by build-time page tables


@dataclass(frozen=True)
class BuiltinImage:
    """A demo guest rendered from `guests/<program>.s.j2`."""

    program: str
    heartbeats: int


@dataclass(frozen=True)
class ElfImage:
    path: Path


@dataclass(frozen=True)
class FlatImage:
    path: Path
    load_address: int
    entry: int


@dataclass(frozen=True)
class MultibootImage:
    """An ELF kernel with a multiboot v1 header, started as a multiboot
    boot loader starts it (builder/multiboot.py)."""

    path: Path
    cmdline: str
    modules: tuple[Path, ...]
    module_names: tuple[str, ...]   # as the config gives them: each module's string


@dataclass(frozen=True)
class LinuxImage:
    """A Linux bzImage, started by the x86 boot protocol's 64-bit entry
    (builder/linux.py), with its command line as given and an initrd."""

    path: Path
    cmdline: str
    initrd: Path | None


CMDLINE_MAX = 4000                      # bytes; the boot information page holds it
# Storage (builder/pool.py): disks are whole MiB of one pool file.
DISK_SIZE_MIN = MIB
DISKS_PER_GUEST_MAX = 4
POOL_SIZE_MIN = 2 * MIB                 # its header's MiB and one disk
# The hypervisor's ATA driver addresses the pool's disk with 28-bit LBAs
# (hv/drivers/ata.s.j2): 2^28 sectors, 128 GiB.
POOL_SIZE_MAX = hw.ATA_LBA28_LIMIT * hw.ATA_SECTOR_SIZE
DISK_SIZE_MAX = POOL_SIZE_MAX - MIB


@dataclass(frozen=True)
class DiskConfig:
    name: str                   # NAME_PATTERN, unique in its guest
    size: int                   # bytes, whole MiB
    where: str                  # its config key, for messages


@dataclass(frozen=True)
class StorageConfig:
    pool: Path                  # the pool file (builder/pool.py)
    size: int | None            # the pool's size when hvbuild creates (or grows) it

GuestImageSpec = BuiltinImage | ElfImage | FlatImage | MultibootImage | LinuxImage


@dataclass(frozen=True)
class GuestConfig:
    name: str
    memory: int
    image: GuestImageSpec
    mode: StartMode | None      # None: taken from the image (ELF class, builtin)
    on_fault: str = "stop"      # one of FAULT_POLICIES
    max_restarts: int = 0       # restarts allowed with on_fault = "restart"
    expect_exit: int | None = None  # the exit code hvrun's verdict expects, if any
    share: int = DEFAULT_SHARE  # its weight for CPU time, SHARE_MIN-SHARE_MAX
    disks: tuple[DiskConfig, ...] = ()   # extents of the storage pool


BACKENDS = ("vmx", "svm")       # Intel VT-x, AMD-V


@dataclass(frozen=True)
class HypervisorConfig:
    time_slice: int             # TSC cycles per slice
    console: str
    backend: str                # "auto" or one of BACKENDS

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends built into the image; at boot the first the CPU has runs."""
        return BACKENDS if self.backend == "auto" else (self.backend,)


@dataclass(frozen=True)
class Config:
    source: str                 # file name for messages
    hypervisor: HypervisorConfig
    guests: tuple[GuestConfig, ...]
    storage: StorageConfig | None = None


def load(path: Path | None = None) -> Config:
    """Read and validate a config file; `None` reads the embedded default."""
    path = path or DEFAULT_CONFIG
    label = path.name if path == DEFAULT_CONFIG else str(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise BuildError(str(path), f"cannot read config: {error.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise BuildError(label, f"not valid TOML: {error}") from None
    return parse(raw, label, path.parent)


def parse(raw: dict[str, Any], label: str, base_dir: Path) -> Config:
    _check_keys(raw, {"hypervisor", "guest", "storage"}, label)
    hv_raw = raw.get("hypervisor", {})
    _check_type(hv_raw, dict, f"{label}: hypervisor", "a table")
    hypervisor = _parse_hypervisor(hv_raw, f"{label}: hypervisor")
    guests_raw = raw.get("guest")
    if guests_raw is None:
        raise BuildError(f"{label}: guest", "no guests: add at least one [[guest]] table")
    _check_type(guests_raw, list, f"{label}: guest", "an array of tables ([[guest]])")
    if len(guests_raw) > MAX_GUESTS:
        raise BuildError(f"{label}: guest", f"{len(guests_raw)} guests; at most {MAX_GUESTS}")
    guests = []
    for index, guest_raw in enumerate(guests_raw):
        where = f"{label}: guest[{index}]"
        _check_type(guest_raw, dict, where, "a table")
        guests.append(_parse_guest(guest_raw, where, base_dir))
    seen: set[str] = set()
    for index, guest in enumerate(guests):
        if guest.name in seen:
            raise BuildError(f"{label}: guest[{index}].name", f"duplicate guest name {guest.name!r}")
        seen.add(guest.name)
        if (hypervisor.backend == "auto" and isinstance(guest.image, BuiltinImage)
                and guest.image.program in ONE_BACKEND_BUILTINS):
            raise BuildError(f"{label}: guest[{index}].builtin",
                             f"{guest.image.program!r} times its backend's own hypercall instruction "
                             "(VMCALL or VMMCALL): set [hypervisor] backend to "
                             + " or ".join(repr(b) for b in BACKENDS))
    storage = None
    if "storage" in raw:
        _check_type(raw["storage"], dict, f"{label}: storage", "a table")
        storage = _parse_storage(raw["storage"], f"{label}: storage", base_dir)
    for index, guest in enumerate(guests):
        if guest.disks and storage is None:
            raise BuildError(f"{label}: guest[{index}].disks", "disks need a pool: add [storage] pool = \"FILE\"")
    return Config(label, hypervisor, tuple(guests), storage)


def _parse_storage(raw: dict[str, Any], where: str, base_dir: Path) -> StorageConfig:
    _check_keys(raw, {"pool", "size"}, where)
    if "pool" not in raw:
        raise BuildError(f"{where}.pool", "missing: the pool file's name")
    _check_type(raw["pool"], str, f"{where}.pool", "a string")
    size = None
    if "size" in raw:
        size = _parse_size(raw["size"], f"{where}.size", POOL_SIZE_MIN, POOL_SIZE_MAX, MIB)
    return StorageConfig((base_dir / raw["pool"]).resolve(), size)


def _parse_name(name: Any, where: str) -> str:
    """A guest's or a disk's name: NAME_PATTERN."""
    _check_type(name, str, where, "a string")
    if not NAME_PATTERN.fullmatch(name):
        raise BuildError(where, f"{name!r} must be 1-15 characters of a-z, 0-9, '_', '-', "
                         "starting with a letter")
    return name


def _parse_disks(raw: Any, where: str) -> tuple[DiskConfig, ...]:
    _check_type(raw, list, where, "an array of tables ({ name = \"root\", size = \"64M\" })")
    if len(raw) > DISKS_PER_GUEST_MAX:
        raise BuildError(where, f"{len(raw)} disks; at most {DISKS_PER_GUEST_MAX} per guest")
    disks: list[DiskConfig] = []
    for index, disk in enumerate(raw):
        key = f"{where}[{index}]"
        _check_type(disk, dict, key, "a table ({ name = \"root\", size = \"64M\" })")
        _check_keys(disk, {"name", "size"}, key)
        for needed in ("name", "size"):
            if needed not in disk:
                raise BuildError(f"{key}.{needed}", "missing")
        name = _parse_name(disk["name"], f"{key}.name")
        if any(other.name == name for other in disks):
            raise BuildError(f"{key}.name", f"duplicate disk name {name!r}")
        size = _parse_size(disk["size"], f"{key}.size", DISK_SIZE_MIN, DISK_SIZE_MAX, MIB)
        disks.append(DiskConfig(name, size, f"{key}.size"))
    return tuple(disks)


def _parse_hypervisor(raw: dict[str, Any], where: str) -> HypervisorConfig:
    _check_keys(raw, {"time_slice", "console", "backend"}, where)
    time_slice = raw.get("time_slice", DEFAULT_TIME_SLICE)
    _check_int(time_slice, f"{where}.time_slice", TIME_SLICE_MIN, TIME_SLICE_MAX)
    console = raw.get("console", "com1")
    if console != "com1":
        raise BuildError(f"{where}.console", f"unknown console {console!r}; supported: 'com1'")
    backend = raw.get("backend", "auto")
    if backend not in ("auto", *BACKENDS):
        raise BuildError(f"{where}.backend", f"unknown backend {backend!r}; choose 'auto', "
                         + ", ".join(repr(b) for b in BACKENDS))
    return HypervisorConfig(time_slice, console, backend)


def _parse_guest(raw: dict[str, Any], where: str, base_dir: Path) -> GuestConfig:
    _check_keys(raw, {"name", "memory", "builtin", "elf", "flat", "multiboot", "linux", "load_address",
                      "entry", "mode", "heartbeats", "on_fault", "max_restarts", "cmdline",
                      "modules", "initrd", "expect_exit", "share", "disks"}, where)
    if "name" not in raw:
        raise BuildError(f"{where}.name", "missing: every guest needs a name")
    name = _parse_name(raw["name"], f"{where}.name")
    memory = _parse_size(raw.get("memory", "1M"), f"{where}.memory")
    mode = None
    if "mode" in raw:
        values = [m.value for m in StartMode]
        if raw["mode"] not in values:
            raise BuildError(f"{where}.mode", f"{raw['mode']!r} is not one of {values}")
        mode = StartMode(raw["mode"])
    image = _parse_image(raw, where, base_dir, mode)
    on_fault = raw.get("on_fault", "stop")
    if on_fault not in FAULT_POLICIES:
        raise BuildError(f"{where}.on_fault", f"{on_fault!r} is not one of {list(FAULT_POLICIES)}")
    max_restarts = 0
    if on_fault == "restart":
        max_restarts = raw.get("max_restarts", DEFAULT_MAX_RESTARTS)
        _check_int(max_restarts, f"{where}.max_restarts", 1, MAX_RESTARTS_LIMIT)
    elif "max_restarts" in raw:
        raise BuildError(f"{where}.max_restarts", "only valid with on_fault = \"restart\"")
    expect_exit = raw.get("expect_exit")
    if expect_exit is not None:
        _check_int(expect_exit, f"{where}.expect_exit", 0, (1 << 63) - 1)
    share = raw.get("share", DEFAULT_SHARE)
    _check_int(share, f"{where}.share", SHARE_MIN, SHARE_MAX)
    disks = _parse_disks(raw.get("disks", []), f"{where}.disks")
    return GuestConfig(name, memory, image, mode, on_fault, max_restarts, expect_exit, share, disks)


def _parse_image(raw: dict[str, Any], where: str, base_dir: Path,
                 mode: StartMode | None) -> GuestImageSpec:
    kinds = [key for key in ("builtin", "elf", "flat", "multiboot", "linux") if key in raw]
    if len(kinds) != 1:
        raise BuildError(where, "give exactly one of 'builtin', 'elf', 'flat', 'multiboot' or 'linux' "
                         "as the guest's image")
    kind = kinds[0]
    value = raw[kind]
    _check_type(value, str, f"{where}.{kind}", "a string")
    extra_of = {"heartbeats": ("builtin",), "load_address": ("flat",), "entry": ("flat",),
                "cmdline": ("multiboot", "linux"), "modules": ("multiboot",), "initrd": ("linux",)}
    for key, owners in extra_of.items():
        if key in raw and kind not in owners:
            raise BuildError(f"{where}.{key}", f"only valid for a guest with {' or '.join(owners)} image")
    if kind == "builtin":
        if value not in BUILTIN_GUESTS:
            raise BuildError(f"{where}.builtin", f"unknown builtin guest {value!r}; "
                             f"choose one of {list(BUILTIN_GUESTS)}")
        if mode not in (None, StartMode.PROTECTED):
            raise BuildError(f"{where}.mode", "builtin guests start in 'protected' mode")
        heartbeats = raw.get("heartbeats", 8)
        _check_int(heartbeats, f"{where}.heartbeats", 0, 1_000_000)
        return BuiltinImage(value, heartbeats)
    path = (base_dir / value).resolve()
    if not path.is_file():
        raise BuildError(f"{where}.{kind}", f"no such file: {value}")
    if kind == "elf":
        return ElfImage(path)
    if kind == "multiboot":
        return _parse_multiboot(raw, path, where, base_dir, mode)
    if kind == "linux":
        return _parse_linux(raw, path, where, base_dir, mode)
    if mode is None:
        raise BuildError(f"{where}.mode", "missing: a flat image needs a start mode")
    if "load_address" not in raw:
        raise BuildError(f"{where}.load_address", "missing: a flat image needs a load address")
    load_address = raw["load_address"]
    _check_int(load_address, f"{where}.load_address", 0, GUEST_MEMORY_MAX)
    entry = raw.get("entry", load_address)
    _check_int(entry, f"{where}.entry", 0, GUEST_MEMORY_MAX)
    return FlatImage(path, load_address, entry)


def _parse_cmdline(raw: dict[str, Any], where: str, limit: int | None = None) -> str:
    """A kernel's command line: a string without NUL, of at most `limit` bytes."""
    cmdline = raw.get("cmdline", "")
    _check_type(cmdline, str, f"{where}.cmdline", "a string")
    if "\0" in cmdline or (limit is not None and len(cmdline.encode()) > limit):
        bound = f"at most {limit} bytes, " if limit is not None else ""
        raise BuildError(f"{where}.cmdline", f"must be {bound}without NUL")
    return cmdline


def _parse_multiboot(raw: dict[str, Any], path: Path, where: str, base_dir: Path,
                     mode: StartMode | None) -> MultibootImage:
    if mode not in (None, StartMode.PROTECTED):
        raise BuildError(f"{where}.mode", "a multiboot kernel starts in 'protected' mode")
    cmdline = _parse_cmdline(raw, where, CMDLINE_MAX)
    names = raw.get("modules", [])
    _check_type(names, list, f"{where}.modules", "an array of file names")
    modules = []
    for index, name in enumerate(names):
        _check_type(name, str, f"{where}.modules[{index}]", "a string")
        module = (base_dir / name).resolve()
        if not module.is_file():
            raise BuildError(f"{where}.modules[{index}]", f"no such file: {name}")
        modules.append(module)
    return MultibootImage(path, cmdline, tuple(modules), tuple(names))


def _parse_linux(raw: dict[str, Any], path: Path, where: str, base_dir: Path,
                 mode: StartMode | None) -> LinuxImage:
    if mode not in (None, StartMode.LONG):
        raise BuildError(f"{where}.mode", "a Linux kernel starts at its 64-bit entry: 'long' mode")
    cmdline = _parse_cmdline(raw, where)            # its limit is the kernel header's (builder/linux.py)
    initrd = None
    if "initrd" in raw:
        _check_type(raw["initrd"], str, f"{where}.initrd", "a string")
        initrd = (base_dir / raw["initrd"]).resolve()
        if not initrd.is_file():
            raise BuildError(f"{where}.initrd", f"no such file: {raw['initrd']}")
    return LinuxImage(path, cmdline, initrd)


def _parse_size(value: Any, where: str, low: int = GUEST_MEMORY_MIN, high: int = GUEST_MEMORY_MAX,
                granule: int = GUEST_MEMORY_GRANULE) -> int:
    """Sizes are an integer of bytes or a string like "256K", "1M", "1G";
    between `low` and `high`, a multiple of `granule` (default: a guest's
    memory)."""
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+)\s*([KMGT])i?B?", value.strip(), re.IGNORECASE)
        if not match:
            raise BuildError(where, f"{value!r} is not a size (write e.g. \"256K\" or \"4M\")")
        size = int(match.group(1)) * {"K": KIB, "M": MIB, "G": GIB, "T": TIB}[match.group(2).upper()]
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        raise BuildError(where, f"{value!r} is not a size (write e.g. \"256K\" or \"4M\")")
    if size < low:
        raise BuildError(where, f"{size} bytes is too small; at least {size_text(low)}")
    if size > high:
        raise BuildError(where, f"{size} bytes is too large; at most {size_text(high)}")
    if size % granule:
        raise BuildError(where, f"{size} bytes is not a multiple of {size_text(granule)}")
    return size


def size_text(size: int) -> str:
    """A size as a config writes it: "256K", "48M", "1G" (bytes if none fits)."""
    for suffix, unit in (("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return f"{size} bytes"


def _check_keys(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise BuildError(f"{where}.{key}" if ":" in where else f"{where}: {key}",
                             f"unknown key; expected one of {sorted(allowed)}")


def _check_type(value: Any, kind: type, where: str, description: str) -> None:
    if not isinstance(value, kind):
        raise BuildError(where, f"must be {description}, not {type(value).__name__}")


def _check_int(value: Any, where: str, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BuildError(where, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise BuildError(where, f"{value} is out of range [{low}, {high}]")
