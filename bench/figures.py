"""Turn what the benchmark guests and the hypervisor print into figures.

Pure functions over console lines; no emulator.  The guests
(guests/bench_*.s.j2) print records, one a line, as
``[guest] <record> <key> <value> <key> <value> ...``; values are decimal,
``0x`` hex, or a 64-bit TSC as ``0xHI:0xLO``.  In Bochs the TSC is the
machine's instruction counter, read alike by guests and hypervisor, so
every figure here is an exact count, but for the world switch and the
victims' shares beside an exit storm, which come with a bound on their
error (docs/BENCHMARKS.md says why and how).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder import guest_images

# Ticks Bochs charges per VM exit on top of the instructions the hypervisor
# executes (the exiting instruction's, or the timer event's), per backend,
# from hand-counted paths (docs/BENCHMARKS.md): VMX, the no-op VMCALL (77
# instructions, 78 ticks) and the preemption-timer slice end back to the
# same guest (80, 81); SVM, the no-op VMMCALL (69, 70) and the leaf-0
# CPUID (85, 86).
EXIT_TICKS = {"vmx": 1, "svm": 1}
# The longest path between two TSC reads of guests/bench_victim.s.j2's
# window, counted by hand (the away path, a new longest gap included): an
# away gap holds one such path of the victim's own instructions.
VICTIM_LOOP_MAX = 12

RECORD = re.compile(r"^(?:\[(?P<guest>[a-z][a-z0-9_-]*)\] )?"
                    r"(?P<kind>boot|slices|kernel|share|weighted|storm|exit-[a-z]+)"
                    r"(?P<fields>(?: [a-z-]+ [0-9a-fx:]+)+)$")
SUMMARY = re.compile(r"^\[hv\] summary: (?P<guest>[a-z][a-z0-9_-]*) .*, (?P<exits>\d+) VM exits, "
                     r"first entry at cycle (?P<first>\d+)$")
BANNER = re.compile(r"^\[hv\] hvbuild hypervisor: backend (?P<backend>[a-z]+),")


class BenchError(Exception):
    """A run did not print what the figures need; the message says what."""


@dataclass(frozen=True)
class Record:
    guest: str | None       # None: a line without a guest prefix (the bare machine)
    kind: str
    fields: dict[str, int]


@dataclass(frozen=True)
class Summary:
    guest: str
    exits: int
    first_entry: int        # TSC cycles from the hypervisor's first instruction


def parse_value(text: str) -> int:
    """A field value: decimal, 0x hex, or a 64-bit TSC written HI:LO."""
    if ":" in text:
        high, low = text.split(":")
        return int(high, 16) << 32 | int(low, 16)
    return int(text, 0)


def records(lines: list[str]) -> list[Record]:
    """The benchmark records among `lines`, in order."""
    found = []
    for line in lines:
        match = RECORD.match(line.rstrip())
        if match:
            tokens = match["fields"].split()
            fields = {key: parse_value(value) for key, value in zip(tokens[::2], tokens[1::2])}
            found.append(Record(match["guest"], match["kind"], fields))
    return found


def summaries(lines: list[str]) -> list[Summary]:
    """The hypervisor's summary lines, one per guest in config order."""
    return [Summary(m["guest"], int(m["exits"]), int(m["first"]))
            for m in map(SUMMARY.match, lines) if m]


def backend(lines: list[str]) -> str:
    for match in map(BANNER.match, lines):
        if match:
            return match["backend"]
    raise BenchError("the hypervisor printed no banner line naming its backend")


def of_kind(found: list[Record], kind: str) -> list[Record]:
    return [record for record in found if record.kind == kind]


@dataclass(frozen=True)
class ExitCost:
    kind: str
    ticks: float            # per round trip, as the guest's TSC saw it
    repeats: int
    disturbed: int          # repeats slower than the least: a time slice ended inside
    exit_ticks: int         # what Bochs charges per exit (EXIT_TICKS of the backend)

    @property
    def instructions(self) -> float:
        """Hypervisor instructions per round trip."""
        return self.ticks - self.exit_ticks


def exit_costs(found: list[Record], backend: str) -> dict[str, ExitCost]:
    """Per exit kind: (least loop with the exit - least loop without) / N.
    The least of each is kept separately: a slice end can hit either loop."""
    costs = {}
    for kind in dict.fromkeys(r.kind for r in found if r.kind.startswith("exit-")):
        repeats = of_kind(found, kind)
        iterations = {r.fields["n"] for r in repeats}
        if len(iterations) != 1:
            raise BenchError(f"{kind}: repeats disagree on the iteration count")
        least_with = min(r.fields["with"] for r in repeats)
        least_without = min(r.fields["without"] for r in repeats)
        disturbed = sum(1 for r in repeats
                        if r.fields["with"] != least_with or r.fields["without"] != least_without)
        name = kind.removeprefix("exit-")
        costs[name] = ExitCost(name, (least_with - least_without) / iterations.pop(),
                               len(repeats), disturbed, EXIT_TICKS[backend])
    return costs


@dataclass(frozen=True)
class WorldSwitch:
    ticks: float            # mean per switch over a round, as the guests' TSC saw it
    error: float            # bound on the distance to the true mean; 0: exact
    jitter: int             # largest spread of one guest's away gaps: 0 if every round is alike
    exit_ticks: int         # what Bochs charges per exit (EXIT_TICKS of the backend)

    @property
    def instructions(self) -> float:
        """Hypervisor instructions per switch between two guests."""
        return self.ticks - self.exit_ticks


def _slices(found: list[Record]) -> list[Record]:
    slices = of_kind(found, "slices")
    if not slices:
        raise BenchError("no guest printed its slices record")
    if len({r.fields["window"] for r in slices}) != 1:
        raise BenchError("the guests' slices records disagree on the window")
    return slices


def _jitter(slices: list[Record]) -> int:
    return max(r.fields["away-max"] - r.fields["away-min"] for r in slices)


def world_switch(found: list[Record], backend: str) -> WorldSwitch:
    """The mean cost of a slice-end switch, from the guests' windows: valid
    whatever ends a slice (VMX: a TSC deadline the VMX-preemption timer
    counts down to; SVM: the PIT's NMI), if every guest spins through its
    window.  A guest's window runs from its return after one away gap to
    its return after the K-th next, so it spans K rounds of N slices, each
    slice a guest's own time plus the switch into it: (run + away) / (K * N)
    is a slice with its switch.  The guest's own time per slice is run / K
    plus the one plain loop each away gap holds.  So

        switch = (run + away) / (K * N) - run / K - loop

    averaged over the guests (the average also takes out guests whose own
    time per slice differs: every window holds each guest's own slices).
    Not exact: where in its loop a guest is stopped is unknown, so a window
    is whole rounds only to within one loop (-5 to +8 ticks: the first loop
    of bench_slices is 6 instructions, the window's 9), which moves the
    mean by up to (loop - 1)(N - 1) / (K N); and the windows of successive
    guests hold rounds one slice apart, so slices of unequal length (SVM:
    PIT periods differ by one of Bochs' microseconds, the spread of the away
    gaps) move it by up to jitter (N - 1) / (2 K N)."""
    slices = _slices(found)
    guests = len(slices)
    window = slices[0].fields["window"]
    estimates = [(r.fields["run"] + r.fields["away"]) / (window * guests) - r.fields["run"] / window
                 - r.fields["loop"] for r in slices]
    jitter = _jitter(slices)
    loop = max(r.fields["loop"] for r in slices)
    error = ((loop - 1) + jitter / 2) * (guests - 1) / (window * guests)
    return WorldSwitch(sum(estimates) / guests, error, jitter, EXIT_TICKS[backend])


def cpu_shares(found: list[Record]) -> dict[str, float]:
    """Each guest's share of the CPU over its measured window: whole rounds
    in which every guest spun, so every guest's window holds the same rounds."""
    return {r.guest or "": r.fields["run"] / (r.fields["run"] + r.fields["away"])
            for r in of_kind(found, "slices")}


def fairness(found: list[Record]) -> dict[str, float]:
    """Each guest's share of the time the guests ran, times N: 1.0 is fair.
    The hypervisor's own time at slice ends is no guest's, so it does not
    count as unfairness (`switch_overhead` reports it)."""
    shares = cpu_shares(found)
    total = sum(shares.values())
    return {guest: len(shares) * share / total for guest, share in shares.items()}


def fairness_deviation(shares: dict[str, float]) -> float:
    """The largest departure of a guest's share from 1/N, as a fraction of 1/N."""
    return max(abs(share - 1) for share in shares.values())


def switch_overhead(found: list[Record]) -> float:
    """The fraction of the CPU that no guest had: the world switches."""
    return 1 - sum(cpu_shares(found).values())


@dataclass(frozen=True)
class StormShare:
    """The victims' shares of the CPU beside an exit storm."""

    guests: int                 # the victims and the storm
    shares: dict[str, float]    # each victim's share over its window (run / (run + away))
    errors: dict[str, float]    # bound on each share's distance to the true one
    storm_cpuids: int           # CPUIDs the storm executed

    @property
    def victim(self) -> str:
        """The victim with the least share."""
        return min(self.shares, key=self.shares.__getitem__)

    @property
    def worst(self) -> float:
        return self.shares[self.victim]


def storm_shares(found: list[Record]) -> StormShare:
    """Each victim's share of the CPU beside the storm, over K whole rounds
    of the scheduler: the ticks of its own loops over those of its window.
    The ticks its away gaps hold of its own instructions (one loop each) are
    counted as away, so a share is low by at most K * VICTIM_LOOP_MAX over
    the window: its error bound."""
    storms = of_kind(found, "storm")
    if len(storms) != 1:
        raise BenchError(f"expected one storm record, found {len(storms)}: the storm did not finish")
    victims = of_kind(found, "share")
    if not victims:
        raise BenchError("no victim printed its share record")
    if len({r.fields["rounds"] for r in victims}) != 1:
        raise BenchError("the victims' share records disagree on the rounds")
    shares, errors = {}, {}
    for record in victims:
        window = record.fields["run"] + record.fields["away"]
        shares[record.guest or ""] = record.fields["run"] / window
        errors[record.guest or ""] = record.fields["rounds"] * VICTIM_LOOP_MAX / window
    return StormShare(len(victims) + 1, shares, errors, storms[0].fields["cpuid"])


def weighted_shares(found: list[Record], weights: dict[str, int], total: int) -> dict[str, float]:
    """Each CPU-share guest's part of the CPU (guests/bench_share.s.j2: the
    ticks of its own loops over its window of whole rounds) over the part
    its share gives it, share / `total` (the sum of every guest's shares):
    1.0 is exact.  The hypervisor's time at a slice end counts against
    the guest it ends, so a ratio is a little under 1."""
    measured = {record.guest: record.fields["run"] / record.fields["window"]
                for record in of_kind(found, "weighted")}
    missing = sorted(set(weights) - set(measured))
    if missing:
        raise BenchError(f"no weighted record from {', '.join(missing)}")
    return {name: measured[name] / (weight / total) for name, weight in weights.items()}


def share_deviation(ratios: dict[str, float]) -> float:
    """The largest departure of a guest's part of the CPU from its share's,
    as a fraction of its share's."""
    return max(abs(ratio - 1) for ratio in ratios.values())


@dataclass(frozen=True)
class BootCost:
    first_entry: int        # the first guest's first VM entry, cycles after the hypervisor's start
    all_up: int             # cycles after the hypervisor's start when every guest's first line was out


def boot_cost(found: list[Record], summary: list[Summary]) -> BootCost:
    """The guests' TSC is the hypervisor's: the first guest's first
    instruction is (to the ~20 instructions of the launch path) its first
    VM entry, which the summary gives relative to the hypervisor's start."""
    boots = {r.guest: r.fields for r in of_kind(found, "boot")}
    if not summary or summary[0].guest not in boots:
        raise BenchError("the first guest printed no boot record, or the hypervisor no summary")
    first = summary[0]
    missing = [s.guest for s in summary if s.guest not in boots]
    if missing:
        raise BenchError(f"no boot record from {', '.join(missing)}")
    origin = boots[first.guest]["start"] - first.first_entry
    return BootCost(first.first_entry, max(fields["up"] for fields in boots.values()) - origin)


def kernel_ticks(found: list[Record]) -> tuple[int, int]:
    """(ticks, checksum) of the one kernel record."""
    kernels = of_kind(found, "kernel")
    if len(kernels) != 1:
        raise BenchError(f"expected one kernel record, found {len(kernels)}")
    return kernels[0].fields["ticks"], kernels[0].fields["checksum"]


def kernel_checksum() -> int:
    """What guests/bench_compute.s.j2 computes, recomputed here."""
    constants = guest_images.bench_kernel_constants(0)
    step, words = constants["BENCH_KERNEL_FILL_STEP"], constants["BENCH_KERNEL_WORDS"]
    stride = constants["BENCH_KERNEL_STRIDE"] // 4
    shift = constants["BENCH_KERNEL_PASS_SHIFT"] // 4
    mask = 0xFFFFFFFF
    total = 0
    for first in range(0, constants["BENCH_KERNEL_PASS_END"] // 4, shift):
        for index in range(first, first + constants["BENCH_KERNEL_STEPS"] * stride, stride):
            assert index < words
            total = (total + index * step) & mask
            total = (total << 5 | total >> 27) & mask
    return total
