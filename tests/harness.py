"""Shared by the tests: build images from config text, build test guests
with GNU binutils, boot images in an emulator and read their console."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from builder import build, config
from builder.pytest_plugin import TARGETS as PLUGIN_TARGETS
from builder.run import TARGETS, Run

TESTS = Path(__file__).resolve().parent
GUESTS = TESTS / "guests"
BOOT_TIMEOUT_S = 60          # a whole run; the slowest takes a few seconds


def write_config(directory: Path, text: str, name: str = "hv.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def build_image(directory: Path, text: str, *, test_hooks: frozenset[str] = frozenset(),
                iso: bool = True) -> Path:
    """Build `text` (a TOML config) into `directory`; return hv.elf's path."""
    result = build.build(config.load(write_config(directory, text)), test_hooks=test_hooks)
    build.write_outputs(result, directory / "out", iso=iso)
    return directory / "out" / "hv.elf"


def binutils_guest(directory: Path, source: str, *, bits: int, flat: bool = False,
                   defines: tuple[str, ...] = (), link_address: int = 0x1000,
                   values: dict[str, int] | None = None) -> Path:
    """Assemble and link tests/guests/<source> with GNU as and ld; each of
    `defines` is defined as 1, each of `values` as its value."""
    for tool in ("as", "ld", "objcopy"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"GNU binutils' {tool} is missing: run `make setup`")
    stem = Path(source).stem + "".join(f"-{d.lower()}" for d in defines)
    obj, elf_path = directory / f"{stem}.o", directory / f"{stem}.elf"
    as_mode = "--64" if bits == 64 else "--32"
    ld_mode = "elf_x86_64" if bits == 64 else "elf_i386"
    symbols = [arg for d in defines for arg in ("--defsym", f"{d}=1")]
    symbols += [arg for name, value in (values or {}).items() for arg in ("--defsym", f"{name}={value}")]
    subprocess.run(["as", as_mode, "-I", str(GUESTS), *symbols, "-o", str(obj), str(GUESTS / source)],
                   check=True)
    subprocess.run(["ld", "-m", ld_mode, "-N", "-e", "_start", f"-Ttext={link_address:#x}",
                    "-o", str(elf_path), str(obj)], check=True)
    if not flat:
        return elf_path
    binary = directory / f"{stem}.bin"
    subprocess.run(["objcopy", "-O", "binary", str(elf_path), str(binary)], check=True)
    return binary


@contextmanager
def booted(elf_path: Path, target: str = "bochs", timeout: float = BOOT_TIMEOUT_S,
           rtc_start: datetime.datetime | None = None, pool: Path | None | bool = True):
    """Boot the image; yield its console.  The emulator is gone afterwards.
    `rtc_start`: the UTC time the machine's real-time clock starts at;
    `pool`: the storage pool attached (Run: True, the image's own)."""
    if target == "bochs" and shutil.which("bochs") is None:
        raise RuntimeError("Bochs is not installed: run `make setup`")
    with Run(elf_path, TARGETS[target], timeout, rtc_start=rtc_start, pool=pool) as console:
        yield console


@contextmanager
def machine(elf_path: Path, target: str, timeout: float = BOOT_TIMEOUT_S):
    """Boot the image; yield its Run: `console` (COM1) and `control` (the
    control console on COM2).  The emulator is gone afterwards."""
    run = Run(elf_path, TARGETS[target], timeout)
    with run:
        yield run


def boot_to_end(elf_path: Path, target: str = "bochs",
                rtc_start: datetime.datetime | None = None) -> list[str]:
    """Boot the image and return every console line once it powered off."""
    with booted(elf_path, target, rtc_start=rtc_start) as console:
        console.expect(r"\[hv\] powering off")
        return console.run_to_end()


def guest_lines(lines: list[str], name: str) -> list[str]:
    prefix = f"[{name}] "
    return [line[len(prefix):] for line in lines if line.startswith(prefix)]


# The boot-level tests run on every target: VMX in Bochs, SVM in QEMU's
# software CPU (no NRIPS) and SVM in Bochs' AMD model (with NRIPS).  What
# differs is named here; every assertion is the same.
BOOT_TARGETS = PLUGIN_TARGETS           # one list: the plugin's (builder/pytest_plugin.py)
BACKEND_OF = {"bochs": "vmx", "qemu": "svm", "bochs-svm": "svm"}
# The TSC's rate: in Bochs one instruction is one tick and `ips` sets
# virtual time; in QEMU -icount shift=0 one instruction is 1 ns.
TSC_HZ = {"bochs": 4_000_000, "bochs-svm": 4_000_000, "qemu": 1_000_000_000}
_VMX_EXITS = {"out_of_bounds": "EPT_VIOLATION, exit 48, qualification 0x181",
              "triple_fault": "TRIPLE_FAULT, exit 2, qualification 0x0"}
_SVM_EXITS = {"out_of_bounds": "NPF, exit 1024, qualification 0x100000004",
              # Bochs delivers the #DF the VMCB intercepts; QEMU goes straight
              # to shutdown.  Either way the guest is stopped, not the machine.
              "triple_fault": "EXCEPTION_DF, exit 72, qualification 0x0"}
EXPECTED_EXITS = {
    "bochs": _VMX_EXITS,
    "bochs-svm": _SVM_EXITS,
    "qemu": {**_SVM_EXITS, "triple_fault": "SHUTDOWN, exit 127, qualification 0x0"},
}
# What an emulator gets wrong, so a test cannot check it there.
EMULATOR_GAPS = {
    ("qemu", "refused_cr_writes"): "QEMU 7.2's software SVM checks a guest's CR0/CR3/CR4 write against "
                                   "the VMRUN consistency rules and exits with VMEXIT_INVALID where a CPU "
                                   "raises #GP",
    ("qemu", "cr8-reserved"): "QEMU 7.2's software SVM keeps a guest's MOV to CR8 in V_TPR without "
                              "checking the reserved bits 63:4 (a CPU raises #GP)",
}


def guest_table(name: str, memory: str, **keys: object) -> str:
    """One [[guest]] table of a config, e.g. guest_table("a", "64K", elf=path)."""
    lines = ["[[guest]]", f'name = "{name}"', f'memory = "{memory}"']
    lines += [f"{key} = {str(value)!r}" if isinstance(value, (str, Path)) else f"{key} = {value}"
              for key, value in keys.items()]
    return "\n".join(lines) + "\n"
