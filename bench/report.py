"""The benchmark's output: a table on stdout and bench/results.json.

A figure is reported against its target; the benchmark never fails on a
missed target, it says so.
"""

from __future__ import annotations

import json
import operator
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.render import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results.json"
COMPARISONS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    comparison: str         # one of COMPARISONS
    bound: float

    def met_by(self, value: float) -> bool:
        return COMPARISONS[self.comparison](value, self.bound)

    def __str__(self) -> str:
        return f"{self.comparison} {self.bound:,g}"


@dataclass(frozen=True)
class Figure:
    key: str                # name in results.json
    label: str              # name in the table
    value: float
    unit: str
    timed: bool             # a wall-clock median; otherwise an exact count
    target: Target | None = None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "meets" if self.target.met_by(self.value) else "MISSES"


@dataclass(frozen=True)
class ScalingRow:
    guests: int
    build_s: float
    image_bytes: int
    first_entry: int
    all_up: int
    cpuid: float
    world_switch: float
    fairness: float         # largest departure from a fair share, fraction of 1/N
    disturbed: int          # exit repeats a slice end fell into (the least is kept)
    uniform: bool           # every measured round took the same ticks


def git_commit() -> str:
    """HEAD's commit, with "+dirty" when the tree has changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.6g}"


def table(figures: list[Figure], scaling: list[ScalingRow], header: list[str]) -> str:
    width = max(len(f.label) for f in figures)
    lines = [*header, "",
             f"{'figure':<{width}}  {'value':>14}  {'unit':<13} {'target':<10} {'':<6}  kind"]
    for figure in figures:
        lines.append(f"{figure.label:<{width}}  {_number(figure.value):>14}  {figure.unit:<13} "
                     f"{figure.target or ''!s:<10} {figure.verdict:<6}  "
                     f"{'timed' if figure.timed else 'counted'}")
    columns = (f"{'guests':>6} {'build s':>8} {'image bytes':>12} {'1st entry':>10} {'all up':>11} "
               f"{'CPUID':>6} {'switch':>7} {'fairness':>9}")
    lines += ["", "scaling (counted but for build time):", columns]
    for row in scaling:
        lines.append(f"{row.guests:>6} {row.build_s:>8.2f} {row.image_bytes:>12,} {row.first_entry:>10,} "
                     f"{row.all_up:>11,} {_number(row.cpuid):>6} {row.world_switch:>7.2f} "
                     f"{100 * row.fairness:>8.3f}%")
    for row in scaling:
        if row.disturbed or not row.uniform:
            lines.append(f"note: {row.guests} guests: {row.disturbed} exit repeats disturbed by a slice "
                         f"end; rounds {'' if row.uniform else 'not '}uniform")
    return "\n".join(lines) + "\n"


def results(figures: list[Figure], scaling: list[ScalingRow], context: dict[str, object]) -> dict:
    """The JSON document: the context (commit, target, method), then each
    figure with its unit, kind and target, then the scaling rows."""
    return {
        **context,
        "figures": {f.key: {"value": f.value, "unit": f.unit, "kind": "timed" if f.timed else "counted",
                            "target": str(f.target) if f.target else None,
                            "meets_target": f.target.met_by(f.value) if f.target else None}
                    for f in figures},
        "scaling": [row.__dict__ for row in scaling],
    }


def write(document: dict, path: Path = RESULTS) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")
