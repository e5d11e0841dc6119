"""`make bench`: measure the hypervisor in Bochs, each backend on the Bochs
CPU model that has it, and report against targets.

Prints a table on stdout (progress on stderr) and writes bench/results.json:
one section per backend and its target (VMX on `bochs`, SVM on
`bochs-svm`), one for what both share (hvbuild's time, the image with both
backends).  docs/BENCHMARKS.md explains each figure, its method and its error.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import bare, configs, figures, linux, report, runs
from bench.figures import BenchError
from bench.report import Figure, ScalingRow, Section, Target
from bench.sizes import Sizes, sizes, source_lines
from builder import build, config
from builder.errors import BuildError
from builder.guest_images import HYPERCALL_INSTRUCTIONS
from builder.render import PROJECT_ROOT

BUILD_REPEATS = 5           # hvbuild runs per timed config; the median is reported
BOOT_REPEATS = 3            # boots of the two-guest config; the median wall time is reported
MAIN_GUESTS = 2
BACKENDS = ("vmx", "svm")   # each measured on runs.BACKEND_TARGETS[backend]
TIMED_BACKEND = "vmx"       # whose scaling builds are timed: hvbuild's times are reported once
FAIR_FRACTION = 0.9         # beside an exit storm, a victim keeps at least this much of 1/N
METHOD = ("Bochs' TSC counts instructions, the same counter in guests and hypervisor: counted "
          "figures come from guest RDTSC loops and the hypervisor's summary; timed figures are "
          f"medians of {BUILD_REPEATS} builds or {BOOT_REPEATS} boots (docs/BENCHMARKS.md)")
EXIT_METHOD = "exits: least of 5 repeats per loop, less {ticks} tick per VM exit"
SWITCH_METHOD = ("world switch: a slice is time_slice TSC cycles, the hypervisor's time included "
                 "(VMX: a TSC deadline; SVM: a PIT period calibrated to it); mean over the guests of "
                 "(run + away) / (K N) - run / K - loop, with a bound on its error")
STORM_METHOD = ("exit storm: N - 1 compute victims and a guest that runs CPUID in a loop; a victim's "
                "share is the ticks of its own loops over K whole rounds of the scheduler, "
                f"reported for the least victim against {FAIR_FRACTION:g} / N")

# Code + rodata + rwdata per backend.  16 KiB held the world switch and the
# exit handlers; the private vCPU (its generated switch, XSETBV, CR and
# MSR emulation), restarts and the hardware checks took VMX to 16.6 KiB,
# and the virtual PC of the next issues adds device models: 24 KiB keeps
# the hypervisor a few pages, still readable in an afternoon (the number of
# assembly lines is reported beside it).
CODE_AND_DATA_BUDGET = 24 * 1024


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scaled:
    """One scaling point of one backend: its build times, image and boots."""

    guests: int
    build_seconds: list[float]      # empty: not timed
    image_bytes: int
    boots: list[runs.Boot]

    @property
    def lines(self) -> list[str]:
        return self.boots[0].lines


def up_patterns(guests: int) -> tuple[str, ...]:
    """Each guest's first line, in the order the guests first run."""
    return tuple(rf"\[{name}\] up\r?\n" for name in configs.guest_names(guests))


def measure_scaling(work: Path, backend: str, guests: int) -> Scaled:
    directory = work / backend / f"guests{guests}"
    directory.mkdir(parents=True)
    toml = directory / "hv.toml"
    toml.write_text(configs.scaling(guests, backend))
    builds = BUILD_REPEATS if backend == TIMED_BACKEND else 1
    progress(f"{backend}: {guests} guests: hvbuild x{builds}")
    seconds = [runs.hvbuild(toml, directory / "out") for _ in range(builds)]
    elf = directory / "out" / "hv.elf"
    target = runs.BACKEND_TARGETS[backend]
    repeats = BOOT_REPEATS if guests == MAIN_GUESTS else 1
    progress(f"{backend}: {guests} guests: boot x{repeats} on {target.name}")
    boots = [runs.boot(elf, target, up_patterns(guests)) for _ in range(repeats)]
    if any(boot.lines != boots[0].lines for boot in boots):
        raise BenchError(f"{backend}, {guests} guests: the console differs between runs: "
                         "Bochs is not deterministic")
    ran = figures.backend(boots[0].lines)
    if ran != backend:
        raise BenchError(f"an image built for {backend} ran the {ran} backend on {target.name}")
    return Scaled(guests, seconds if backend == TIMED_BACKEND else [], elf.stat().st_size, boots)


def scaling_row(point: Scaled, backend: str) -> ScalingRow:
    found = figures.records(point.lines)
    boot = figures.boot_cost(found, figures.summaries(point.lines))
    switch = figures.world_switch(found, backend)
    exits = figures.exit_costs(found, backend)
    return ScalingRow(
        guests=point.guests,
        build_s=round(statistics.median(point.build_seconds), 3) if point.build_seconds else None,
        image_bytes=point.image_bytes, first_entry=boot.first_entry, all_up=boot.all_up,
        cpuid=exits["cpuid"].instructions, world_switch=switch.instructions,
        switch_error=switch.error, jitter=switch.jitter,
        fairness=round(figures.fairness_deviation(figures.fairness(found)), 6),
        disturbed=sum(cost.disturbed for cost in exits.values()))


def measure_kernel(work: Path, backend: str, bare_elf: Path) -> tuple[int, int]:
    """(guest ticks, bare ticks) of the compute kernel under `backend` and
    bare, both on the backend's target; checks both checksums."""
    directory = work / backend / "kernel"
    directory.mkdir(parents=True)
    toml = directory / "hv.toml"
    toml.write_text(configs.kernel(backend))
    target = runs.BACKEND_TARGETS[backend]
    progress(f"{backend}: compute kernel in a guest, then bare, on {target.name}")
    runs.hvbuild(toml, directory / "out")
    guest = figures.kernel_ticks(figures.records(runs.boot(directory / "out" / "hv.elf", target).lines))
    alone = figures.kernel_ticks(figures.records(runs.boot(bare_elf, target, hypervisor=False).lines))
    expected = figures.kernel_checksum()
    for where, (_, checksum) in (("guest", guest), ("bare", alone)):
        if checksum != expected:
            raise BenchError(f"{backend}: the {where} kernel's checksum is {checksum:#x}, "
                             f"not {expected:#x}")
    return guest[0], alone[0]


def measure_storm(work: Path, backend: str, guests: int) -> figures.StormShare:
    """The victims' shares beside an exit storm: guests - 1 victims and the
    storm, booted once (runs are deterministic) on the backend's target."""
    directory = work / backend / f"storm{guests}"
    directory.mkdir(parents=True)
    toml = directory / "hv.toml"
    toml.write_text(configs.storm(guests, backend))
    target = runs.BACKEND_TARGETS[backend]
    progress(f"{backend}: exit storm beside {guests - 1} victims on {target.name}")
    runs.hvbuild(toml, directory / "out")
    lines = runs.boot(directory / "out" / "hv.elf", target).lines
    ran = figures.backend(lines)
    if ran != backend:
        raise BenchError(f"an image built for {backend} ran the {ran} backend on {target.name}")
    return figures.storm_shares(figures.records(lines))


SHARE_DEVIATION_TARGET = 2     # %: each guest's part of the CPU off its share's, at most
SHARE_METHOD = ("CPU shares: guests with shares 1, 3, 2, 4, ... (and, exit-heavy, a CPUID storm with "
                "share 1) each measure the ticks of their own loops over a window of whole rounds; "
                "reported: the worst guest's part of the CPU off share / sum of shares")


def measure_shares(work: Path, backend: str, guests: int, mix: str) -> float:
    """The worst departure of a guest's part of the CPU from its share's
    (bench/configs.py shares), one deterministic boot on the backend's target."""
    directory = work / backend / f"shares-{mix}{guests}"
    directory.mkdir(parents=True)
    toml = directory / "hv.toml"
    toml.write_text(configs.shares(guests, mix, backend))
    target = runs.BACKEND_TARGETS[backend]
    progress(f"{backend}: CPU shares, {guests} guests, {mix} mix, on {target.name}")
    runs.hvbuild(toml, directory / "out")
    lines = runs.boot(directory / "out" / "hv.elf", target).lines
    ratios = figures.weighted_shares(figures.records(lines), configs.share_weights(guests, mix),
                                     configs.share_total(guests, mix))
    return figures.share_deviation(ratios)


def share_figures(deviations: dict[tuple[int, str], float]) -> list[Figure]:
    return [Figure(f"share_deviation_{mix}_{guests}", f"CPU shares: worst guest off its share ({guests} "
                   f"guests, {'compute' if mix == 'compute' else 'with an exit storm'})",
                   round(100 * deviation, 4), "%", False, Target("<=", SHARE_DEVIATION_TARGET))
            for (guests, mix), deviation in deviations.items()]


def storm_figures(storms: list[figures.StormShare]) -> list[Figure]:
    """Per number of guests, the least share of a victim beside the storm,
    against FAIR_FRACTION of a fair share (1/N)."""
    return [Figure(f"storm_victim_share_{storm.guests}",
                   f"victim's share beside an exit storm ({storm.guests} guests)",
                   round(100 * storm.worst, 4), "%", False,
                   Target(">=", round(100 * FAIR_FRACTION / storm.guests, 4)),
                   round(100 * storm.errors[storm.victim], 4))
            for storm in storms]


def size_figures(size: Sizes) -> list[Figure]:
    return [
        Figure("code_bytes", "hypervisor code", size.code, "bytes", False),
        Figure("text_bytes", "code + symbol table", size.text, "bytes", False),
        Figure("rodata_bytes", "rodata (not per guest)", size.rodata, "bytes", False),
        Figure("rwdata_bytes", "rwdata (not per guest)", size.rwdata, "bytes", False),
        Figure("code_data_bytes", "code + rodata + rwdata", size.code_and_data, "bytes", False,
               Target("<=", CODE_AND_DATA_BUDGET)),
        Figure("stack_bytes", "stacks", size.stacks, "bytes", False),
        Figure("table_bytes", "hv page tables + exit bitmaps", size.tables, "bytes", False),
        Figure("per_guest_bytes", "per-guest overhead", size.per_guest, "bytes", False),
        Figure("image_bytes", "hv.elf, default config", size.image, "bytes", False),
        Figure("reserved_bytes", "machine memory below the guests", size.reserved, "bytes", False),
    ]


def backend_figures(backend: str, points: list[Scaled], rows: list[ScalingRow],
                    kernel: tuple[int, int], storms: list[figures.StormShare],
                    shares: dict[tuple[int, str], float], size: Sizes) -> list[Figure]:
    main = next(p for p in points if p.guests == MAIN_GUESTS)
    widest = points[-1]
    found = figures.records(main.lines)
    exits = figures.exit_costs(found, backend)
    switch = figures.world_switch(found, backend)
    boot = figures.boot_cost(found, figures.summaries(main.lines))
    guest_ticks, bare_ticks = kernel
    n = f"{MAIN_GUESTS} guests"
    spread = (max(rows, key=lambda r: r.world_switch), min(rows, key=lambda r: r.world_switch))
    return [
        Figure("exit_cpuid", "CPUID round trip", exits["cpuid"].instructions, "hv instr", False,
               Target("<=", 100)),
        Figure("exit_hypercall_noop",
               f"hypercall no-op round trip ({HYPERCALL_INSTRUCTIONS[backend].upper()})",
               exits["hypercall"].instructions, "hv instr", False, Target("<=", 80)),
        Figure("exit_out_uart_scratch", "OUT to UART scratch (0x3FF)", exits["out"].instructions,
               "hv instr", False),
        Figure("exit_in_unclaimed", "IN from unclaimed port (0x80)", exits["in"].instructions,
               "hv instr", False),
        Figure("world_switch", f"world switch at slice end ({n})", switch.instructions, "hv instr",
               False, Target("<=", 400), switch.error),
        Figure("fairness_deviation", f"fairness: worst share off 1/N ({widest.guests} guests)",
               100 * rows[-1].fairness, "%", False, Target("<=", 3)),
        Figure("switch_overhead", f"CPU time in world switches ({widest.guests} guests)",
               round(100 * figures.switch_overhead(figures.records(widest.lines)), 4), "%", False),
        *storm_figures(storms),
        *share_figures(shares),
        Figure("cpuid_spread", f"CPUID cost spread, {points[0].guests}-{widest.guests} guests",
               max(r.cpuid for r in rows) - min(r.cpuid for r in rows), "hv instr", False,
               Target("<=", 1)),
        Figure("world_switch_spread", f"switch cost spread, {points[0].guests}-{widest.guests} guests",
               spread[0].world_switch - spread[1].world_switch, "hv instr", False, Target("<=", 1),
               spread[0].switch_error + spread[1].switch_error),
        Figure("kernel_guest_ticks", "compute kernel in a guest", guest_ticks, "ticks", False),
        Figure("kernel_bare_ticks", "compute kernel bare", bare_ticks, "ticks", False),
        Figure("slowdown_ratio", "slowdown ratio bare/guest", round(bare_ticks / guest_ticks, 5), "",
               False, Target(">=", 0.99)),
        Figure("boot_first_entry", f"boot: first guest's first entry ({n})", boot.first_entry,
               "cycles", False),
        Figure("boot_all_up", f"boot: every guest's first line out ({n})", boot.all_up, "cycles", False),
        *size_figures(size),
        Figure("boot_wall_s", f"emulator start to every first line ({n})",
               round(statistics.median(b.seconds_to_up for b in main.boots), 3), "s", True),
    ]


def measure_qemu_boot(work: Path) -> list[float]:
    """Wall time to every first line of the two-guest SVM image on QEMU's
    software CPU, the target `make run` uses on machines without hardware
    virtualization (no counted figures: see docs/BENCHMARKS.md)."""
    elf = work / "svm" / f"guests{MAIN_GUESTS}" / "out" / "hv.elf"
    target = runs.TARGETS["qemu"]
    progress(f"svm: {MAIN_GUESTS} guests: boot x{BOOT_REPEATS} on {target.name}")
    return [runs.boot(elf, target, up_patterns(MAIN_GUESTS)).seconds_to_up for _ in range(BOOT_REPEATS)]


def shared_figures(default_build: list[float], widest_build: ScalingRow, both: Sizes,
                   hv_lines: int, qemu_boot: list[float]) -> list[Figure]:
    return [
        Figure("code_data_bytes", "code + rodata + rwdata, both backends", both.code_and_data, "bytes",
               False),
        Figure("image_bytes", "hv.elf, default config, both backends", both.image, "bytes", False),
        Figure("source_lines", "hypervisor assembly lines (hv/, boot/)", hv_lines, "lines", False),
        Figure("hvbuild_default_s", "hvbuild, default config", round(statistics.median(default_build), 3),
               "s", True, Target("<", 1)),
        Figure("hvbuild_32_s", f"hvbuild, {widest_build.guests} guests ({TIMED_BACKEND})",
               widest_build.build_s, "s", True, Target("<", 3)),
        Figure("qemu_boot_wall_s", f"emulator start to every first line ({MAIN_GUESTS} guests, svm on qemu)",
               round(statistics.median(qemu_boot), 3), "s", True),
    ]


LINUX_SLOWDOWN_TARGET = 1.05   # a user-space compute loop under the hypervisor, against bare


def linux_section(commit: str, measured: dict[str, object]) -> Section:
    """bench/linux.py's figures: virtual time under QEMU -icount, counted."""
    runs_by_count: dict[int, linux.LinuxRun] = measured["runs"]      # type: ignore[assignment]
    bare_run: linux.LinuxRun = measured["bare"]                       # type: ignore[assignment]
    ms = 1000
    found = [
        Figure("linux_init_ms", "small kernel, power-on to /init (1 guest, virtual ms)",
               round(runs_by_count[1].init_s[0] * ms), "ms", False, error=linux.CENTISECOND * ms),
        Figure("linux_bare_init_ms", "the same kernel bare, QEMU's loader, to /init (virtual ms)",
               round(bare_run.init_s[0] * ms), "ms", False, error=linux.CENTISECOND * ms),
        Figure("linux_slowdown", "user-space compute loop, under the hypervisor / bare",
               round(measured["slowdown"], 3), "x", False, Target("<=", LINUX_SLOWDOWN_TARGET),
               error=round(measured["slowdown_error"], 3)),
    ]
    to_init: linux.LinuxRun = measured["to_init"]                     # type: ignore[assignment]
    found.append(Figure("linux_init_exits", "VM exits, power-on to /init (1 guest)", sum(to_init.exits),
                        "exits", False))
    for reason, count in sorted(to_init.by_reason.items(), key=lambda item: -item[1]):
        found.append(Figure(f"linux_init_exits_{reason.lower()}", f"  of which {reason}", count, "exits",
                            False))
    for guests, run_ in runs_by_count.items():
        found.append(Figure(f"linux_{guests}_last_init_ms", f"{guests} Linux guests: the last /init (virtual ms)",
                            round(max(run_.init_s) * ms), "ms", False, error=linux.CENTISECOND * ms))
        found.append(Figure(f"linux_{guests}_exits", f"{guests} Linux guests: VM exits per guest, boot to power-off",
                            round(statistics.mean(run_.exits)), "exits", False))
    context = {"commit": commit, "target": linux.TARGET.name, "kernel": measured["kernel"],
               "work_rounds": measured["work_rounds"], "method": linux.__doc__.split("\n\n")[0]}
    return Section("linux", f"Linux guests: target {linux.TARGET.name} (-icount: virtual time counts "
                   f"instructions), the small test kernel", context, found, [])


def backend_section(backend: str, commit: str, measured: list[Figure], rows: list[ScalingRow]) -> Section:
    target = runs.BACKEND_TARGETS[backend]
    method = (f"{METHOD}; {EXIT_METHOD.format(ticks=figures.EXIT_TICKS[backend])}; "
              f"{SWITCH_METHOD}; {STORM_METHOD}; {SHARE_METHOD}")
    context = {"commit": commit, "target": target.name, "bochs_cpu": target.cpu_model,
               "backend": backend, "time_slice": config.DEFAULT_TIME_SLICE, "method": method}
    title = (f"backend {backend}: target {target.name} (Bochs cpu {target.cpu_model}), "
             f"image built with backend = \"{backend}\"")
    return Section(backend, title, context, measured, rows)


def run() -> int:
    start = time.monotonic()
    points: dict[str, list[Scaled]] = {}
    kernels: dict[str, tuple[int, int]] = {}
    storms: dict[str, list[figures.StormShare]] = {}
    shares: dict[str, dict[tuple[int, str], float]] = {}
    with tempfile.TemporaryDirectory(prefix="hvbench-") as scratch:
        work = Path(scratch)
        progress(f"default config: hvbuild x{BUILD_REPEATS}")
        default_build = [runs.hvbuild(config.DEFAULT_CONFIG, work / "default")
                         for _ in range(BUILD_REPEATS)]
        bare_elf = bare.build(work)
        for backend in BACKENDS:
            points[backend] = [measure_scaling(work, backend, guests) for guests in configs.SCALING_GUESTS]
            kernels[backend] = measure_kernel(work, backend, bare_elf)
            storms[backend] = [measure_storm(work, backend, guests) for guests in configs.STORM_GUESTS]
            shares[backend] = {(guests, mix): measure_shares(work, backend, guests, mix)
                               for mix in configs.SHARE_MIXES for guests in configs.SHARE_GUESTS}
        qemu_boot = measure_qemu_boot(work)
    progress(f"linux: the small kernel with {', '.join(map(str, linux.GUEST_COUNTS))} guests, and bare, "
             f"on {linux.TARGET.name}")
    linux_measured = linux.measure()
    commit = report.git_commit()
    sections = []
    for backend in BACKENDS:
        rows = [scaling_row(point, backend) for point in points[backend]]
        measured = backend_figures(backend, points[backend], rows, kernels[backend], storms[backend],
                                   shares[backend], sizes(build.build(configs.default(backend))))
        sections.append(backend_section(backend, commit, measured, rows))
    templates = sorted((PROJECT_ROOT / "hv").rglob("*.s.j2")) + sorted((PROJECT_ROOT / "boot").rglob("*.s.j2"))
    timed_rows = next(section.scaling for section in sections if section.key == TIMED_BACKEND)
    shared = shared_figures(default_build, timed_rows[-1], sizes(build.build(configs.default("auto"))),
                            source_lines(templates), qemu_boot)
    sections.append(Section("shared", "hvbuild, and the image with both backends (backend = \"auto\", "
                            "the default)", {"commit": commit}, shared, []))
    sections.append(linux_section(commit, linux_measured))
    ticks = ", ".join(f"{backend} {figures.EXIT_TICKS[backend]}" for backend in BACKENDS)
    header = [f"hvbuild benchmark, commit {commit}, time slice {config.DEFAULT_TIME_SLICE:,} cycles",
              (f"hv instr: hypervisor instructions per round trip or switch (Bochs ticks less the "
               f"ticks Bochs charges per VM exit: {ticks}); ±: bound on a figure's error, none: exact; "
               "docs/BENCHMARKS.md")]
    print(report.table(sections, header), end="")
    report.write(report.results(sections, {"commit": commit, "time_slice": config.DEFAULT_TIME_SLICE,
                                           "method": METHOD}))
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
