"""The default two-guest demo, booted for real on every target."""

import re

import pytest
from harness import BACKEND_OF, BOOT_TARGETS, EXPECTED_EXITS, boot_to_end, booted, build_image, guest_lines

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


def test_the_demo_guests_print_all_their_heartbeats(demo):
    _, lines = demo
    assert sorted(heartbeats(lines, "alpha")) == list(range(1, 11))
    assert sorted(heartbeats(lines, "beta")) == list(range(1, 5))


# Two equal guests that beat until the run is ended: whatever the time
# slice is (instructions under VMX, wall time under SVM), each must beat
# while the other is beating.
SIDE_BY_SIDE = """
[[guest]]
name = "alpha"
memory = "64K"
builtin = "heartbeat"
heartbeats = 0

[[guest]]
name = "beta"
memory = "64K"
builtin = "heartbeat"
heartbeats = 0
"""
BEATS = 6


def test_both_guests_make_progress_while_the_other_runs(tmp_path, target):
    elf = build_image(tmp_path, SIDE_BY_SIDE)
    with booted(elf, target) as console:
        seen = set()
        while seen != {"alpha", "beta"}:
            seen.add(console.expect(rf"\[(alpha|beta)\] heartbeat {BEATS}\r?\n")[1:].split("]")[0])
        lines = console.lines
    alpha, beta = heartbeats(lines, "alpha"), heartbeats(lines, "beta")
    assert any(alpha[2] < index < alpha[BEATS] for index in beta.values()), lines
    assert any(beta[2] < index < beta[BEATS] for index in alpha.values()), lines


def test_beta_scans_all_its_memory_and_never_finds_alphas_secret(demo):
    _, lines = demo
    assert "planted a secret at guest-physical 0x00020000" in guest_lines(lines, "alpha")
    assert ("scanned all 262144 bytes of my memory for the secret: matches found: 0"
            in guest_lines(lines, "beta"))


def test_reading_past_its_memory_stops_beta(demo):
    target, lines = demo
    stop = lines.index(next(line for line in lines if line.startswith("[hv] beta stopped")))
    expected = EXPECTED_EXITS[target]["out_of_bounds"]
    assert re.fullmatch(rf"\[hv\] beta stopped: {expected}, guest-physical 0x40000, rip 0x[0-9a-f]+",
                        lines[stop])
    assert "[beta] reading guest-physical 0x00040000" in lines[:stop]
    assert "ISOLATION BROKEN" not in "\n".join(lines)
    assert not any(line.startswith("[beta]") for line in lines[stop:])


# alpha beats until the run is ended, so its heartbeats after beta's stop
# do not depend on how the time slices fell.
ISOLATION = """
[[guest]]
name = "alpha"
memory = "256K"
builtin = "heartbeat"
heartbeats = 0

[[guest]]
name = "beta"
memory = "256K"
builtin = "scanner"
heartbeats = 2
"""


def test_alpha_keeps_running_after_beta_is_stopped(tmp_path, target):
    elf = build_image(tmp_path, ISOLATION)
    with booted(elf, target) as console:
        stop = console.expect(r"\[hv\] beta stopped: [^\r\n]*\r?\n")
        first = console.expect(r"\[alpha\] heartbeat \d+\r?\n")
        second = console.expect(r"\[alpha\] heartbeat \d+\r?\n")
        lines = console.lines
    expected = EXPECTED_EXITS[target]["out_of_bounds"]
    assert re.fullmatch(rf"\[hv\] beta stopped: {expected}, guest-physical 0x40000, rip 0x[0-9a-f]+",
                        stop.strip())
    assert int(second.split()[-1]) == int(first.split()[-1]) + 1
    after = lines[lines.index(stop.strip()):]
    assert not any(line.startswith("[beta]") for line in after)
    assert "ISOLATION BROKEN" not in "\n".join(lines)


def test_the_run_ends_with_a_summary_and_power_off(demo):
    """A summary line per guest, then its VM exits by reason, which add up
    to the summary's count; the beta guest's last exit is the one that
    stopped it."""
    _, lines = demo
    assert lines[-6] == "[hv] all guests have stopped"
    alpha = re.fullmatch(r"\[hv\] summary: alpha exited with code 0, (\d+) VM exits, "
                         r"first entry at cycle (\d+)", lines[-5])
    beta = re.fullmatch(r"\[hv\] summary: beta stopped by the hypervisor: (\w+), (\d+) VM exits, "
                        r"first entry at cycle (\d+)", lines[-4])
    assert alpha and beta
    assert 0 < int(alpha.group(2)) < int(beta.group(3)), "alpha runs first, from boot on"
    for line, name, total in ((lines[-3], "alpha", alpha.group(1)), (lines[-2], "beta", beta.group(2))):
        assert line.startswith(f"[hv] exits: {name} ")
        words = line.removeprefix(f"[hv] exits: {name} ").split()
        by_reason = dict(zip(words[::2], map(int, words[1::2])))
        assert sum(by_reason.values()) == int(total), line
        if name == "beta":
            assert by_reason[beta.group(1)] == 1, line
    assert lines[-1] == "[hv] powering off"
