"""`python -m fuzz` (`make fuzz`): run a campaign, print a line per boot and
a summary, minimise what failed into tests/fuzz_regressions/.

Exit status: 0 when no boot crashed the hypervisor or breached isolation,
1 when one did, 2 for a usage error.  docs/FUZZING.md explains the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from builder.errors import BuildError
from builder.render import PROJECT_ROOT
from builder.run import EMULATOR_COMMANDS, TARGETS
from fuzz import boot, campaign, guest, minimize
from fuzz.generator import generate
from fuzz.templates import TEMPLATES

FUZZ_TARGETS = ("bochs", "qemu", "bochs-svm")
DEFAULT_PROGRAMS = 40               # per attacker per boot: one per restart
DEFAULT_ATTACKERS = 2
MAX_PROGRAMS = 100                  # what fits below the attacker's start-up tables
MINIMIZE_AT_MOST = 3                # failures minimised per campaign (each takes tens of boots)
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)")


def duration(text: str) -> float:
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (write e.g. 90s, 10m, 2h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--count", type=int, help="programs to run on each target")
    amount.add_argument("--duration", type=duration, help="run boots until this much time is spent "
                        "(e.g. 90s, 10m, 2h); default 5m")
    p.add_argument("--seed", type=int, help="campaign seed (default: from the clock, printed)")
    p.add_argument("--target", choices=(*FUZZ_TARGETS, "all"), default="all",
                   help="where the boots run (default: all three)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="boots at a time (default: the CPU count); with --scheduler, the cluster's")
    p.add_argument("--programs", type=int, default=DEFAULT_PROGRAMS,
                   help=f"programs per attacker per boot (default {DEFAULT_PROGRAMS})")
    p.add_argument("--attackers", type=int, default=DEFAULT_ATTACKERS,
                   help=f"attacker guests per boot (default {DEFAULT_ATTACKERS})")
    p.add_argument("--no-restart", action="store_true",
                   help="one program per attacker per boot, without on_fault = \"restart\"")
    p.add_argument("--skip", action="append", default=[], metavar="KIND",
                   help="leave out steps of this kind (a known failure), e.g. --skip single-step; repeatable")
    p.add_argument("--with-emulator-gaps", action="store_true",
                   help="also run the kinds of step that crash an emulator (fuzz/gaps.py), left out by default")
    p.add_argument("--timeout", type=float, help="seconds per boot (default: 60 + 2 per program)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a Dask distributed scheduler (tcp://host:8786) whose workers run the boots")
    where.add_argument("--dask-local", action="store_true", help="run the boots on a Dask LocalCluster")
    p.add_argument("--no-minimize", action="store_true", help="do not minimise failures")
    p.add_argument("--regressions", type=Path, default=minimize.REGRESSIONS,
                   help="where minimised failures are written (default tests/fuzz_regressions)")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "fuzz",
                   help="where failing boots' consoles are written (default build/fuzz)")
    p.add_argument("--replay", type=int, metavar="INDEX",
                   help="boot program INDEX of --seed alone (beside the witness and an observer), "
                        "print its console and verdict")
    p.add_argument("--show", type=int, metavar="INDEX", help="print program INDEX of --seed's steps")
    return p


def check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.programs <= MAX_PROGRAMS:
        raise BuildError("--programs", f"{args.programs}: give 1 to {MAX_PROGRAMS}")
    if not 1 <= args.attackers <= 8:
        raise BuildError("--attackers", f"{args.attackers}: give 1 to 8")
    if args.count is not None and args.count < 1:
        raise BuildError("--count", "give at least 1")
    if args.workers < 1:
        raise BuildError("--workers", "give at least 1")
    for kind in args.skip:
        if kind not in TEMPLATES:
            raise BuildError("--skip", f"no step kind {kind!r}; the kinds: {', '.join(TEMPLATES)}")
    restart = not args.no_restart
    if restart and not boot.restart_supported():
        raise BuildError("--no-restart", "this hypervisor has no on_fault = \"restart\": run with --no-restart")
    for target in targets(args):
        command = EMULATOR_COMMANDS[TARGETS[target].emulator]
        if not _which(command):
            raise BuildError(f"--target {target}", f"{command} is not installed: run `make setup`")


def _which(command: str) -> bool:
    from shutil import which
    return which(command) is not None


def targets(args: argparse.Namespace) -> tuple[str, ...]:
    return FUZZ_TARGETS if args.target == "all" else (args.target,)


def show(args: argparse.Namespace) -> int:
    program = generate(args.seed, args.show, guest.MEMORY)
    print(json.dumps({"seed": program.seed, "index": program.index,
                      "steps": [step.to_json() for step in program.steps]}, indent=1))
    return 0


def replay(args: argparse.Namespace) -> int:
    program = generate(args.seed, args.replay, guest.MEMORY)
    failed = False
    for target in targets(args):
        spec = minimize.replay_spec(target, args.seed, args.replay, program.steps, not args.no_restart,
                                    args.timeout or boot.default_timeout(minimize.OBSERVER_PROGRAMS, 2),
                                    frozenset(args.skip))
        result = boot.run_boot(spec)
        print(f"== seed {args.seed} program {args.replay} on {target} ({result.seconds:.1f} s)")
        print("\n".join(result.lines))
        if result.error:
            print(f"error: {result.error}")
            failed = True
            continue
        verdict = result.verdict
        for kind, label in (("crashes", "crash"), ("breaches", "breach"), ("hangs", "hang"),
                            ("anomalies", "anomaly")):
            for line in getattr(verdict, kind):
                print(f"{label}: {line}")
        if result.emulator_log:
            print("the emulator's last log lines:", *result.emulator_log, sep="\n  ")
        failed |= verdict.failed
        print(f"verdict: {'FAILED' if verdict.failed else 'ok'}")
    return 1 if failed else 0


def fuzz(args: argparse.Namespace) -> int:
    restart = not args.no_restart
    per_attacker = args.programs if restart else 1
    plan = campaign.Plan(
        targets(args), args.seed, per_attacker, args.attackers, restart, 2 * per_attacker + 4,
        args.timeout or boot.default_timeout(per_attacker, args.attackers),
        args.count, None if args.count is not None else (args.duration or duration("5m")),
        frozenset(args.skip), boot.source_digest() if args.scheduler else None,
        args.with_emulator_gaps)
    workers = campaign.Workers(args.workers, args.scheduler, args.dask_local)
    amount = (f"{args.count} programs per target" if args.count is not None
              else f"for {campaign._elapsed(plan.duration)}")
    campaign.progress(f"seed {plan.seed}: {amount} on {', '.join(plan.targets)}, {plan.attackers} attackers x "
                      f"{per_attacker} programs per boot{' (restart)' if restart else ''}, "
                      f"witness '{boot.witness_builtin()}', on {workers.where}")
    failures = []

    def keep(result: boot.BootResult) -> None:
        verdict = result.verdict
        if verdict is not None and (verdict.failed or verdict.hangs):
            path = campaign.save_failure(result, args.out)
            campaign.progress(f"console of the failing boot: {path}")
            if verdict.failed:
                failures.append(result)

    start = time.monotonic()
    try:
        tallies = campaign.run(plan, workers, keep)
    finally:
        workers.close()
    print(campaign.summary(plan, tallies, time.monotonic() - start, workers.where), end="", flush=True)
    if failures and not args.no_minimize:
        minimise(failures, args)
    broken = any(t.crashes or t.breaches for t in tallies.values())
    return 1 if broken else 0


def minimise(failures: list[boot.BootResult], args: argparse.Namespace) -> None:
    seen: set[tuple[str, frozenset[str]]] = set()
    for result in failures:
        key = (result.spec.target, frozenset(minimize.failure_kinds(result.verdict)))
        if key in seen or len(seen) >= MINIMIZE_AT_MOST:
            continue
        seen.add(key)
        regression = minimize.minimize(result, campaign.progress)
        if regression is None:
            print(f"minimize: {result.spec.target} seed {result.spec.seed} programs "
                  f"{result.spec.indexes.start}-{result.spec.indexes.stop - 1}: no suspect program fails "
                  "alone; the failure needs the boot around it (its console is under --out)")
            continue
        path = minimize.write(regression, args.regressions)
        print(f"minimize: {len(regression.steps)} steps of seed {regression.seed} program {regression.index} "
              f"still fail ({', '.join(regression.failure)}) on {regression.target}: kept as {path}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.seed is None:
        args.seed = int(time.time()) % 1_000_000
    try:
        check_args(args)
        if args.show is not None:
            return show(args)
        if args.replay is not None:
            return replay(args)
        return fuzz(args)
    except (BuildError, campaign.DaskMissing) as error:
        print(f"fuzz: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nfuzz: interrupted", file=sys.stderr)
        return 130
