"""`make bench`: measure the hypervisor in Bochs and report against targets.

Prints a table on stdout (progress on stderr) and writes bench/results.json.
docs/BENCHMARKS.md explains each figure, its method and its error.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import bare, configs, figures, report, runs
from bench.figures import BenchError
from bench.report import Figure, ScalingRow, Target
from bench.sizes import Sizes, sizes, source_lines
from builder import build, config
from builder.errors import BuildError
from builder.render import PROJECT_ROOT

BUILD_REPEATS = 5           # hvbuild runs per config; the median is reported
BOOT_REPEATS = 3            # boots of the two-guest config; the median wall time is reported
MAIN_GUESTS = 2
TARGET_NAME = "bochs-vmx"
METHOD = ("Bochs' TSC counts instructions, the same counter in guests and hypervisor: counted "
          "figures are exact instruction counts from guest RDTSC loops and the hypervisor's summary; "
          f"timed figures are medians of {BUILD_REPEATS} builds or {BOOT_REPEATS} boots "
          "(docs/BENCHMARKS.md)")


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scaled:
    """One scaling point: its build times, image and boot."""

    guests: int
    build_seconds: list[float]
    image_bytes: int
    boots: list[runs.Boot]

    @property
    def lines(self) -> list[str]:
        return self.boots[0].lines


def up_patterns(guests: int) -> tuple[str, ...]:
    """Each guest's first line, in the order the guests first run."""
    return tuple(rf"\[{name}\] up\r?\n" for name in configs.guest_names(guests))


def measure_scaling(work: Path, guests: int) -> Scaled:
    directory = work / f"guests{guests}"
    directory.mkdir()
    toml = directory / "hv.toml"
    toml.write_text(configs.scaling(guests))
    progress(f"{guests} guests: hvbuild x{BUILD_REPEATS}")
    seconds = [runs.hvbuild(toml, directory / "out") for _ in range(BUILD_REPEATS)]
    elf = directory / "out" / "hv.elf"
    repeats = BOOT_REPEATS if guests == MAIN_GUESTS else 1
    progress(f"{guests} guests: boot x{repeats}")
    boots = [runs.boot(elf, up_patterns(guests)) for _ in range(repeats)]
    if any(boot.lines != boots[0].lines for boot in boots):
        raise BenchError(f"{guests} guests: the console differs between runs: Bochs is not deterministic")
    return Scaled(guests, seconds, elf.stat().st_size, boots)


def scaling_row(point: Scaled) -> ScalingRow:
    found = figures.records(point.lines)
    boot = figures.boot_cost(found, figures.summaries(point.lines))
    switch = figures.world_switch(found, config.DEFAULT_TIME_SLICE)
    exits = figures.exit_costs(found)
    return ScalingRow(
        guests=point.guests, build_s=round(statistics.median(point.build_seconds), 3),
        image_bytes=point.image_bytes, first_entry=boot.first_entry, all_up=boot.all_up,
        cpuid=exits["cpuid"].instructions, world_switch=switch.instructions,
        fairness=round(figures.fairness_deviation(figures.fairness(found)), 6),
        disturbed=sum(cost.disturbed for cost in exits.values()), uniform=switch.uniform)


def measure_kernel(work: Path) -> tuple[int, int]:
    """(guest ticks, bare ticks) of the compute kernel; checks both checksums."""
    directory = work / "kernel"
    directory.mkdir()
    toml = directory / "hv.toml"
    toml.write_text(configs.kernel())
    progress("compute kernel: in a guest, then bare")
    runs.hvbuild(toml, directory / "out")
    guest = figures.kernel_ticks(figures.records(runs.boot(directory / "out" / "hv.elf").lines))
    bare_elf = bare.build(directory)
    alone = figures.kernel_ticks(figures.records(runs.boot(bare_elf, hypervisor=False).lines))
    expected = figures.kernel_checksum()
    for where, (_, checksum) in (("guest", guest), ("bare", alone)):
        if checksum != expected:
            raise BenchError(f"the {where} kernel's checksum is {checksum:#x}, not {expected:#x}")
    return guest[0], alone[0]


def main_figures(points: list[Scaled], rows: list[ScalingRow], default_build: list[float],
                 kernel: tuple[int, int], size: Sizes, hv_lines: int) -> list[Figure]:
    main = next(p for p in points if p.guests == MAIN_GUESTS)
    widest = points[-1]
    found = figures.records(main.lines)
    exits = figures.exit_costs(found)
    switch = figures.world_switch(found, config.DEFAULT_TIME_SLICE)
    boot = figures.boot_cost(found, figures.summaries(main.lines))
    guest_ticks, bare_ticks = kernel
    n = f"{MAIN_GUESTS} guests"
    return [
        Figure("exit_cpuid", "CPUID round trip", exits["cpuid"].instructions, "hv instr", False,
               Target("<=", 100)),
        Figure("exit_vmcall_noop", "VMCALL no-op round trip", exits["vmcall"].instructions, "hv instr",
               False, Target("<=", 80)),
        Figure("exit_out_uart_scratch", "OUT to UART scratch (0x3FF)", exits["out"].instructions,
               "hv instr", False),
        Figure("exit_in_unclaimed", "IN from unclaimed port (0x80)", exits["in"].instructions,
               "hv instr", False),
        Figure("world_switch", f"world switch at slice end ({n})", switch.instructions, "hv instr",
               False, Target("<=", 400)),
        Figure("fairness_deviation", f"fairness: worst share off 1/N ({widest.guests} guests)",
               100 * rows[-1].fairness, "%", False, Target("<=", 3)),
        Figure("switch_overhead", f"CPU time in world switches ({widest.guests} guests)",
               round(100 * figures.switch_overhead(figures.records(widest.lines)), 4), "%", False),
        Figure("cpuid_spread", f"CPUID cost spread, {points[0].guests}-{widest.guests} guests",
               max(r.cpuid for r in rows) - min(r.cpuid for r in rows), "hv instr", False,
               Target("<=", 1)),
        Figure("world_switch_spread", f"switch cost spread, {points[0].guests}-{widest.guests} guests",
               max(r.world_switch for r in rows) - min(r.world_switch for r in rows), "hv instr", False,
               Target("<=", 1)),
        Figure("kernel_guest_ticks", "compute kernel in a guest", guest_ticks, "ticks", False),
        Figure("kernel_bare_ticks", "compute kernel bare", bare_ticks, "ticks", False),
        Figure("slowdown_ratio", "slowdown ratio bare/guest", round(bare_ticks / guest_ticks, 5), "",
               False, Target(">=", 0.99)),
        Figure("boot_first_entry", f"boot: first guest's first entry ({n})", boot.first_entry,
               "cycles", False),
        Figure("boot_all_up", f"boot: every guest's first line out ({n})", boot.all_up, "cycles", False),
        Figure("code_bytes", "hypervisor code", size.code, "bytes", False),
        Figure("text_bytes", "code + symbol table", size.text, "bytes", False),
        Figure("rodata_bytes", "rodata (not per guest)", size.rodata, "bytes", False),
        Figure("rwdata_bytes", "rwdata (not per guest)", size.rwdata, "bytes", False),
        Figure("code_data_bytes", "code + rodata + rwdata", size.code_and_data, "bytes", False,
               Target("<=", 16 * 1024)),
        Figure("stack_bytes", "stacks", size.stacks, "bytes", False),
        Figure("table_bytes", "hv page tables + exit bitmaps", size.tables, "bytes", False),
        Figure("per_guest_bytes", "per-guest overhead", size.per_guest, "bytes", False),
        Figure("image_bytes", "hv.elf, default config", size.image, "bytes", False),
        Figure("reserved_bytes", "machine memory below the guests", size.reserved, "bytes", False),
        Figure("source_lines", "hypervisor assembly lines (hv/, boot/)", hv_lines, "lines", False),
        Figure("hvbuild_default_s", "hvbuild, default config", round(statistics.median(default_build), 3),
               "s", True, Target("<", 1)),
        Figure("hvbuild_32_s", f"hvbuild, {widest.guests} guests", rows[-1].build_s, "s", True,
               Target("<", 3)),
        Figure("boot_wall_s", f"emulator start to every first line ({n})",
               round(statistics.median(b.seconds_to_up for b in main.boots), 3), "s", True),
    ]


def run() -> int:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hvbench-") as scratch:
        work = Path(scratch)
        progress(f"default config: hvbuild x{BUILD_REPEATS}")
        default_build = [runs.hvbuild(config.DEFAULT_CONFIG, work / "default")
                         for _ in range(BUILD_REPEATS)]
        size = sizes(build.build(config.load()))
        points = [measure_scaling(work, guests) for guests in configs.SCALING_GUESTS]
        kernel = measure_kernel(work)
    backend = figures.backend(points[0].lines)
    rows = [scaling_row(point) for point in points]
    templates = sorted((PROJECT_ROOT / "hv").rglob("*.s.j2")) + sorted((PROJECT_ROOT / "boot").rglob("*.s.j2"))
    results = main_figures(points, rows, default_build, kernel, size, source_lines(templates))
    context = {"commit": report.git_commit(), "target": TARGET_NAME, "bochs_cpu": runs.TARGET.cpu_model,
               "backend": backend, "time_slice": config.DEFAULT_TIME_SLICE, "method": METHOD}
    title = (f"hvbuild benchmark: target {TARGET_NAME} (Bochs cpu {runs.TARGET.cpu_model}, "
             f"backend {backend}), commit {context['commit']}")
    legend = (f"hv instr: hypervisor instructions per round trip or switch (Bochs ticks less "
              f"{figures.EXIT_TICKS} per VM exit); docs/BENCHMARKS.md")
    print(report.table(results, rows, [title, legend]), end="")
    report.write(report.results(results, rows, context))
    progress(f"wrote {report.RESULTS.relative_to(report.PROJECT_ROOT)} in {time.monotonic() - start:.0f} s")
    return 0


def main() -> int:
    try:
        return run()
    except (BenchError, BuildError) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
