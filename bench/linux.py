"""Linux under the hypervisor, measured in QEMU with -icount (one
instruction one nanosecond of virtual time, so every figure here is
counted, not timed): the small test kernel (guests/linux/assets.py) to
/init and to power-off, its VM exits by reason to /init (a boot whose
/init powers off at once), its user-space compute loop under the hypervisor
against the same kernel booted bare in the same emulator by QEMU's own
loader, and boots of 1, 2 and 4 Linux guests side by side.

The guest's /init (guests/linux/init) prints its uptime when it starts
("started S") and around its work ("worked S1 S2"), from the kernel's
clock, which runs on the TSC: under -icount that is virtual time, which
advances by instructions while the CPU computes (and jumps over idle
time, `sleep=off`).  /proc/uptime has 10 ms steps: the work is sized to
take seconds.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import runs
from bench.figures import BenchError
from builder.run import EMULATOR_COMMANDS, TARGETS, Run
from guests.linux import assets

TARGET = TARGETS["qemu"]
MEMORY = "48M"
WORK_ROUNDS = 300_000                 # seconds of user-space compute at QEMU's speed
CMDLINE = f"console=ttyS0 init.work={WORK_ROUNDS}"
GUEST_COUNTS = (1, 2, 4)
TIMEOUT_S = 600
CENTISECOND = 0.01


@dataclass(frozen=True)
class LinuxRun:
    init_s: list[float]               # each guest's uptime when its /init started
    work_s: list[float]               # each guest's user-space work, seconds of its clock
    exits: list[int]                  # each guest's VM exits (the hypervisor's summary)
    by_reason: dict[str, int] | None = None   # the first guest's, from its "[hv] exits:" line


def _config(guests: int, kernel: Path, initrd: Path, cmdline: str) -> str:
    return "".join(f'[[guest]]\nname = "linux{i}"\nmemory = "{MEMORY}"\nlinux = "{kernel}"\n'
                   f'initrd = "{initrd}"\ncmdline = "{cmdline}"\n' for i in range(guests))


def _reports(lines: list[str], prefix: str) -> tuple[list[float], list[float]]:
    started, worked = {}, {}
    for line in lines:
        match = re.match(rf"{prefix}init: (started|worked) (.+)$", line)
        if match:
            name = line.split("]")[0]
            values = [float(v) for v in match[2].split()]
            (started if match[1] == "started" else worked)[name] = values
    if not started or (worked and len(started) != len(worked)):
        raise BenchError(f"Linux did not report its /init and work: {lines[-5:]}")
    return ([v[0] for v in started.values()], [v[1] - v[0] for v in worked.values()])


def under_hypervisor(work: Path, guests: int, kernel: Path, initrd: Path, cmdline: str = CMDLINE,
                     name: str = "") -> LinuxRun:
    directory = work / f"linux-{guests}{name}"
    directory.mkdir()
    (directory / "hv.toml").write_text(_config(guests, kernel, initrd, cmdline))
    runs.hvbuild(directory / "hv.toml", directory)
    with Run(directory / "hv.elf", TARGET, TIMEOUT_S) as console:
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    init_s, work_s = _reports(lines, r"\[linux\d+\] ")
    exits = [int(m[1]) for m in (re.match(r"\[hv\] summary: linux\d+ .*?, (\d+) VM exits", line)
                                 for line in lines) if m]
    if len(exits) != guests:
        raise BenchError(f"{guests} Linux guests: {len(exits)} summaries")
    words = next(line for line in lines if line.startswith("[hv] exits: linux0 ")).split()[3:]
    return LinuxRun(init_s, work_s, exits, dict(zip(words[::2], map(int, words[1::2]))))


def bare(work: Path, kernel: Path, initrd: Path) -> LinuxRun:
    """The same kernel, initramfs and command line, started by QEMU's own
    Linux loader on the same emulated CPU, with no hypervisor."""
    serial = work / "bare-serial.txt"
    command = [EMULATOR_COMMANDS["qemu"], *TARGET.args, "-m", MEMORY.rstrip("M"), "-display", "none",
               "-no-reboot", "-monitor", "none", "-serial", f"file:{serial}",
               "-kernel", str(kernel), "-initrd", str(initrd), "-append", CMDLINE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise BenchError(f"bare Linux in QEMU failed: {done.stderr.strip()[-300:]}")
    lines = serial.read_text(errors="replace").replace("\r", "").splitlines()
    init_s, work_s = _reports(lines, "")
    return LinuxRun(init_s, work_s, [])


def measure() -> dict[str, object]:
    """Every figure of the Linux section, with what it was measured on."""
    kernel, initrd = assets.small_kernel(), assets.initramfs()
    with tempfile.TemporaryDirectory(prefix="hvbench-linux-") as scratch:
        work = Path(scratch)
        measured = {guests: under_hypervisor(work, guests, kernel, initrd) for guests in GUEST_COUNTS}
        to_init = under_hypervisor(work, 1, kernel, initrd, f"{CMDLINE} init.then=stop", "-to-init")
        alone = bare(work, kernel, initrd)
    one = measured[1]
    return {"kernel": kernel.parent.name, "work_rounds": WORK_ROUNDS, "runs": measured, "bare": alone,
            "to_init": to_init,
            "slowdown": one.work_s[0] / alone.work_s[0],
            "slowdown_error": 2 * CENTISECOND / alone.work_s[0]}


if __name__ == "__main__":
    figures = measure()
    for key, value in figures.items():
        print(key, value)
