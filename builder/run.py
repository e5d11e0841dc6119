"""Boot an image in an emulator and stream its COM1 console (`hvrun`).

Targets (launch definitions in qemu/):
  bochs   Bochs with Intel VMX emulated (qemu/bochsrc.j2); works on any host.
  kvm     QEMU with KVM and `-cpu host`, only where the host CPU has VMX and
          KVM nests it (checked, never assumed).

Every run has a hard timeout and leaves no emulator process behind: the
emulator gets its own session, dies with the runner (PR_SET_PDEATHSIG),
and is killed as a group when the run ends.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import tty
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pexpect
import pexpect.fdpexpect
from elftools.elf.elffile import ELFFile

from builder.build import make_iso
from builder.errors import BuildError
from builder.render import PROJECT_ROOT

DEFAULT_TIMEOUT_S = 120
MIN_MACHINE_MIB = 32            # GRUB and the BIOS need room of their own
GRUB_HEADROOM_MIB = 16
POWER_OFF_LINE = "[hv] powering off"
PR_SET_PDEATHSIG = 1
BOCHS_CPU_VMX = "corei7_skylake_x"


@dataclass(frozen=True)
class Target:
    name: str
    description: str


TARGETS = {
    "bochs": Target("bochs", "Bochs, Intel VMX emulated in software"),
    "kvm": Target("kvm", "QEMU with KVM, the host's VMX nested"),
}


def kvm_nests_vmx() -> tuple[bool, str]:
    """Whether QEMU/KVM can give a guest VMX here, and why (not)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False, "no /proc/cpuinfo"
    if not re.search(r"^flags\s*:.*\bvmx\b", flags, re.MULTILINE):
        return False, "the host CPU has no VMX"
    nested = Path("/sys/module/kvm_intel/parameters/nested")
    if not nested.exists() or nested.read_text().strip() not in ("Y", "1"):
        return False, "kvm_intel is not loaded with nested=1"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not usable"
    if shutil.which("qemu-system-x86_64") is None:
        return False, "qemu-system-x86_64 is not installed"
    return True, "the host has VMX and KVM nests it"


def choose_target(requested: str | None) -> tuple[Target, str]:
    if requested:
        if requested not in TARGETS:
            raise BuildError("--target", f"unknown target {requested!r}; choose one of {sorted(TARGETS)}")
        return TARGETS[requested], "requested"
    usable, why = kvm_nests_vmx()
    if usable:
        return TARGETS["kvm"], why
    return TARGETS["bochs"], f"no nested VMX under KVM ({why})"


def machine_memory_mib(elf_path: Path) -> int:
    """RAM the emulated machine needs: the image's highest byte, plus room."""
    with open(elf_path, "rb") as stream:
        top = max(segment["p_paddr"] + segment["p_memsz"]
                  for segment in ELFFile(stream).iter_segments() if segment["p_type"] == "PT_LOAD")
    return max(MIN_MACHINE_MIB, -(-top // (1 << 20)) + GRUB_HEADROOM_MIB)


class Console:
    """The hypervisor's COM1 as a stream: pexpect-style waits, a transcript."""

    def __init__(self, fd: int, timeout: float, echo: bool) -> None:
        self._transcript: list[str] = []
        self.spawn = pexpect.fdpexpect.fdspawn(fd, timeout=timeout, encoding="utf-8",
                                               codec_errors="replace")
        self.spawn.logfile_read = _Tee(self._transcript, sys.stdout if echo else None)

    def expect(self, pattern: str, timeout: float | None = None) -> str:
        """Wait for a regular expression; return the line text it matched."""
        self.spawn.expect(pattern, timeout=timeout if timeout is not None else -1)
        return self.spawn.after

    def run_to_end(self, timeout: float | None = None) -> list[str]:
        """Wait until the emulator closes the console; return every line."""
        self.spawn.expect(pexpect.EOF, timeout=timeout if timeout is not None else -1)
        return self.lines

    @property
    def text(self) -> str:
        return "".join(self._transcript)

    @property
    def lines(self) -> list[str]:
        return self.text.replace("\r", "").splitlines()


class _Tee:
    def __init__(self, sink: list[str], stream) -> None:
        self.sink, self.stream = sink, stream

    def write(self, data: str) -> None:
        self.sink.append(data)
        if self.stream:
            self.stream.write(data)
            self.stream.flush()

    def flush(self) -> None:
        if self.stream:
            self.stream.flush()


class Run:
    """One emulator run of an image; use as a context manager."""

    def __init__(self, elf_path: Path, target: Target, timeout: float = DEFAULT_TIMEOUT_S,
                 echo: bool = False, iso_path: Path | None = None) -> None:
        self.elf_path, self.target, self.timeout, self.echo = elf_path, target, timeout, echo
        self.iso_path = iso_path
        self.workdir = Path(tempfile.mkdtemp(prefix="hvrun-"))
        self.process: subprocess.Popen | None = None
        self.console: Console | None = None

    def __enter__(self) -> Console:
        if self.target.name == "kvm":
            self.console = self._start_qemu_kvm()
        else:
            self.console = self._start_bochs()
        return self.console

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def emulator_log(self) -> Path:
        return self.workdir / "emulator.log"

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.console is not None:
            self.console.spawn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _fifo(self) -> tuple[Path, int, int]:
        """A FIFO for the serial console: our read end, and a write end the
        emulator inherits, so that EOF comes when it exits however it ends."""
        fifo = self.workdir / "com1.fifo"
        os.mkfifo(fifo)
        read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        write_end = os.open(fifo, os.O_WRONLY)
        return fifo, read_end, write_end

    def _spawn(self, argv: list[str], keep_fd: int, stdout) -> None:
        libc = ctypes.CDLL(None)
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=(keep_fd,), cwd=self.workdir,
            preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))

    def _start_bochs(self) -> Console:
        if shutil.which("bochs") is None:
            raise BuildError("bochs", "not installed: run `make setup` (Debian: bochs bochsbios "
                             "vgabios bochs-term)")
        iso = self.iso_path or self.elf_path.with_suffix(".iso")
        if not iso.is_file():
            iso = self.workdir / "hv.iso"
            make_iso(self.elf_path, iso)
        fifo, read_end, write_end = self._fifo()
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROJECT_ROOT / "qemu")),
                                         undefined=jinja2.StrictUndefined)
        config = environment.get_template("bochsrc.j2").render(
            cpu_model=BOCHS_CPU_VMX, memory_mib=machine_memory_mib(self.elf_path),
            iso=iso.resolve(), log=self.workdir / "bochs.log", serial=fifo)
        (self.workdir / "bochsrc").write_text(config)
        (self.workdir / "debugger.rc").write_text("c\n")     # Debian's build stops in its debugger
        stdout = open(self.emulator_log, "wb")
        self._spawn(["bochs", "-q", "-f", "bochsrc", "-rc", "debugger.rc"], write_end, stdout)
        stdout.close()
        os.close(write_end)
        threading.Thread(target=_drain_bochs_screen, args=(self.emulator_log, self.process),
                         daemon=True).start()
        return Console(read_end, self.timeout, self.echo)

    def _start_qemu_kvm(self) -> Console:
        fifo, read_end, write_end = self._fifo()
        stdout = open(self.emulator_log, "wb")
        self._spawn(["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m",
                     str(machine_memory_mib(self.elf_path)), "-display", "none", "-no-reboot",
                     "-monitor", "none", "-serial", f"file:{fifo}",
                     "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                     "-kernel", str(self.elf_path.resolve())], write_end, stdout)
        stdout.close()
        os.close(write_end)
        return Console(read_end, self.timeout, self.echo)


def _drain_bochs_screen(log: Path, process: subprocess.Popen) -> None:
    """Bochs' term display writes the emulated screen into a pty of its own
    and stops once nobody reads it: read and discard it."""
    pattern = re.compile(rb'connected to screen "(/dev/pts/\d+)"')
    while process.poll() is None:
        match = pattern.search(log.read_bytes()) if log.exists() else None
        if match:
            break
        threading.Event().wait(0.02)
    else:
        return
    try:
        fd = os.open(match.group(1), os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return
    try:
        tty.setraw(fd)
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hvrun", description="Boot an hvbuild image in an emulator.")
    parser.add_argument("image", type=Path, nargs="?", default=Path("build/hv.elf"),
                        help="hv.elf from hvbuild (default: build/hv.elf); hv.iso beside it is used")
    parser.add_argument("--target", choices=sorted(TARGETS), help="force a target")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds before the run is killed (default {DEFAULT_TIMEOUT_S})")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        print(f"hvrun: error: {args.image}: no such image (run hvbuild first)", file=sys.stderr)
        return 2
    try:
        target, why = choose_target(args.target)
        print(f"hvrun: target {target.name}: {target.description} ({why})", flush=True)
        with Run(args.image, target, args.timeout, echo=True) as console:
            console.run_to_end()
    except BuildError as error:
        print(f"hvrun: error: {error}", file=sys.stderr)
        return 2
    except pexpect.TIMEOUT:
        print(f"\nhvrun: timed out after {args.timeout:g} s; emulator killed", file=sys.stderr)
        return 1
    if not any(line.startswith(POWER_OFF_LINE) for line in console.lines):
        print("hvrun: the emulator ended before the hypervisor powered off", file=sys.stderr)
        return 1
    return 0
