"""The default two-guest demo, booted for real on every target."""

import re

import pytest
from harness import BACKEND_OF, BOOT_TARGETS, EXPECTED_EXITS, boot_to_end, build_image, guest_lines

from builder.config import DEFAULT_CONFIG

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module")
def demo_image(tmp_path_factory):
    return build_image(tmp_path_factory.mktemp("demo"), DEFAULT_CONFIG.read_text())


@pytest.fixture(scope="module", params=BOOT_TARGETS)
def demo(request, demo_image):
    """(target, console lines) of one boot of the default demo."""
    return request.param, boot_to_end(demo_image, request.param)


def heartbeats(lines, name):
    """Console index of each 'heartbeat N' line of a guest, by N."""
    found = {}
    for index, line in enumerate(lines):
        match = re.fullmatch(rf"\[{name}\] heartbeat (\d+)", line)
        if match:
            found[int(match.group(1))] = index
    return found


def test_the_auto_image_announces_the_backend_this_cpu_has(demo):
    target, lines = demo
    assert lines[0] == f"[hv] hvbuild hypervisor: backend {BACKEND_OF[target]}, 2 guests, " \
                       "time slice 200,000 cycles"


def test_both_guests_make_progress_while_the_other_runs(demo):
    _, lines = demo
    alpha, beta = heartbeats(lines, "alpha"), heartbeats(lines, "beta")
    assert sorted(alpha) == list(range(1, 11))
    assert sorted(beta) == list(range(1, 5))
    # Time slicing: beta beats while alpha is still beating, and alpha
    # beats between beta's first and last heartbeat.
    assert alpha[1] < beta[2] and beta[4] < alpha[10]
    assert any(beta[1] < index < beta[4] for index in alpha.values())


def test_beta_scans_all_its_memory_and_never_finds_alphas_secret(demo):
    _, lines = demo
    assert "planted a secret at guest-physical 0x00020000" in guest_lines(lines, "alpha")
    assert ("scanned all 262144 bytes of my memory for the secret: matches found: 0"
            in guest_lines(lines, "beta"))


def test_reading_past_its_memory_stops_beta_and_alpha_keeps_running(demo):
    target, lines = demo
    stop = lines.index(next(line for line in lines if line.startswith("[hv] beta stopped")))
    expected = EXPECTED_EXITS[target]["out_of_bounds"]
    assert re.fullmatch(rf"\[hv\] beta stopped: {expected}, guest-physical 0x40000, rip 0x[0-9a-f]+",
                        lines[stop])
    assert "ISOLATION BROKEN" not in "\n".join(lines)
    assert not any(line.startswith("[beta]") for line in lines[stop:])
    assert any(re.fullmatch(r"\[alpha\] heartbeat \d+", line) for line in lines[stop:])
    assert "[alpha] done" in lines[stop:]


def test_the_run_ends_with_a_summary_and_power_off(demo):
    _, lines = demo
    assert lines[-4] == "[hv] all guests have stopped"
    alpha = re.fullmatch(r"\[hv\] summary: alpha exited with code 0, \d+ VM exits, "
                         r"first entry at cycle (\d+)", lines[-3])
    beta = re.fullmatch(r"\[hv\] summary: beta stopped by the hypervisor: \w+, \d+ VM exits, "
                        r"first entry at cycle (\d+)", lines[-2])
    assert alpha and beta
    assert 0 < int(alpha.group(1)) < int(beta.group(1)), "alpha runs first, from boot on"
    assert lines[-1] == "[hv] powering off"
