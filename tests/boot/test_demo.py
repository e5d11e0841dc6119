"""The default two-guest demo, booted for real in Bochs (Intel VMX)."""

import re

import pytest

from harness import boot_to_end, build_image, guest_lines

pytestmark = pytest.mark.boot

DEMO = (__import__("builder.config", fromlist=["DEFAULT_CONFIG"]).DEFAULT_CONFIG).read_text()


@pytest.fixture(scope="module")
def demo_lines(tmp_path_factory):
    elf = build_image(tmp_path_factory.mktemp("demo"), DEMO)
    return boot_to_end(elf)


def heartbeats(lines, name):
    """Indices in the console of each 'heartbeat N' line of a guest, by N."""
    found = {}
    for index, line in enumerate(lines):
        match = re.fullmatch(rf"\[{name}\] heartbeat (\d+)", line)
        if match:
            found[int(match.group(1))] = index
    return found


def test_the_hypervisor_announces_its_backend_first(demo_lines):
    assert demo_lines[0].startswith("[hv] hvbuild hypervisor: backend vmx, 2 guests")


def test_both_guests_make_progress_while_the_other_runs(demo_lines):
    alpha, beta = heartbeats(demo_lines, "alpha"), heartbeats(demo_lines, "beta")
    assert sorted(alpha) == list(range(1, 11))
    assert sorted(beta) == list(range(1, 5))
    # Time slicing: between two heartbeats of one guest the other printed one.
    for n in range(1, 4):
        assert alpha[n] < beta[n] < alpha[n + 1] < beta[n + 1]


def test_beta_scans_all_its_memory_and_never_finds_alphas_secret(demo_lines):
    assert "planted a secret at guest-physical 0x00020000" in guest_lines(demo_lines, "alpha")
    assert ("scanned all 262144 bytes of my memory for the secret: matches found: 0"
            in guest_lines(demo_lines, "beta"))


def test_reading_past_its_memory_stops_beta_and_alpha_keeps_running(demo_lines):
    stop = demo_lines.index(next(line for line in demo_lines if line.startswith("[hv] beta stopped")))
    assert re.fullmatch(r"\[hv\] beta stopped: EPT_VIOLATION, exit 48, qualification 0x181, "
                        r"guest-physical 0x40000, rip 0x[0-9a-f]+", demo_lines[stop])
    assert "ISOLATION BROKEN" not in "\n".join(demo_lines)
    assert not any(line.startswith("[beta]") for line in demo_lines[stop:])
    alpha_after = [line for line in demo_lines[stop:] if re.fullmatch(r"\[alpha\] heartbeat \d+", line)]
    assert len(alpha_after) >= 1
    assert "[alpha] done" in demo_lines[stop:]


def test_the_run_ends_with_a_summary_and_power_off(demo_lines):
    assert demo_lines[-4] == "[hv] all guests have stopped"
    alpha = re.fullmatch(r"\[hv\] summary: alpha exited with code 0, \d+ VM exits, "
                         r"first entry at cycle (\d+)", demo_lines[-3])
    beta = re.fullmatch(r"\[hv\] summary: beta stopped by the hypervisor: EPT_VIOLATION, \d+ VM exits, "
                        r"first entry at cycle (\d+)", demo_lines[-2])
    assert alpha and beta
    assert 0 < int(alpha.group(1)) < int(beta.group(1)), "alpha runs first, from boot on"
    assert demo_lines[-1] == "[hv] powering off"
