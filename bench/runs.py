"""What the benchmark runs: hvbuild, timed, and images booted in Bochs.

Every emulator run goes through builder.run.Run: a hard timeout, no
emulator left behind.  Wall times are taken here, around the child
processes; counted figures come from the console (bench/figures.py).
Each backend is measured on the Bochs target that emulates it, whose tick
counter is its instruction counter.
"""

from __future__ import annotations

import datetime

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from bench.figures import BenchError
from builder.render import PROJECT_ROOT
from builder.run import POWER_OFF_LINE, TARGETS, Run, Target

# Backend -> the hvrun target (qemu/targets.toml) it is measured on.
BACKEND_TARGETS = {"vmx": TARGETS["bochs"], "svm": TARGETS["bochs-svm"]}
BOOT_TIMEOUT_S = 120        # the 32-guest run takes a few seconds
BUILD_TIMEOUT_S = 120


def hvbuild(config: Path, out: Path) -> float:
    """Run hvbuild on `config` as a user would (GRUB ISO included); return
    its wall time in seconds."""
    command = [sys.executable, "-m", "builder.cli", str(config), "-o", str(out)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                          cwd=PROJECT_ROOT, check=False)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise BenchError(f"hvbuild {config.name} failed: {done.stderr.strip()}")
    return seconds


@dataclass(frozen=True)
class Boot:
    lines: list[str]
    seconds_to_up: float | None     # emulator start to the last of the awaited first lines


# The emulated machine's clock at power-on: fixed, so that the hypervisor's
# boot-time RTC line (and with it the whole console) is the same every run.
BENCH_CLOCK = datetime.datetime(2000, 1, 1)


def boot(elf: Path, target: Target, first_lines: tuple[str, ...] = (), *,
         hypervisor: bool = True) -> Boot:
    """Boot `elf` (its ISO beside it) on `target` until the emulator ends.
    `first_lines` are regular expressions of lines awaited in this order,
    timed from the emulator's start.  With `hypervisor`, the run must end
    with the hypervisor's power-off line."""
    start = time.monotonic()
    seconds = None
    run = Run(elf, target, BOOT_TIMEOUT_S, rtc_start=BENCH_CLOCK)
    try:
        with run as console:
            for pattern in first_lines:
                console.expect(pattern)
            if first_lines:
                seconds = time.monotonic() - start
            lines = console.run_to_end()
    except pexpect.TIMEOUT:
        raise BenchError(f"{elf} on {target.name}: no end within {BOOT_TIMEOUT_S} s; the console "
                         f"ended with: {run.console.lines[-3:] if run.console else []}") from None
    if hypervisor and POWER_OFF_LINE not in lines:
        raise BenchError(f"{elf} on {target.name}: the hypervisor did not power off; the console "
                         f"ended with: {lines[-3:]}")
    return Boot(lines, seconds)
