"""The fuzzer in CI (docs/FUZZING.md): a small fixed batch of random
attacker programs beside the witness leaves the hypervisor running and
the witness undisturbed, and every kept regression case replays clean,
on every target.

Where a regression is still open on a target (its `open_on`), the batch
leaves out the kinds of step that set it off there, and its replay is
expected to fail until the hypervisor (or the emulator) is fixed: strict,
so that a fix shows as an unexpected pass to be recorded."""

import pytest

from fuzz import boot, gaps, minimize

pytestmark = pytest.mark.boot

BATCH_SEEDS = (1, 2)
BATCH_PROGRAMS = 10                 # per attacker and boot: one boot per seed, 20 programs each
BATCH_ATTACKERS = 2
REGRESSIONS = minimize.load_regressions()


def batch_spec(target, seed):
    return boot.BootSpec(target, seed, 0, BATCH_PROGRAMS, BATCH_ATTACKERS, True, 2 * BATCH_PROGRAMS + 4,
                         boot.default_timeout(BATCH_PROGRAMS, BATCH_ATTACKERS),
                         skip=gaps.skipped(target))


def explain(result):
    verdict = result.verdict
    return "\n".join([*(verdict.crashes if verdict else []), *(verdict.breaches if verdict else []),
                      result.error or "", *result.emulator_log[-5:], *result.lines[-15:]])


@pytest.mark.parametrize("seed", BATCH_SEEDS)
def test_random_attackers_leave_the_hypervisor_running_and_the_witness_undisturbed(target, seed):
    result = boot.run_boot(batch_spec(target, seed))
    assert result.error is None, result.error
    verdict = result.verdict
    assert not verdict.failed, explain(result)
    assert not verdict.hangs, explain(result)
    # Every program ran, one per restart, and each attacker then exited.
    assert verdict.programs_run == BATCH_PROGRAMS * BATCH_ATTACKERS
    assert "anomaly:programs" not in verdict.kinds and "anomaly:attacker-end" not in verdict.kinds
    assert sum(verdict.stops.values()) >= verdict.programs_run


@pytest.mark.parametrize("case", [path.name for path, _ in REGRESSIONS])
def test_a_kept_regression_replays_clean(request, target, case):
    regression = {path.name: r for path, r in REGRESSIONS}[case]
    if target in regression.open_on:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"open on {target}: "
                                              f"{', '.join(regression.failure)}"))
    spec = minimize.replay_spec(target, regression.seed, regression.index, regression.steps, True,
                                boot.default_timeout(minimize.OBSERVER_PROGRAMS, 2))
    result = boot.run_boot(spec)
    assert result.error is None, result.error
    assert not result.verdict.failed, explain(result)
