"""From a failing boot to a regression case: find the program that fails
alone, shrink it to the steps that still fail (delta debugging), write it
as a file under tests/fuzz_regressions/ that tests/boot/test_fuzz_boots.py
replays on every target.

A replay boot runs the program as attacker 0, beside the witness and an
observer (attacker 1, running empty programs that only check what they
see at entry and at the end), so that state the program plants in another
guest shows either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fuzz import guest
from fuzz.boot import BootResult, BootSpec, run_boot
from fuzz.generator import Step, generate
from fuzz.oracle import Verdict

REGRESSIONS = Path(__file__).resolve().parent.parent / "tests" / "fuzz_regressions"
OBSERVER_PROGRAMS = 4
REPLAY_WITNESS_BEATS = 8


@dataclass(frozen=True)
class Regression:
    """A minimal failing program and where it came from."""

    target: str
    seed: int
    index: int
    failure: tuple[str, ...]            # the verdict kinds it reproduces, e.g. "crash:panic"
    steps: tuple[Step, ...]
    open_on: tuple[str, ...]            # targets where it still fails: expected to fail there
    evidence: tuple[str, ...] = ()      # what the failing boot said (the oracle's lines, the emulator's)

    def to_json(self) -> str:
        return json.dumps({"found": f"python -m fuzz --seed {self.seed}: program {self.index} on {self.target}",
                           "target": self.target, "seed": self.seed, "index": self.index,
                           "failure": list(self.failure), "open_on": list(self.open_on),
                           "evidence": list(self.evidence),
                           "steps": [step.to_json() for step in self.steps]}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Regression:
        raw = json.loads(text)
        return cls(raw["target"], raw["seed"], raw["index"], tuple(raw["failure"]),
                   tuple(Step.from_json(step) for step in raw["steps"]), tuple(raw.get("open_on", ())),
                   tuple(raw.get("evidence", ())))

    @property
    def file_name(self) -> str:
        return f"{self.target}-seed{self.seed}-program{self.index}.json"


def load_regressions(directory: Path = REGRESSIONS) -> list[tuple[Path, Regression]]:
    return [(path, Regression.from_json(path.read_text())) for path in sorted(directory.glob("*.json"))]


def replay_spec(target: str, seed: int, index: int, steps: tuple[Step, ...], restart: bool,
                timeout: float, skip: frozenset[str] = frozenset()) -> BootSpec:
    """A boot of one program (as attacker 0) beside the witness and an observer."""
    return BootSpec(target, seed, index, OBSERVER_PROGRAMS if restart else 1, 2, restart, REPLAY_WITNESS_BEATS,
                    timeout, replay=steps, skip=skip)


def failure_kinds(verdict: Verdict | None) -> set[str]:
    """The kinds of a verdict that fail a campaign (crashes, breaches)."""
    return {kind for kind in (verdict.kinds if verdict else ()) if kind.startswith(("crash:", "breach:"))}


def ddmin(items: list, fails: Callable[[list], bool]) -> list:
    """Zeller's delta debugging: a 1-minimal sublist of `items` (order
    kept) for which `fails` holds; `fails(items)` must hold."""
    granularity = 2
    while len(items) >= 2:
        size = -(-len(items) // granularity)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        for chunk in chunks:
            if fails(chunk):
                items, granularity = chunk, 2
                break
        else:
            for i in range(len(chunks)):
                complement = [item for j, c in enumerate(chunks) if j != i for item in c]
                if fails(complement):
                    items, granularity = complement, max(granularity - 1, 2)
                    break
            else:
                if granularity >= len(items):
                    break
                granularity = min(len(items), granularity * 2)
    if len(items) == 1 and fails([]):
        return []
    return items


def minimize(result: BootResult, log: Callable[[str], None],
             runner: Callable[[BootSpec], BootResult] = run_boot) -> Regression | None:
    """The failing boot's smallest failing program, or None where no single
    suspect program fails alone (the failure needs the boot around it)."""
    spec, kinds = result.spec, failure_kinds(result.verdict)
    trials = 0
    evidence = []

    def fails(index: int, steps: list[Step]) -> bool:
        nonlocal trials
        trials += 1
        replayed = runner(replay_spec(spec.target, spec.seed, index, tuple(steps), spec.restart, spec.timeout,
                                      spec.skip))
        hit = bool(failure_kinds(replayed.verdict) & kinds)
        if hit and replayed.verdict:
            said = [line for line in replayed.emulator_log if "PANIC" in line]
            evidence[:] = [*(replayed.verdict.crashes + replayed.verdict.breaches)[:3], *said[-1:]]
        log(f"minimize {spec.target} seed {spec.seed} program {index}: trial {trials}, {len(steps)} steps: "
            f"{'fails' if hit else 'passes'}")
        return hit

    for index in result.verdict.culprits:
        steps = list(generate(spec.seed, index, guest.MEMORY).steps)
        if not fails(index, steps):
            continue
        minimal = ddmin(steps, lambda subset, index=index: fails(index, subset))
        return Regression(spec.target, spec.seed, index, tuple(sorted(kinds)), tuple(minimal), (spec.target,),
                          tuple(evidence))
    return None


def write(regression: Regression, directory: Path = REGRESSIONS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / regression.file_name
    path.write_text(regression.to_json())
    return path
