"""Boot an image in an emulator and stream its COM1 console (`hvrun`);
its COM2 is the hypervisor's control console (ControlLine, `hvctl`).

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
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tomllib
import tty
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pexpect
import pexpect.fdpexpect
from elftools.elf.elffile import ELFFile

from builder import control, hw, pool, resources
from builder.build import POOL_POINTER, make_iso
from builder.errors import BuildError

DEFAULT_TIMEOUT_S = 120
MIN_MACHINE_MIB = 32            # GRUB and the BIOS need room of their own
GRUB_HEADROOM_MIB = 16
POWER_OFF_LINE = "[hv] powering off"
FAILURE_PREFIXES = ("[hv] fatal:", "[hv] PANIC:")
PR_SET_PDEATHSIG = 1
TARGETS_FILE = resources.root() / "qemu" / "targets.toml"
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


def image_pool(elf_path: Path) -> Path | None:
    """The storage pool hvbuild built the image for (its hv.pool), or None."""
    pointer = elf_path.with_name(POOL_POINTER)
    if not pointer.is_file():
        return None
    path = Path(pointer.read_text().strip())
    if not path.is_file():
        raise BuildError(str(path), f"the storage pool {pointer} names is missing")
    return path


# Bochs' flat disk images take a geometry: 16 heads of 32 sectors make a
# cylinder of 256 KiB, a pool (whole MiB) whole cylinders.  Bochs locks a
# disk image with a file beside it, the image's name and ".lock".
BOCHS_DISK_HEADS, BOCHS_DISK_SECTORS = 16, 32
BOCHS_LOCK_SUFFIX = ".lock"


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


class ControlLine:
    """The hypervisor's control console on COM2 (hv/core/control.s.j2): a
    command goes out as one line, and its answer is the line that follows
    the echo of it.  The line goes a receive FIFO's worth at a time, each
    once the hypervisor has echoed the last (it reads between guest runs,
    and Bochs' UART drops what overflows its FIFO).  Safe to use from
    several threads: one command at a time."""

    ANSWER_TIMEOUT_S = 60.0

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._received = bytearray()
        self._closed = False
        self._arrived = threading.Condition()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while data := os.read(self.fd, 4096):
                with self._arrived:
                    self._received += data
                    self._arrived.notify_all()
        except OSError:             # the emulator closed its end
            pass
        with self._arrived:
            self._closed = True
            self._arrived.notify_all()

    def _take(self, count: int | None, deadline: float) -> bytes:
        """The next `count` bytes received, or (None) the next line without
        its line feed.  Call with self._arrived held."""
        while True:
            if count is None:
                end = self._received.find(b"\n")
                taken = end + 1 if end >= 0 else None
            else:
                taken = count if len(self._received) >= count else None
            if taken is not None:
                data = bytes(self._received[:taken])
                del self._received[:taken]
                return data if count is not None else data[:-1].rstrip(b"\r")
            if self._closed:
                raise ConnectionError("the machine powered off before it answered")
            left = deadline - time.monotonic()
            if left <= 0 or not self._arrived.wait(left):
                raise TimeoutError("the control console did not answer")

    def command(self, line: str, timeout: float | None = None) -> str:
        """Send one command line; return the answer line ("ok ..." or
        "error: ...").  Raises ConnectionError once the machine is gone,
        TimeoutError if no answer comes, ValueError for a line that is not
        one line of printable ASCII."""
        if not line.strip() or not all(" " <= char <= "~" for char in line):
            raise ValueError("a control command is a line of printable ASCII, not blank")
        return self.exchange(line.encode() + b"\n", timeout)

    def exchange(self, data: bytes, timeout: float | None = None) -> str:
        """Send `data` as it is (hostile-input tests; it must end a
        non-empty line); return the answer line."""
        deadline = time.monotonic() + (timeout or self.ANSWER_TIMEOUT_S)
        with self._lock, self._arrived:
            del self._received[:]                 # nothing stale answers this command
            for start in range(0, len(data), hw.UART_FIFO_SIZE):
                chunk = data[start:start + hw.UART_FIFO_SIZE]
                try:
                    os.write(self.fd, chunk)
                except OSError as error:
                    raise ConnectionError(f"the control line is closed: {error.strerror}") from None
                echo = self._take(len(chunk), deadline)
                if echo != chunk:
                    raise ConnectionError(f"the control line garbled {chunk!r} into {echo!r}")
            return self._take(None, deadline).decode("ascii", "replace")


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
                 rtc_start: datetime.datetime | None = None, pool: Path | None | bool = True) -> None:
        """`rtc_start`: the UTC time the emulated machine's real-time clock
        starts at (default: now).  `pool`: the storage pool's file, attached
        as the ATA disk the hypervisor drives (hv/drivers/ata.s.j2); True:
        the one hvbuild named beside the image (hv.pool), if any."""
        self.elf_path, self.target, self.timeout, self.echo = elf_path, target, timeout, echo
        self.iso_path, self.rtc_start = iso_path, rtc_start
        self.pool = image_pool(elf_path) if pool is True else pool or None
        self.workdir = Path(tempfile.mkdtemp(prefix="hvrun-"))
        self.process: subprocess.Popen | None = None
        self.console: Console | None = None
        self.control: ControlLine | None = None
        self._pool_lock: int | None = None

    def __enter__(self) -> Console:
        command = EMULATOR_COMMANDS[self.target.emulator]
        if shutil.which(command) is None:
            raise BuildError(command, f"not installed: run `make setup` (Debian: "
                             f"{DEBIAN_PACKAGES[self.target.emulator]})")
        if self.pool is not None:
            self._lock_pool()
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

    def _lock_pool(self) -> None:
        """One machine at a time on a pool: hvrun holds an flock on the file
        while its emulator runs.  Holding it, a Bochs lock file beside the
        pool is stale, left by a Bochs that was killed (it removes its lock
        only when it exits cleanly, and refuses to start while it is there)."""
        try:
            fd = os.open(self.pool, os.O_RDONLY)
        except OSError as error:
            raise BuildError(str(self.pool), f"cannot open the storage pool: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BuildError(str(self.pool), "the storage pool is in use by another hvrun") from None
        self._pool_lock = fd
        self.pool.with_name(self.pool.name + BOCHS_LOCK_SUFFIX).unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._pool_lock is not None:
            os.close(self._pool_lock)
            self._pool_lock = None
        if self.console is not None:
            self.console.spawn.close()
        if self.control is not None:
            with contextlib.suppress(OSError):
                os.close(self.control.fd)
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

    def _spawn(self, argv: list[str], keep_fds: tuple[int, ...], stdout,
               environment: dict[str, str] | None = None) -> None:
        libc = ctypes.CDLL(None)
        # preexec_fn only calls prctl: safe even with the screen-drain thread.
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=keep_fds, cwd=self.workdir, env=environment,
            preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))  # noqa: PLW1509

    def _start_bochs(self) -> Console:
        iso = self.iso_path or self.elf_path.with_suffix(".iso")
        if not iso.is_file():
            iso = self.workdir / "hv.iso"
            make_iso(self.elf_path, iso)
        serial, ours, theirs = self._serial_line()
        control, control_ours, control_theirs = self._serial_line()
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.root() / "qemu")),
                                         undefined=jinja2.StrictUndefined)
        # Bochs takes the clock's start as seconds since 1970 and shows it in
        # local time: in UTC, for it.
        time0 = (int(self.rtc_start.replace(tzinfo=datetime.UTC).timestamp())
                 if self.rtc_start else None)
        disk = None
        if self.pool is not None:
            cylinders = self.pool.stat().st_size // (BOCHS_DISK_HEADS * BOCHS_DISK_SECTORS * pool.SECTOR_SIZE)
            disk = {"path": self.pool.resolve(), "cylinders": cylinders, "heads": BOCHS_DISK_HEADS,
                    "sectors": BOCHS_DISK_SECTORS}
        config = environment.get_template("bochsrc.j2").render(
            cpu_model=self.target.cpu_model, memory_mib=machine_memory_mib(self.elf_path),
            iso=iso.resolve(), log=self.workdir / "bochs.log", serial=serial, control=control,
            time0=time0, disk=disk)
        (self.workdir / "bochsrc").write_text(config)
        (self.workdir / "debugger.rc").write_text("c\n")     # Debian's build stops in its debugger
        with open(self.emulator_log, "wb") as stdout:
            self._spawn(["bochs", "-q", "-f", "bochsrc", "-rc", "debugger.rc"], (theirs, control_theirs),
                        stdout, environment={**os.environ, "TZ": "UTC"} if time0 is not None else None)
        os.close(theirs)
        os.close(control_theirs)
        self.control = ControlLine(control_ours)
        threading.Thread(target=_drain_bochs_screen, args=(self.emulator_log, self.process),
                         daemon=True).start()
        return Console(ours, self.timeout, self.echo)

    def _start_qemu(self) -> Console:
        """QEMU loads the multiboot ELF itself (-kernel); the hypervisor ends
        the run through the isa-debug-exit device."""
        serial, ours, theirs = self._serial_line()
        control, control_ours, control_theirs = self._serial_line()
        with open(self.emulator_log, "wb") as stdout:
            rtc = ["-rtc", f"base={self.rtc_start:%Y-%m-%dT%H:%M:%S}"] if self.rtc_start else []
            # index 2: the secondary channel's master (hw.ATA_BASE); writeback: a
            # write QEMU completed is in the host's page cache, which outlives QEMU
            disk = (["-drive", f"file={self.pool.resolve()},format=raw,if=ide,index=2,cache=writeback"]
                    if self.pool is not None else [])
            self._spawn([EMULATOR_COMMANDS["qemu"], *self.target.args, *rtc,
                         "-m", str(machine_memory_mib(self.elf_path)), "-display", "none",
                         "-no-reboot", "-monitor", "none", "-serial", str(serial),
                         "-serial", str(control), *disk,
                         "-device", f"isa-debug-exit,iobase={hw.QEMU_DEBUG_EXIT_PORT:#x},iosize=4",
                         "-kernel", str(self.elf_path.resolve())], (theirs, control_theirs), stdout)
        os.close(theirs)
        os.close(control_theirs)
        self.control = ControlLine(control_ours)
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


CONTROL_PROMPT_KEY = b"c"         # Ctrl-A c: hvrun's control prompt (README, "The control console")
CONTROL_PROMPT = "(hv) "
BACKSPACES = (b"\x7f", b"\x08")


class _Keyboard:
    """What hvrun's standard input types: into the console (the hypervisor
    takes its Ctrl-A n, Ctrl-A Ctrl-A), but for Ctrl-A c, which hvrun
    takes: a prompt for control commands, a line each, edited here and
    sent to the control console; an empty line (or Ctrl-A c) goes back."""

    def __init__(self, console: Console, control: ControlLine | None, echo: bool) -> None:
        self.console, self.control, self.echo = console, control, echo
        self.escape = False             # the last byte was Ctrl-A
        self.prompting = False
        self.line = bytearray()

    def _show(self, text: str) -> None:
        if self.echo:
            sys.stdout.write(text.replace("\n", "\r\n"))
            sys.stdout.flush()

    def type(self, data: bytes) -> None:
        out = bytearray()
        for byte in (data[i:i + 1] for i in range(len(data))):
            if self.escape:
                self.escape = False
                if byte == CONTROL_PROMPT_KEY and self.control is not None:
                    self.console.send(bytes(out))
                    out.clear()
                    self._toggle()
                    continue
                if not self.prompting:
                    out += bytes([hw.CONSOLE_INPUT_ESCAPE]) + byte
                continue
            if byte[0] == hw.CONSOLE_INPUT_ESCAPE:
                self.escape = True
            elif self.prompting:
                self._edit(byte)
            else:
                out += byte
        if out:
            self.console.send(bytes(out))

    def _toggle(self) -> None:
        self.prompting = not self.prompting
        self.line.clear()
        if self.prompting:
            self._show("\nhvrun: control console: a command a line (help lists them); "
                       "an empty line goes back to the guests\n" + CONTROL_PROMPT)
        else:
            self._show("\nhvrun: back to the guests' console\n")

    def _edit(self, byte: bytes) -> None:
        if byte in (b"\r", b"\n"):
            if not self.line:
                self._toggle()
                return
            line, self.line = self.line.decode("ascii", "replace"), bytearray()
            try:
                answer = self.control.command(line)
            except (ConnectionError, TimeoutError, ValueError) as error:
                answer = f"error: {error}"
            self._show("\n" + answer + "\n" + CONTROL_PROMPT)
        elif byte in BACKSPACES:
            if self.line:
                self.line.pop()
                self._show("\b \b")
        elif b" " <= byte <= b"~":
            self.line += byte
            self._show(byte.decode())


@contextlib.contextmanager
def _typing_into(console: Console, control: ControlLine | None = None):
    """What hvrun's standard input gives goes to the console (README,
    "Console input") or, after Ctrl-A c, to the control prompt: keys as
    they are typed from a terminal (cbreak mode: no line editing or echo,
    Ctrl-C still interrupts), a pipe's bytes as they come."""
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):
        yield
        return
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setcbreak(fd)
    keyboard = _Keyboard(console, control, echo=True)

    def forward() -> None:
        try:
            while data := os.read(fd, 1024):
                keyboard.type(data)
        except OSError:
            pass
    threading.Thread(target=forward, daemon=True).start()
    try:
        yield
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class ControlServer:
    """A Unix socket for `hvctl` (builder/hvctl.py): each connection sends
    one command line and gets its answer line back, then is closed."""

    REQUEST_MAX = 4096

    def __init__(self, path: Path, control: ControlLine) -> None:
        self.path, self.control = path, control
        self._claim()
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.socket.bind(str(path))
        except OSError as error:
            self.socket.close()
            raise BuildError(str(path), f"cannot open the control socket: {error.strerror}") from None
        self.socket.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _claim(self) -> None:
        """A socket left by an hvrun that has ended is removed; one that
        answers belongs to a running hvrun, and anything else is kept."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        if not self.path.is_socket():
            raise BuildError(str(self.path), "exists and is not a socket: give --control-socket another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except ConnectionRefusedError:
            self.path.unlink()
            return
        except OSError:
            return
        finally:
            probe.close()
        raise BuildError(str(self.path), "another hvrun is listening there: give --control-socket another path")

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:             # closed
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            try:
                while b"\n" not in request and len(request) < self.REQUEST_MAX:
                    data = connection.recv(self.REQUEST_MAX)
                    if not data:
                        break
                    request += data
                line = request.split(b"\n", 1)[0].decode("ascii", "replace").rstrip("\r")
                try:
                    answer = self.control.command(line)
                except (ConnectionError, TimeoutError, ValueError) as error:
                    answer = f"error: {error}"
                connection.sendall(answer.encode() + b"\n")
            except OSError:
                pass

    def close(self) -> None:
        self.socket.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def default_control_socket(image: Path) -> Path:
    """Where hvrun listens for hvctl: $HVCTL_SOCKET, else beside the image."""
    return Path(os.environ.get("HVCTL_SOCKET", image.parent / control.SOCKET_NAME))


def quick_image(args: argparse.Namespace, scratch: Path) -> Path:
    """The image `--kernel` boots, built in `scratch` (builder/quick.py); an
    ISO too when the target, given or not, may be Bochs."""
    from builder import quick
    bochs = args.target is None or TARGETS[args.target].emulator == "bochs"
    return quick.build_kernel_image(scratch, args.kernel, args.initrd, args.append, args.memory,
                                    args.beside, iso=bochs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hvrun", description="Boot an hvbuild image in an emulator.")
    parser.add_argument("image", type=Path, nargs="?",
                        help="hv.elf from hvbuild (default: build/hv.elf); hv.iso beside it is used")
    parser.add_argument("--kernel", type=Path,
                        help="boot this kernel instead, as the one guest of an image built for it: a Linux "
                             "bzImage, a multiboot or another ELF kernel")
    parser.add_argument("--initrd", type=Path, help="with --kernel (Linux): its initrd")
    parser.add_argument("--append", help="with --kernel: its command line (Linux default: console=ttyS0)")
    parser.add_argument("--memory", help="with --kernel: its memory, e.g. 64M (default 256M)")
    parser.add_argument("--beside", metavar="BUILTIN",
                        help="with --kernel: a builtin guest beside it, e.g. heartbeat")
    parser.add_argument("--target", choices=sorted(TARGETS), help="force a target")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds before the run is killed (default {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--pool", type=Path,
                        help="the storage pool to attach as the ATA disk (default: the hv.pool beside the image)")
    parser.add_argument("--control-socket", type=Path,
                        help="where hvctl reaches the control console "
                             "(default: $HVCTL_SOCKET, else control.sock beside the image)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hvrun-kernel-") as scratch:
        return _main(args, Path(scratch))


def _main(args: argparse.Namespace, scratch: Path) -> int:
    quick = (args.initrd, args.append, args.memory, args.beside)
    if args.kernel is None and any(option is not None for option in quick):
        print("hvrun: error: --initrd, --append, --memory and --beside go with --kernel", file=sys.stderr)
        return 2
    if args.kernel is not None and args.image is not None:
        print("hvrun: error: give an image or --kernel, not both", file=sys.stderr)
        return 2
    if args.kernel is not None:
        try:
            args.image = quick_image(args, scratch)
        except BuildError as error:
            print(f"hvrun: error: {error}", file=sys.stderr)
            return 2
    args.image = args.image or Path("build/hv.elf")
    if not args.image.is_file():
        print(f"hvrun: error: {args.image}: no such image (run hvbuild first)", file=sys.stderr)
        return 2
    try:
        target, why = choose_target(args.target, args.image)
        print(f"hvrun: target {target.name}: {target.description}; {why}", flush=True)
        socket_path = args.control_socket or default_control_socket(args.image)
        run = Run(args.image, target, args.timeout, echo=True, pool=args.pool or True)
        with run as console, ControlServer(socket_path, run.control), _typing_into(console, run.control):
            print(f"hvrun: control console: Ctrl-A c, or hvctl --socket {socket_path} COMMAND",
                  flush=True)
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
