"""The oracle: what one boot's console says about the hypervisor.

A pure function of the console lines (and whether the run timed out), so
that it is tested on fixed lines (tests/unit/test_fuzz.py).  It sorts what
went wrong into:

  crashes    the hypervisor failed: PANIC or fatal, the emulator ended
             without the power-off, a missing summary line, a timeout
             before the witness finished (it no longer scheduled);
  breaches   isolation failed: the witness disturbed (a beat missing or
             out of order, its checksum changed, its state not ok, no exit
             with code 0), or an attacker saw another's planted state;
  hangs      an attacker still ran when the run timed out though the
             witness had finished: most likely a program that loops;
  anomalies  the hypervisor kept running but did not keep its word to an
             attacker: programs skipped or repeated (restart counts),
             state left from before a restart, a single-step trap lost.

Crashes and breaches fail a campaign; hangs and anomalies are reported
with their programs.  It also counts what the boot did: programs run and
ended, stops by exit reason, VM exits, exceptions caught by vector.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from builder.run import POWER_OFF_LINE

HV = "[hv] "
PANIC_PREFIXES = ("[hv] PANIC", "[hv] fatal:")
STOP = re.compile(r"^\[hv\] (\S+) stopped: (.+?)(?:, exit \d+| at guest-physical |$)")
EXITED = re.compile(r"^\[hv\] (\S+) exited with code (\d+)$")
SUMMARY = re.compile(r"^\[hv\] summary: (\S+) (.*?), (\d+) VM exits")
GUEST_LINE = re.compile(r"^\[([a-z][a-z0-9_-]*)\] (.*)$")
BEAT = re.compile(r"^heartbeat (\d+)(?: checksum (0x[0-9a-fA-F]+) state (.+))?$")
PROGRAM_START = re.compile(r"program (\d+) start")
PROGRAM_END = re.compile(r"program (\d+) end: faults((?: \d+:\d+)*)(?: tf-lost (\d+))?")
PLANTED = re.compile(r"\b(breach|stale): (.+)$")
ALL_RAN = re.compile(r"all (\d+) programs ran")
CULPRITS = 8                    # programs named as suspects of one failure, latest first


@dataclass(frozen=True)
class Expectation:
    """What a boot was built to do."""

    witness: str
    beats: int
    attackers: dict[str, tuple[int, ...]]      # name -> its program indexes, in run order
    restart: bool                               # on_fault = "restart": one program per incarnation


@dataclass
class Verdict:
    programs_run: int = 0
    programs_ended: int = 0                     # reached their planned end
    stops: Counter = field(default_factory=Counter)
    exits: int = 0
    faults: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)        # e.g. "crash:panic", "breach:witness-beats"
    culprits: list[int] = field(default_factory=list)   # programs running before the first failure

    @property
    def failed(self) -> bool:
        return bool(self.crashes or self.breaches)


@dataclass
class _Attacker:
    started: list[tuple[int, int]] = field(default_factory=list)    # (program, line number)
    ended: list[int] = field(default_factory=list)
    all_ran: bool = False
    exit_code: int | None = None


def guest_lines(lines: list[str], name: str) -> list[tuple[int, str]]:
    prefix = f"[{name}] "
    return [(n, line[len(prefix):]) for n, line in enumerate(lines) if line.startswith(prefix)]


def judge(lines: list[str], expect: Expectation, timed_out: bool = False) -> Verdict:
    """The verdict on one boot's console."""
    verdict = Verdict()
    attackers = _read_attackers(lines, expect, verdict)
    first_failure = _check_hypervisor(lines, expect, timed_out, attackers, verdict)
    witness_failure = _check_witness(lines, expect, verdict)
    planted_failure = _check_planted(lines, expect, verdict)
    _check_attackers(expect, attackers, verdict, timed_out)
    for line in lines:
        stop = STOP.match(line)
        if stop:
            verdict.stops[stop.group(2)] += 1
        summary = SUMMARY.match(line)
        if summary:
            verdict.exits += int(summary.group(3))
    failures = [n for n in (first_failure, witness_failure, planted_failure) if n is not None]
    if failures:
        verdict.culprits = _suspects(expect, attackers, min(failures))
    return verdict


def _suspects(expect: Expectation, attackers: dict[str, _Attacker], at: int) -> list[int]:
    """The programs that may have caused a failure at line `at`: each
    attacker's last one started before it, then each one's next (it may
    have begun without a line out), then the older ones, latest first."""
    started = {name: [(n, p) for p, n in state.started if n <= at] for name, state in attackers.items()}
    last = sorted((runs[-1] for runs in started.values() if runs), reverse=True)
    following = [expect.attackers[name][len(runs)] for name, runs in started.items()
                 if len(runs) < len(expect.attackers[name])]
    older = sorted((run for runs in started.values() for run in runs[:-1]), reverse=True)
    suspects = []
    for program in [p for _, p in last] + following + [p for _, p in older]:
        if program not in suspects:
            suspects.append(program)
    return suspects[:CULPRITS]


def _read_attackers(lines: list[str], expect: Expectation, verdict: Verdict) -> dict[str, _Attacker]:
    attackers = {name: _Attacker() for name in expect.attackers}
    for name, state in attackers.items():
        for n, text in guest_lines(lines, name):
            start = PROGRAM_START.search(text)
            if start:
                state.started.append((int(start.group(1)), n))
            end = PROGRAM_END.search(text)
            if end:
                state.ended.append(int(end.group(1)))
                for pair in end.group(2).split():
                    vector, count = pair.split(":")
                    verdict.faults[int(vector)] += int(count)
                if end.group(3):
                    _note(verdict, "anomaly", "tf-lost",
                          f"{name}: program {end.group(1)}: a single-step trap after an emulated "
                          f"instruction was lost {end.group(3)} time(s)")
            if ALL_RAN.search(text):
                state.all_ran = True
        for line in lines:
            exited = EXITED.match(line)
            if exited and exited.group(1) == name:
                state.exit_code = int(exited.group(2))
        verdict.programs_run += len(state.started)
        verdict.programs_ended += len(state.ended)
    return attackers


def _note(verdict: Verdict, category: str, kind: str, text: str) -> None:
    {"crash": verdict.crashes, "breach": verdict.breaches, "hang": verdict.hangs,
     "anomaly": verdict.anomalies}[category].append(text)
    verdict.kinds.add(f"{category}:{kind}")


def _check_hypervisor(lines: list[str], expect: Expectation, timed_out: bool,
                      attackers: dict[str, _Attacker], verdict: Verdict) -> int | None:
    """Crashes and hangs; the line number of the first, or None."""
    first = None
    for n, line in enumerate(lines):
        if line.startswith(PANIC_PREFIXES):
            _note(verdict, "crash", "panic", f"hypervisor: {line[len(HV):]}")
            first = n if first is None else first
    powered_off = POWER_OFF_LINE in lines
    witness_done = any(EXITED.match(line) and EXITED.match(line).group(1) == expect.witness
                       for line in lines)
    if timed_out:
        running = [name for name, state in attackers.items()
                   if not state.all_ran and state.exit_code is None and _still_restartable(lines, name)]
        if witness_done and running:
            for name in running:
                last = attackers[name].started[-1][0] if attackers[name].started else None
                _note(verdict, "hang", "attacker-loop",
                      f"{name}: program {last} still ran when the boot timed out (the witness had "
                      "finished): a program that loops, or a hypervisor that stopped scheduling")
        else:
            beats = [b for b in _beats(lines, expect.witness)]
            _note(verdict, "crash", "timeout",
                  f"timeout: the witness had {len(beats)} of {expect.beats} beats and "
                  f"{'had' if witness_done else 'had not'} exited; the console ended with "
                  f"{lines[-1] if lines else 'nothing'!r}")
        first = len(lines) if first is None else first
    elif not powered_off:
        _note(verdict, "crash", "no-power-off",
              f"the emulator ended without {POWER_OFF_LINE!r}; the console ended with "
              f"{lines[-1] if lines else 'nothing'!r}")
        first = len(lines) if first is None else first
    if powered_off:
        summarised = {m.group(1) for m in map(SUMMARY.match, lines) if m}
        missing = [name for name in (expect.witness, *expect.attackers) if name not in summarised]
        if missing:
            _note(verdict, "crash", "summary", f"no summary line for {', '.join(missing)}")
            first = lines.index(POWER_OFF_LINE) if first is None else first
    return first


def _still_restartable(lines: list[str], name: str) -> bool:
    return not any(line.startswith(f"[hv] {name} stays stopped") for line in lines)


def _beats(lines: list[str], witness: str) -> list[tuple[int, re.Match]]:
    return [(n, m) for n, text in guest_lines(lines, witness) if (m := BEAT.match(text))]


def _check_witness(lines: list[str], expect: Expectation, verdict: Verdict) -> int | None:
    """Breaches the witness shows; the line number of the first, or None.
    Where the hypervisor crashed, the beats it never ran are the crash's,
    not a breach: only what the witness did see is judged."""
    beats = _beats(lines, expect.witness)
    first = None
    numbers = [int(m.group(1)) for _, m in beats]
    crashed = bool(verdict.crashes)
    if crashed:
        numbers_ok = numbers == list(range(1, len(numbers) + 1))
    else:
        numbers_ok = numbers == list(range(1, expect.beats + 1))
    if not numbers_ok:
        wrong = next((i for i, (a, b) in enumerate(zip(numbers, range(1, expect.beats + 1))) if a != b),
                     min(len(numbers), expect.beats))
        _note(verdict, "breach", "witness-beats",
              f"witness beats: expected 1 to {expect.beats} in order, got {_ranges(numbers)}")
        first = beats[wrong][0] if wrong < len(beats) else (beats[-1][0] if beats else 0)
    checksums = [(n, m.group(2)) for n, m in beats if m.group(2)]
    if len({c for _, c in checksums}) > 1:
        n, changed = next((n, c) for n, c in checksums if c != checksums[0][1])
        _note(verdict, "breach", "witness-checksum",
              f"witness checksum changed from {checksums[0][1]} to {changed} at {lines[n]!r}")
        first = n if first is None else min(first, n)
    for n, m in beats:
        if m.group(3) is not None and m.group(3) != "ok":
            _note(verdict, "breach", "witness-state", f"witness state disturbed: {lines[n]!r}")
            first = n if first is None else min(first, n)
            break
    code = next((int(m.group(2)) for m in map(EXITED.match, lines) if m and m.group(1) == expect.witness),
                None)
    if code != 0 and not (crashed and code is None):
        stop = next((line for line in lines if line.startswith(f"[hv] {expect.witness} stopped:")), None)
        why = stop or (f"it exited with code {code}" if code is not None else "it never exited")
        _note(verdict, "breach", "witness-exit", f"witness did not exit with code 0: {why}")
        first = next((n for n, line in enumerate(lines) if line == stop), len(lines)) if first is None else first
    return first


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    shown = ", ".join(map(str, numbers[:12]))
    return shown + (f", ... ({len(numbers)} in all)" if len(numbers) > 12 else "")


def _check_planted(lines: list[str], expect: Expectation, verdict: Verdict) -> int | None:
    """Planted state an attacker found; the line number of the first breach."""
    first = None
    for name in expect.attackers:
        program = None
        for n, text in guest_lines(lines, name):
            start = PROGRAM_START.search(text)
            if start:
                program = int(start.group(1))
            found = PLANTED.search(text)
            if not found:
                continue
            where = f"{name}: {'before' if found.group(1) == 'breach' and program is None else ''}" \
                    f"program {program}: {found.group(2)}"
            if found.group(1) == "breach":
                _note(verdict, "breach", "planted-state", where)
                first = n if first is None else first
            else:
                _note(verdict, "anomaly", "stale-state", f"{where} (left from before its restart)")
    return first


def _check_attackers(expect: Expectation, attackers: dict[str, _Attacker], verdict: Verdict,
                     timed_out: bool) -> None:
    """Anomalies in how the attackers' programs followed each other."""
    for name, expected in expect.attackers.items():
        state = attackers[name]
        ran = [program for program, _ in state.started]
        if not expect.restart:
            if ran != list(expected[:1]):
                _note(verdict, "anomaly", "programs", f"{name}: expected program {expected[0]}, ran {ran}")
            continue
        if ran != list(expected[:len(ran)]) or (not timed_out and ran != list(expected)):
            _note(verdict, "anomaly", "programs",
                  f"{name}: expected programs {expected[0]}-{expected[-1]} one per restart, ran "
                  f"{_ranges(ran)}")
        elif not timed_out and not (state.all_ran and state.exit_code == 0):
            _note(verdict, "anomaly", "attacker-end",
                  f"{name}: ran every program but did not exit with code 0 (exit code {state.exit_code})")
