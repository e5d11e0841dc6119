"""One fuzz boot: build an image of the witness and the attackers, boot it
on a target, judge its console.

`run_boot(spec)` is the unit of work a campaign hands out, to a local
process or to a Dask worker on another machine: its argument and result
are plain picklable data, and it builds everything itself from the
checkout it runs in (the same commit everywhere: `source_digest` tells).
Every emulator run goes through builder.run.Run: a hard timeout, no
emulator left behind.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

from builder import build, config, pool
from builder.errors import BuildError
from builder.render import PROJECT_ROOT
from builder.run import POWER_OFF_LINE, TARGETS, Run
from fuzz import guest, oracle
from fuzz.generator import Program, Step, generate

WITNESS = "witness"
BOOT_TIMEOUT_BASE_S = 60
BOOT_TIMEOUT_PER_PROGRAM_S = 2.0
EMULATOR_LOG_LINES = 40
EXIT_WAIT_S = 5
QUIET_AFTER_WITNESS_S = 20     # no line for this long after the witness exited: a hang
POOL = "pool.img"              # beside the boot's config
DISK_MIB = 1
CANARY = "canary"              # the witness's disk: nobody may write it
SOURCE_FOLDERS = ("builder", "hv", "boot", "guests", "qemu", "fuzz")


def attacker_name(attacker: int) -> str:
    return f"fuzz{attacker}"


def restart_supported() -> bool:
    """Does this hypervisor restart guests (on_fault = "restart")?"""
    return "restart" in getattr(config, "FAULT_POLICIES", ())


def witness_builtin() -> str:
    """The builtin witness: `witness` (checksum and state in every beat)
    where the hypervisor has it, else `heartbeat`."""
    return "witness" if "witness" in config.BUILTIN_GUESTS else "heartbeat"


def source_digest() -> str:
    """A digest of everything that decides what a boot does: the same on
    every machine of a campaign, or their results do not add up."""
    digest = hashlib.sha256()
    for folder in SOURCE_FOLDERS:
        for path in sorted((PROJECT_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class BootSpec:
    """What one boot runs.  Attacker a runs programs first + a * programs
    up to first + (a + 1) * programs - 1 of campaign `seed`, one per
    incarnation (with restart; without, only its first).  `replay` runs
    these steps instead, as attacker 0's one program (numbered `first`);
    the other attackers are observers then, running `programs` programs
    without steps, which only check what they see."""

    target: str
    seed: int
    first: int
    programs: int
    attackers: int
    restart: bool
    witness_beats: int
    timeout: float
    replay: tuple[Step, ...] | None = None
    skip: frozenset[str] = frozenset()  # step kinds left out (known failures): they run nothing
    digest: str | None = None           # the campaign's source_digest(), checked by the worker

    @property
    def indexes(self) -> range:
        if self.replay is not None:
            return range(self.first, self.first + 1)
        return range(self.first, self.first + self.programs * self.attackers)

    def attacker_programs(self, attacker: int) -> list[Program]:
        if self.replay is not None:
            if attacker == 0:
                return [Program(self.seed, self.first, self.replay)]
            return [Program(self.seed, index, ()) for index in range(self.programs)]
        start = self.first + attacker * self.programs
        return [generate(self.seed, index, guest.MEMORY) for index in range(start, start + self.programs)]

    def expectation(self) -> oracle.Expectation:
        return oracle.Expectation(
            WITNESS, self.witness_beats,
            {attacker_name(a): tuple(p.index for p in self.attacker_programs(a)) for a in range(self.attackers)},
            self.restart)


@dataclass
class BootResult:
    spec: BootSpec
    lines: list[str] = field(default_factory=list)
    timed_out: bool = False
    seconds: float = 0.0
    error: str | None = None            # the boot could not be built or run: no verdict
    verdict: oracle.Verdict | None = None
    emulator_log: list[str] = field(default_factory=list)  # its last lines, where it ended early


def default_timeout(programs: int, attackers: int) -> float:
    return BOOT_TIMEOUT_BASE_S + BOOT_TIMEOUT_PER_PROGRAM_S * programs * attackers


def config_text(spec: BootSpec, elfs: list[Path]) -> str:
    """The boot's hvbuild config: the witness first, then the attackers,
    each with a disk of a storage pool beside the config; the witness's
    (the canary) it never uses."""
    tables = [f'[storage]\npool = "{POOL}"\nsize = "{(1 + DISK_MIB * (1 + len(elfs)))}M"\n',
              (f'[[guest]]\nname = "{WITNESS}"\nmemory = "{guest.WITNESS_MEMORY // 1024}K"\n'
               f'builtin = "{witness_builtin()}"\nheartbeats = {spec.witness_beats}\n'
               f'disks = [{{ name = "{CANARY}", size = "{DISK_MIB}M" }}]\n')]
    for attacker, elf in enumerate(elfs):
        table = f'[[guest]]\nname = "{attacker_name(attacker)}"\nmemory = "{guest.MEMORY // 1024}K"\n' \
                f'elf = "{elf}"\ndisks = [{{ name = "disk", size = "{DISK_MIB}M" }}]\n'
        if spec.restart:
            table += f'on_fault = "restart"\nmax_restarts = {len(spec.attacker_programs(attacker))}\n'
        tables.append(table)
    return "\n".join(tables)


def build_image(spec: BootSpec, directory: Path) -> Path:
    """The boot's hv.elf (and hv.iso for the Bochs targets)."""
    elfs = [guest.build(directory, spec.attacker_programs(a), a, spec.attackers, spec.skip)
            for a in range(spec.attackers)]
    toml = directory / "hv.toml"
    toml.write_text(config_text(spec, elfs))
    result = build.build(config.load(toml))
    build.write_outputs(result, directory / "out", iso=TARGETS[spec.target].emulator == "bochs")
    return directory / "out" / "hv.elf"


def boot(elf: Path, spec: BootSpec) -> tuple[list[str], bool, list[str]]:
    """Boot the image until the emulator ends: (console lines, timed out,
    the emulator's last log lines where the hypervisor did not power off)."""
    run = Run(elf, TARGETS[spec.target], spec.timeout)
    with run as console:
        timed_out = not _wait_for_the_end(console, spec.timeout)
        lines = console.lines
        log = [] if POWER_OFF_LINE in lines else _log_tail(run)
        if log or (POWER_OFF_LINE not in lines and not timed_out):
            try:
                log.append(f"(the emulator's exit status: {run.process.wait(timeout=EXIT_WAIT_S)})")
            except subprocess.TimeoutExpired:
                log.append("(the emulator was still running after its console closed)")
    return lines, timed_out, log


def _wait_for_the_end(console, timeout: float) -> bool:
    """Read the console until the emulator closes it (True), or until the
    timeout, or until it has been quiet for QUIET_AFTER_WITNESS_S once the
    witness exited: an attacker that runs on alone is left to the oracle
    as a hang, without waiting out the whole timeout (False)."""
    deadline = time.monotonic() + timeout
    witness_exited = f"[hv] {WITNESS} exited"
    while (left := deadline - time.monotonic()) > 0:
        try:
            console.expect(r"\n", timeout=min(left, QUIET_AFTER_WITNESS_S))
        except pexpect.EOF:
            return True
        except pexpect.TIMEOUT:
            if witness_exited in console.text:
                return False
    return False


def _log_tail(run: Run) -> list[str]:
    """What the emulator said last (Bochs' log, or QEMU's output)."""
    for path in (run.workdir / "bochs.log", run.emulator_log):
        if path.is_file() and path.stat().st_size:
            return path.read_text(errors="replace").splitlines()[-EMULATOR_LOG_LINES:]
    return []


def canary_written(pool_path: Path) -> str | None:
    """A breach if any byte of the witness's disk is not zero any more."""
    extent = pool.read(pool_path).extent(WITNESS, CANARY)
    with open(pool_path, "rb") as stream:
        stream.seek(extent.start)
        data = stream.read(extent.size)
    written = len(data) - data.count(0)
    return f"the witness's disk, which it never uses, has {written} non-zero bytes" if written else None


def run_boot(spec: BootSpec) -> BootResult:
    """Build, boot and judge one boot; never raises (errors are results)."""
    start = time.monotonic()
    result = BootResult(spec)
    try:
        if spec.digest is not None and spec.digest != source_digest():
            raise BuildError("fuzz", f"this worker's checkout ({PROJECT_ROOT}) differs from the "
                             "campaign's: run every worker on the same commit")
        with tempfile.TemporaryDirectory(prefix="hvfuzz-") as scratch:
            elf = build_image(spec, Path(scratch))
            result.lines, result.timed_out, result.emulator_log = boot(elf, spec)
            canary = canary_written(Path(scratch) / POOL)
        result.verdict = oracle.judge(result.lines, spec.expectation(), result.timed_out)
        if canary:
            result.verdict.breaches.append(canary)
    except (BuildError, guest.GuestBuildError, OSError) as error:
        result.error = str(error)
    except Exception:  # noqa: BLE001 - a bug of ours: the campaign goes on, the traceback says where
        result.error = traceback.format_exc(limit=8)
    result.seconds = time.monotonic() - start
    return result
