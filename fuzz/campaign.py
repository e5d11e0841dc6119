"""A campaign: boots handed to workers, a progress line per finished boot,
a summary at the end.

Workers are local processes (concurrent.futures), a Dask LocalCluster, or
the workers of a Dask distributed scheduler anywhere on the network: the
same `fuzz.boot.run_boot` runs in each, and only its results come back.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fuzz import gaps
from fuzz.boot import BootResult, BootSpec, run_boot

STILL_RUNNING_S = 30            # a line at least this often while boots are in flight
VECTOR_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
                19: "#XM", 20: "#VE", 21: "#CP"}


class DaskMissing(Exception):
    pass


def progress(message: str) -> None:
    print(f"fuzz: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """Which boots a campaign runs: boot b has programs from b * per_boot;
    with a duration, boots go on until it is spent."""

    targets: tuple[str, ...]
    seed: int
    programs_per_attacker: int
    attackers: int
    restart: bool
    witness_beats: int
    timeout: float
    count: int | None                   # programs per target; None: until `duration`
    duration: float | None              # seconds
    skip: frozenset[str] = frozenset()
    digest: str | None = None           # checked by remote workers: the same sources everywhere
    emulator_gaps: bool = False         # run the kinds fuzz/gaps.py leaves out too

    @property
    def per_boot(self) -> int:
        return self.programs_per_attacker * self.attackers

    @property
    def boots_per_target(self) -> int | None:
        return None if self.count is None else -(-self.count // self.per_boot)

    def specs(self):
        """Every boot's spec, in order (endless with a duration)."""
        boots = range(self.boots_per_target) if self.count is not None else itertools.count()
        for boot in boots:
            for target in self.targets:
                skip = self.skip if self.emulator_gaps else self.skip | gaps.skipped(target)
                yield BootSpec(target, self.seed, boot * self.per_boot, self.programs_per_attacker,
                               self.attackers, self.restart, self.witness_beats, self.timeout,
                               skip=skip, digest=self.digest)


@dataclass
class Tally:
    """What a campaign's boots add up to, per target."""

    boots: int = 0
    programs: int = 0
    ended: int = 0
    exits: int = 0
    seconds: float = 0.0
    stops: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, result: BootResult) -> None:
        self.boots += 1
        self.seconds += result.seconds
        where = f"seed {result.spec.seed}, programs {result.spec.indexes.start}-{result.spec.indexes.stop - 1}"
        if result.error or result.verdict is None:
            self.errors.append(f"{where}: {result.error}")
            return
        verdict = result.verdict
        self.programs += verdict.programs_run
        self.ended += verdict.programs_ended
        self.exits += verdict.exits
        self.stops.update(verdict.stops)
        self.faults.update(verdict.faults)
        suspects = f" (suspects: programs {', '.join(map(str, verdict.culprits))})" if verdict.culprits else ""
        said = emulator_reason(result.emulator_log)
        if said:
            suspects += f"; the emulator said: {said}"
        for kind in ("crashes", "breaches", "hangs", "anomalies"):
            getattr(self, kind).extend(f"{where}: {text}{suspects if kind in ('crashes', 'breaches') else ''}"
                                       for text in getattr(verdict, kind))


def emulator_reason(log: list[str]) -> str | None:
    """The emulator's own word on why it ended, from its log's last lines."""
    said = [line.strip() for line in log if "PANIC" in line or "error" in line.lower()]
    status = [line for line in log if line.startswith("(the emulator")]
    if status and re.search(r"status: -\d+", status[-1]):
        said.append(f"{status[-1]} (killed by signal {status[-1].split('-')[-1].rstrip(')')})")
    return said[-1] if said else None


class Workers:
    """Where boots run; `submit` calls `done(result)` from any thread."""

    def __init__(self, workers: int, scheduler: str | None, dask_local: bool) -> None:
        self.client = self.cluster = self.pool = None
        if scheduler or dask_local:
            try:
                from dask.distributed import Client, LocalCluster
            except ImportError:
                raise DaskMissing("Dask distributed is not installed: pip install -e '.[fuzz]' "
                                  "(or: pip install 'dask[distributed]')") from None
            if scheduler:
                self.client = Client(scheduler)
                self.where = f"Dask scheduler {scheduler} ({len(self.client.scheduler_info()['workers'])} workers)"
            else:
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
                self.where = f"Dask LocalCluster, {workers} workers"
        else:
            self.pool = ProcessPoolExecutor(max_workers=workers)
            self.where = f"{workers} local processes"
        self.slots = workers if not scheduler else max(1, sum(
            w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))

    def submit(self, spec: BootSpec, done) -> None:
        if self.client is not None:
            future = self.client.submit(run_boot, spec, pure=False)
        else:
            future = self.pool.submit(run_boot, spec)
        future.add_done_callback(lambda f: done(_result(f, spec)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _result(future, spec: BootSpec) -> BootResult:
    """A finished task's result; a task that failed on its worker (it could
    not import fuzz, the worker died) is a boot that did not run."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - whatever the worker raised, the campaign goes on
        return BootResult(spec, error=f"the worker failed: {type(error).__name__}: {error}")


def run(plan: Plan, workers: Workers, on_result=None) -> dict[str, Tally]:
    """Run the plan's boots, at most workers.slots at a time; print a line
    per finished boot.  `on_result(result)` sees each result as it comes."""
    finished: queue.Queue = queue.Queue()
    tallies = {target: Tally() for target in plan.targets}
    specs = plan.specs()
    start = time.monotonic()
    in_flight: dict[int, tuple[BootSpec, float]] = {}
    submitted = 0
    total = None if plan.count is None else plan.boots_per_target * len(plan.targets)

    def more_time() -> bool:
        return plan.duration is None or time.monotonic() - start < plan.duration

    def submit_next() -> bool:
        nonlocal submitted
        spec = next(specs, None)
        if spec is None or not more_time():
            return False
        key = submitted
        submitted += 1
        in_flight[key] = (spec, time.monotonic())
        workers.submit(spec, lambda result: finished.put((key, result)))
        return True

    while len(in_flight) < workers.slots and submit_next():
        pass
    done_boots = 0
    while in_flight:
        try:
            key, result = finished.get(timeout=STILL_RUNNING_S)
        except queue.Empty:
            oldest = min(t for _, t in in_flight.values())
            progress(f"{len(in_flight)} boots in flight, the oldest for {time.monotonic() - oldest:.0f} s; "
                     f"{_elapsed(time.monotonic() - start)} elapsed")
            continue
        del in_flight[key]
        done_boots += 1
        tallies[result.spec.target].add(result)
        if on_result:
            on_result(result)
        progress(_line(result, done_boots, total, tallies, plan, time.monotonic() - start))
        submit_next()
    return tallies


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def _line(result: BootResult, done: int, total: int | None, tallies: dict[str, Tally], plan: Plan,
          elapsed: float) -> str:
    spec = result.spec
    programs = sum(t.programs for t in tallies.values())
    crashes = sum(len(t.crashes) for t in tallies.values())
    breaches = sum(len(t.breaches) for t in tallies.values())
    hangs = sum(len(t.hangs) for t in tallies.values())
    if total is not None:
        left = elapsed / done * (total - done)
        where = f"boot {done}/{total}"
    else:
        left = max(0.0, plan.duration - elapsed)
        where = f"boot {done}"
    verdict = result.verdict
    if result.error:
        outcome = "ERROR (see the summary)"
    elif verdict.failed:
        outcome = "FAILED: " + "; ".join((verdict.crashes + verdict.breaches)[:2])[:300]
    elif verdict.hangs:
        outcome = "hang: " + verdict.hangs[0][:200]
    else:
        outcome = f"{verdict.programs_run} programs ok"
    return (f"{where} {spec.target} programs {spec.indexes.start}-{spec.indexes.stop - 1} "
            f"({result.seconds:.1f} s): {outcome} | {programs} programs, {_elapsed(elapsed)} elapsed, "
            f"~{_elapsed(left)} left, crashes {crashes}, breaches {breaches}, hangs {hangs}")


def summary(plan: Plan, tallies: dict[str, Tally], seconds: float, where: str) -> str:
    """The campaign's summary, for a person."""
    out = [(f"fuzz summary: seed {plan.seed}, {plan.attackers} attackers x {plan.programs_per_attacker} "
           f"programs per boot beside the witness, {where}, {_elapsed(seconds)} wall time")]
    for target, tally in tallies.items():
        rate = tally.programs / seconds * 60 if seconds else 0.0
        out += [(f"target {target}: {tally.boots} boots, {tally.programs} programs "
                f"({tally.ended} reached their end, {tally.programs - tally.ended} stopped earlier), "
                f"{rate:.0f} programs/min"),
                "  stops by exit reason: " + (", ".join(f"{reason} {count}" for reason, count
                                                        in tally.stops.most_common()) or "none"),
                f"  VM exits: {tally.exits:,} (the hypervisor's summary lines)",
                "  exceptions caught by the attackers: " + (", ".join(
                    f"{VECTOR_NAMES.get(v, f'vector {v}')} {c}" for v, c in sorted(tally.faults.items()))
                    or "none"),
                f"  crashes: {len(tally.crashes)}", *(f"    {line}" for line in tally.crashes),
                f"  breaches: {len(tally.breaches)}", *(f"    {line}" for line in tally.breaches),
                f"  hangs: {len(tally.hangs)}", *(f"    {line}" for line in tally.hangs),
                f"  anomalies: {len(tally.anomalies)}", *(f"    {line}" for line in tally.anomalies[:20]),
                *([f"    ... {len(tally.anomalies) - 20} more"] if len(tally.anomalies) > 20 else []),
                *([f"  errors (boots that did not run): {len(tally.errors)}"]
                  + [f"    {line}" for line in tally.errors] if tally.errors else [])]
    return "\n".join(out) + "\n"


def save_failure(result: BootResult, directory: Path) -> Path:
    """Write a failing or hanging boot's console and verdict; the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = result.spec
    path = directory / f"{spec.target}-seed{spec.seed}-programs{spec.indexes.start}-{spec.indexes.stop - 1}.json"
    verdict = result.verdict
    path.write_text(json.dumps({
        "target": spec.target, "seed": spec.seed, "programs": [spec.indexes.start, spec.indexes.stop - 1],
        "programs_per_attacker": spec.programs, "attackers": spec.attackers, "restart": spec.restart,
        "timed_out": result.timed_out, "crashes": verdict.crashes, "breaches": verdict.breaches,
        "hangs": verdict.hangs, "anomalies": verdict.anomalies, "suspects": verdict.culprits,
        "console": result.lines, "emulator_log": result.emulator_log}, indent=1) + "\n")
    return path
