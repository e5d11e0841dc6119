"""Boot an image in an emulator and stream its COM1 console (`hvrun`).

The targets are defined in qemu/targets.toml (and qemu/bochsrc.j2):
  kvm        QEMU with KVM and `-cpu host`, only where the host CPU has VMX
             or SVM and KVM nests it (checked, never assumed);
  qemu       QEMU's software CPU: AMD SVM with nested paging;
  bochs      Bochs: Intel VMX with EPT;
  bochs-svm  Bochs' AMD model: SVM with nested paging.
Without --target, the fastest one that can run the image's backends wins,
in that order; the image's symbols tell which backends it carries.

Every run has a hard timeout and leaves no emulator process behind: the
emulator gets its own session, dies with the runner (PR_SET_PDEATHSIG),
and is killed as a group when the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import tomllib
import tty
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pexpect
import pexpect.fdpexpect
from elftools.elf.elffile import ELFFile

from builder import hw
from builder.build import make_iso
from builder.errors import BuildError
from builder.render import PROJECT_ROOT

DEFAULT_TIMEOUT_S = 120
MIN_MACHINE_MIB = 32            # GRUB and the BIOS need room of their own
GRUB_HEADROOM_MIB = 16
POWER_OFF_LINE = "[hv] powering off"
FAILURE_PREFIXES = ("[hv] fatal:", "[hv] PANIC:")
PR_SET_PDEATHSIG = 1
TARGETS_FILE = PROJECT_ROOT / "qemu" / "targets.toml"
EMULATOR_COMMANDS = {"qemu": "qemu-system-x86_64", "bochs": "bochs"}
DEBIAN_PACKAGES = {"qemu": "qemu-system-x86", "bochs": "bochs bochsbios vgabios bochs-term"}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    emulator: str                       # "qemu" or "bochs"
    backend: str                        # "vmx", "svm", or "host" (KVM: the host's)
    args: tuple[str, ...] = ()
    cpu_model: str = ""


def _load_targets() -> dict[str, Target]:
    raw = tomllib.loads(TARGETS_FILE.read_text())
    return {name: Target(name, t["description"], t["emulator"], t["backend"],
                         tuple(t.get("args", ())), t.get("cpu_model", ""))
            for name, t in raw.items()}


TARGETS = _load_targets()


def kvm_nested_backend() -> tuple[str | None, str]:
    """The extension QEMU/KVM can give a guest here ("vmx" or "svm"), and
    why (not).  Never assumed: the CPU flag, KVM's nested parameter and
    /dev/kvm are all checked."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "no /proc/cpuinfo"
    for backend, module in (("vmx", "kvm_intel"), ("svm", "kvm_amd")):
        if re.search(rf"^flags\s*:.*\b{backend}\b", flags, re.MULTILINE):
            break
    else:
        return None, "the host CPU has neither VMX nor SVM"
    nested = Path(f"/sys/module/{module}/parameters/nested")
    if not nested.exists() or nested.read_text().strip() not in ("Y", "1"):
        return None, f"{module} is not loaded with nested=1"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return None, "/dev/kvm is not usable"
    return backend, f"the host has {backend.upper()} and KVM nests it"


def image_backends(elf_path: Path) -> set[str]:
    """The backends an image carries, from its symbol table."""
    with open(elf_path, "rb") as stream:
        symbols = ELFFile(stream).get_section_by_name(".symtab")
        names = {symbol.name for symbol in symbols.iter_symbols()} if symbols else set()
    return {backend for backend in ("vmx", "svm") if f"{backend}_init" in names}


def choose_target(requested: str | None, elf_path: Path) -> tuple[Target, str]:
    """The target to boot `elf_path` on, and why it was chosen."""
    backends = image_backends(elf_path)
    if requested:
        if requested not in TARGETS:
            raise BuildError("--target", f"unknown target {requested!r}; choose one of {sorted(TARGETS)}")
        return TARGETS[requested], "requested"
    kvm_backend, kvm_why = kvm_nested_backend()
    if kvm_backend in backends and shutil.which(EMULATOR_COMMANDS["qemu"]):
        return TARGETS["kvm"], kvm_why
    for name in ("qemu", "bochs", "bochs-svm"):
        target = TARGETS[name]
        if target.backend in backends and shutil.which(EMULATOR_COMMANDS[target.emulator]):
            return target, (f"KVM cannot nest here: {kvm_why}; the fastest emulator for this "
                            f"image's backends ({', '.join(sorted(backends))})")
    raise BuildError(str(elf_path), f"no emulator here runs its backends ({', '.join(sorted(backends))}): "
                     "run `make setup`")


def machine_memory_mib(elf_path: Path) -> int:
    """RAM the emulated machine needs: the image's highest byte, plus room."""
    with open(elf_path, "rb") as stream:
        top = max(segment["p_paddr"] + segment["p_memsz"]
                  for segment in ELFFile(stream).iter_segments() if segment["p_type"] == "PT_LOAD")
    return max(MIN_MACHINE_MIB, -(-top // (1 << 20)) + GRUB_HEADROOM_MIB)


class Console:
    """The hypervisor's COM1 as a stream: pexpect-style waits, a transcript,
    and input (`send`), which goes to the guest that has it (README,
    "Console input")."""

    def __init__(self, fd: int, timeout: float, echo: bool) -> None:
        self._transcript: list[str] = []
        self.spawn = pexpect.fdpexpect.fdspawn(fd, timeout=timeout, encoding="utf-8",
                                               codec_errors="replace")
        self.spawn.logfile_read = _Tee(self._transcript, sys.stdout if echo else None)

    def expect(self, pattern: str, timeout: float | None = None) -> str:
        """Wait for a regular expression; return the line text it matched."""
        self.spawn.expect(pattern, timeout=timeout if timeout is not None else -1)
        return self.spawn.after

    def send(self, data: str | bytes) -> None:
        """Type `data` on the console: into the real COM1's receiver."""
        os.write(self.spawn.child_fd, data.encode() if isinstance(data, str) else data)

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
            try:
                self.stream.write(data)
                self.stream.flush()
            except BrokenPipeError:      # e.g. `hvrun | head`: keep the run, stop echoing
                self.stream = None

    def flush(self) -> None:
        pass


class Run:
    """One emulator run of an image; use as a context manager."""

    def __init__(self, elf_path: Path, target: Target, timeout: float = DEFAULT_TIMEOUT_S,
                 echo: bool = False, iso_path: Path | None = None,
                 rtc_start: datetime.datetime | None = None) -> None:
        """`rtc_start`: the UTC time the emulated machine's real-time clock
        starts at (default: now)."""
        self.elf_path, self.target, self.timeout, self.echo = elf_path, target, timeout, echo
        self.iso_path, self.rtc_start = iso_path, rtc_start
        self.workdir = Path(tempfile.mkdtemp(prefix="hvrun-"))
        self.process: subprocess.Popen | None = None
        self.console: Console | None = None

    def __enter__(self) -> Console:
        command = EMULATOR_COMMANDS[self.target.emulator]
        if shutil.which(command) is None:
            raise BuildError(command, f"not installed: run `make setup` (Debian: "
                             f"{DEBIAN_PACKAGES[self.target.emulator]})")
        if self.target.emulator == "qemu":
            self.console = self._start_qemu()
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

    def _serial_line(self) -> tuple[Path, int, int]:
        """A pty for the serial console, both ways: our end (the master),
        and the emulator's end, by name and as a descriptor it inherits,
        so that EOF comes when it exits however it ends.  Raw: bytes pass
        as they are, and nothing typed is echoed back."""
        ours, theirs = os.openpty()
        tty.setraw(theirs)
        tty.setraw(ours)
        return Path(os.ttyname(theirs)), ours, theirs

    def _spawn(self, argv: list[str], keep_fd: int, stdout,
               environment: dict[str, str] | None = None) -> None:
        libc = ctypes.CDLL(None)
        # preexec_fn only calls prctl: safe even with the screen-drain thread.
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=(keep_fd,), cwd=self.workdir, env=environment,
            preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))  # noqa: PLW1509

    def _start_bochs(self) -> Console:
        iso = self.iso_path or self.elf_path.with_suffix(".iso")
        if not iso.is_file():
            iso = self.workdir / "hv.iso"
            make_iso(self.elf_path, iso)
        serial, ours, theirs = self._serial_line()
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROJECT_ROOT / "qemu")),
                                         undefined=jinja2.StrictUndefined)
        # Bochs takes the clock's start as seconds since 1970 and shows it in
        # local time: in UTC, for it.
        time0 = (int(self.rtc_start.replace(tzinfo=datetime.UTC).timestamp())
                 if self.rtc_start else None)
        config = environment.get_template("bochsrc.j2").render(
            cpu_model=self.target.cpu_model, memory_mib=machine_memory_mib(self.elf_path),
            iso=iso.resolve(), log=self.workdir / "bochs.log", serial=serial, time0=time0)
        (self.workdir / "bochsrc").write_text(config)
        (self.workdir / "debugger.rc").write_text("c\n")     # Debian's build stops in its debugger
        with open(self.emulator_log, "wb") as stdout:
            self._spawn(["bochs", "-q", "-f", "bochsrc", "-rc", "debugger.rc"], theirs, stdout,
                        environment={**os.environ, "TZ": "UTC"} if time0 is not None else None)
        os.close(theirs)
        threading.Thread(target=_drain_bochs_screen, args=(self.emulator_log, self.process),
                         daemon=True).start()
        return Console(ours, self.timeout, self.echo)

    def _start_qemu(self) -> Console:
        """QEMU loads the multiboot ELF itself (-kernel); the hypervisor ends
        the run through the isa-debug-exit device."""
        serial, ours, theirs = self._serial_line()
        with open(self.emulator_log, "wb") as stdout:
            rtc = ["-rtc", f"base={self.rtc_start:%Y-%m-%dT%H:%M:%S}"] if self.rtc_start else []
            self._spawn([EMULATOR_COMMANDS["qemu"], *self.target.args, *rtc,
                         "-m", str(machine_memory_mib(self.elf_path)), "-display", "none",
                         "-no-reboot", "-monitor", "none", "-serial", str(serial),
                         "-device", f"isa-debug-exit,iobase={hw.QEMU_DEBUG_EXIT_PORT:#x},iosize=4",
                         "-kernel", str(self.elf_path.resolve())], theirs, stdout)
        os.close(theirs)
        return Console(ours, self.timeout, self.echo)


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


# The hypervisor's summary line of a guest (hv/core/sched.s.j2).
SUMMARY = re.compile(r"\[hv\] summary: (?P<name>\S+) (?:exited with code (?P<code>\d+)"
                     r"|stopped by the hypervisor: (?P<reason>.+?))"
                     r"(?: \(expected exit code (?P<expected>\d+)\))?(?:, restarted \d+ times)?"
                     r", (?P<exits>\d+) VM exits, ")


@dataclass(frozen=True)
class Verdict:
    guest: str
    ended: str                  # "exited" or "stopped: <reason>"
    code: int | None
    expected: int | None
    exits: int

    @property
    def passed(self) -> bool:
        return self.expected is None or self.code == self.expected


def verdicts(lines: list[str]) -> list[Verdict]:
    """One verdict per guest, from the hypervisor's summary lines."""
    found = []
    for match in filter(None, map(SUMMARY.match, lines)):
        code = int(match["code"]) if match["code"] is not None else None
        found.append(Verdict(match["name"], "exited" if code is not None else f"stopped: {match['reason']}",
                             code, int(match["expected"]) if match["expected"] else None,
                             int(match["exits"])))
    return found


def verdict_table(found: list[Verdict]) -> str:
    """The table hvrun prints when a config expects exit codes."""
    rows = [("guest", "how it ended", "status", "expected", "exits", "verdict")]
    for v in found:
        rows.append((v.guest, v.ended, "-" if v.code is None else str(v.code),
                     "-" if v.expected is None else str(v.expected), str(v.exits),
                     "-" if v.expected is None else ("ok" if v.passed else "FAILED")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


@contextlib.contextmanager
def _typing_into(console: Console):
    """What hvrun's standard input gives goes to the console (README,
    "Console input"): keys as they are typed from a terminal (cbreak mode:
    no line editing or echo, Ctrl-C still interrupts), a pipe's bytes as
    they come."""
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):
        yield
        return
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setcbreak(fd)

    def forward() -> None:
        try:
            while data := os.read(fd, 1024):
                console.send(data)
        except OSError:
            pass
    threading.Thread(target=forward, daemon=True).start()
    try:
        yield
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


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
        target, why = choose_target(args.target, args.image)
        print(f"hvrun: target {target.name}: {target.description}; {why}", flush=True)
        with Run(args.image, target, args.timeout, echo=True) as console, _typing_into(console):
            console.run_to_end()
    except BuildError as error:
        print(f"hvrun: error: {error}", file=sys.stderr)
        return 2
    except pexpect.TIMEOUT:
        print(f"\nhvrun: timed out after {args.timeout:g} s; emulator killed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nhvrun: interrupted; emulator killed", file=sys.stderr)
        return 130
    if not any(line.startswith(POWER_OFF_LINE) for line in console.lines):
        print("hvrun: the emulator ended before the hypervisor powered off", file=sys.stderr)
        return 1
    if any(line.startswith(FAILURE_PREFIXES) for line in console.lines):
        print("hvrun: the hypervisor could not run the guests", file=sys.stderr)
        return 1
    found = verdicts(console.lines)
    if any(v.expected is not None for v in found):
        print("\nhvrun: verdicts\n" + verdict_table(found), flush=True)
        failed = [v.guest for v in found if not v.passed]
        if failed:
            print(f"hvrun: {len(failed)} guest(s) did not end as expected: {', '.join(failed)}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
