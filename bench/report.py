"""The benchmark's output: a table on stdout and bench/results.json, in
sections: one per backend and the target it ran on, one for what they share.

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
    timed: bool             # a wall-clock median; otherwise a count
    target: Target | None = None
    error: float = 0.0      # bound on the distance to the true value; 0: exact (or timed)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "meets" if self.target.met_by(self.value) else "MISSES"


@dataclass(frozen=True)
class ScalingRow:
    guests: int
    build_s: float | None   # median hvbuild wall time; None: not timed for this backend
    image_bytes: int
    first_entry: int
    all_up: int
    cpuid: float
    world_switch: float
    switch_error: float     # bound on the world switch's distance to the true mean; 0: exact
    jitter: int             # largest spread of a guest's away gaps, ticks: 0 if every round is alike
    fairness: float         # largest departure from a fair share, fraction of 1/N
    disturbed: int          # exit repeats a slice end fell into (the least is kept)


@dataclass(frozen=True)
class Section:
    """One part of the report: a backend on its target, or what is shared."""

    key: str                # name in results.json
    title: str              # the table's heading
    context: dict[str, object]  # target, backend, method ... for results.json
    figures: list[Figure]
    scaling: list[ScalingRow]


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


def _value(figure: Figure) -> str:
    return _number(figure.value) + (f" ±{figure.error:.2g}" if figure.error else "")


def _figure_lines(figures: list[Figure], width: int) -> list[str]:
    lines = [f"{'figure':<{width}}  {'value':>16}  {'unit':<13} {'target':<10} {'':<6}  kind"]
    for figure in figures:
        lines.append(f"{figure.label:<{width}}  {_value(figure):>16}  {figure.unit:<13} "
                     f"{figure.target or ''!s:<10} {figure.verdict:<6}  "
                     f"{'timed' if figure.timed else 'counted'}")
    return lines


def _scaling_lines(scaling: list[ScalingRow]) -> list[str]:
    lines = ["scaling (counted but for build time):",
             (f"{'guests':>6} {'build s':>8} {'image bytes':>12} {'1st entry':>10} {'all up':>11} "
              f"{'CPUID':>6} {'switch':>7} {'±':>5} {'jitter':>6} {'fairness':>9}")]
    for row in scaling:
        build = "-" if row.build_s is None else f"{row.build_s:.2f}"
        error = f"{row.switch_error:.2f}" if row.switch_error else "0"
        lines.append(f"{row.guests:>6} {build:>8} {row.image_bytes:>12,} {row.first_entry:>10,} "
                     f"{row.all_up:>11,} {_number(row.cpuid):>6} {row.world_switch:>7.2f} {error:>5} "
                     f"{row.jitter:>6} {100 * row.fairness:>8.3f}%")
    for row in scaling:
        if row.disturbed:
            lines.append(f"note: {row.guests} guests: {row.disturbed} exit repeats disturbed by a slice end")
        if row.jitter and not row.switch_error:
            lines.append(f"note: {row.guests} guests: rounds not uniform (away gaps differ by {row.jitter} "
                         "ticks): the exact switch formula does not hold")
    return lines


def table(sections: list[Section], header: list[str]) -> str:
    width = max(len(f.label) for section in sections for f in section.figures)
    lines = list(header)
    for section in sections:
        lines += ["", f"== {section.title}", *_figure_lines(section.figures, width)]
        if section.scaling:
            lines += ["", *_scaling_lines(section.scaling)]
    return "\n".join(lines) + "\n"


def results(sections: list[Section], context: dict[str, object]) -> dict:
    """The JSON document: the shared context (commit, method), then per
    section its context (target, backend ...), each figure with its unit,
    kind, error bound and target, and its scaling rows."""
    return {
        **context,
        "sections": {
            section.key: {
                **section.context,
                "figures": {f.key: {"value": f.value, "unit": f.unit,
                                    "kind": "timed" if f.timed else "counted", "error": f.error,
                                    "target": str(f.target) if f.target else None,
                                    "meets_target": f.target.met_by(f.value) if f.target else None}
                            for f in section.figures},
                "scaling": [row.__dict__ for row in section.scaling],
            }
            for section in sections
        },
    }


def write(document: dict, path: Path = RESULTS) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")
