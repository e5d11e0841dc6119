"""Programs: seeded, reproducible sequences of steps.

A program is named by (seed, index): `generate(seed, index)` always gives
the same steps, on any machine (random.Random seeded with a string is
stable across Python versions and processes).  A campaign with seed S runs
programs (S, 0), (S, 1), ...; each boot runs a block of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fuzz.templates import TEMPLATES, Params

MIN_STEPS = 6
MAX_STEPS = 40


@dataclass(frozen=True)
class Step:
    """One template instance: its kind and its parameters, sorted by name."""

    kind: str
    params: tuple[tuple[str, int | str], ...]

    @classmethod
    def make(cls, kind: str, params: Params) -> Step:
        return cls(kind, tuple(sorted(params.items())))

    @property
    def args(self) -> Params:
        return dict(self.params)

    def to_json(self) -> dict[str, int | str]:
        return {"kind": self.kind, **self.args}

    @classmethod
    def from_json(cls, raw: dict[str, int | str]) -> Step:
        raw = dict(raw)
        kind = str(raw.pop("kind"))
        if kind not in TEMPLATES:
            raise ValueError(f"unknown step kind {kind!r}")
        return cls.make(kind, raw)


@dataclass(frozen=True)
class Program:
    seed: int
    index: int
    steps: tuple[Step, ...]


def generate(seed: int, index: int, memory: int) -> Program:
    """Program `index` of campaign `seed`, for an attacker with `memory`
    bytes.  A step that always stops the guest ends it."""
    rng = random.Random(f"hvfuzz:{seed}:{index}")
    names = list(TEMPLATES)
    weights = [TEMPLATES[name].weight for name in names]
    steps = []
    for _ in range(rng.randint(MIN_STEPS, MAX_STEPS)):
        template = TEMPLATES[rng.choices(names, weights)[0]]
        steps.append(Step.make(template.name, template.draw(rng, memory)))
        if template.ends:
            break
    return Program(seed, index, tuple(steps))
