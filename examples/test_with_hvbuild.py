"""Test your own guests with hvbuild's pytest plugin: copy this file into
your repository, `pip install hvbuild` (or the checkout), and run pytest.
The plugin (builder/pytest_plugin.py) gives the `hvboot` fixture, which
builds a config and boots it, and `hv_target`, which runs a test on every
target or on those `@pytest.mark.hv_targets(...)` names."""

import pytest

TWO_GUESTS = {"guest": [
    {"name": "mine", "memory": "256K", "builtin": "heartbeat", "heartbeats": 3, "expect_exit": 0},
    {"name": "other", "memory": "256K", "builtin": "heartbeat", "heartbeats": 2},
]}


def test_two_guests_run_side_by_side_on_every_target(hvboot, hv_target):
    boot = hvboot(TWO_GUESTS, target=hv_target)
    boot.expect(r"\[mine\] heartbeat 1")
    boot.run_to_end()
    assert boot.lines("mine")[-1] == "done"
    assert [line for line in boot.lines("other") if line.startswith("heartbeat")] == ["heartbeat 1", "heartbeat 2"]
    assert boot.verdicts["mine"].passed


@pytest.mark.hv_targets("qemu")
def test_the_control_console_answers(hvboot, hv_target):
    config = {"guest": [{"name": "mine", "memory": "256K", "builtin": "heartbeat", "heartbeats": 100000}]}
    boot = hvboot(config, target=hv_target)
    boot.expect(r"\[mine\] heartbeat 1\r?\n")
    assert boot.command("share mine 4") == "ok mine share 4"
    assert boot.command("quit") == "ok powering off"
    boot.run_to_end()
