"""Kinds of step that crash or derail an emulator rather than the
hypervisor, per target: `make fuzz` and CI's batch leave them out there
(`--with-emulator-gaps` puts them back), and docs/FUZZING.md ("What it
found") keeps each in view.  A kind is listed here only when the failure
was pinned on the emulator: its own crash or a CPU check it lacks."""

from __future__ import annotations

EMULATOR_GAPS: dict[str, dict[str, str]] = {
    "qemu": {
        "dr-write": "QEMU 7.2 segfaults after several programs that write debug registers (no single "
                    "program does it alone, so no regression case)",
        "plant-dr": "the same: it writes DR0-DR3 and DR7",
        "cr-write": "QEMU 7.2's software SVM takes a MOV CR0 that clears PG in long mode (a CPU raises "
                    "#GP, tests/harness.py EMULATOR_GAPS): the program runs off the rails until the "
                    "boot times out, a hang of its own",
        "cr-flip": "the same, when the flip clears CR0.PG",
    },
    "bochs-svm": {
        "cr-write": "bochs-svm-seed2-program2.json: Bochs' AMD model panics on a guest's MOV CR0 with "
                    "PG set and PE clear in long mode (a CPU raises #GP)",
        "cr-flip": "the same, when the flip clears CR0.PE",
    },
}


def skipped(target: str) -> frozenset[str]:
    """The kinds of step left out on `target`."""
    return frozenset(EMULATOR_GAPS.get(target, {}))
