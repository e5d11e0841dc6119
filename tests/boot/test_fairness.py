"""A guest that floods the hypervisor with exits must not take the CPU from
the guests beside it: a guest's share of the CPU includes the hypervisor's
time on its exits.  Compute victims (guests/bench_victim.s.j2) beside a
CPUID storm (guests/bench_storm.s.j2), booted on every target (the `target`
fixture, tests/boot/conftest.py); each victim measures its own share over
whole rounds of the scheduler.  `make bench` reports the same figure
against a tighter target (docs/BENCHMARKS.md)."""

import pytest
from harness import TSC_HZ, binutils_guest, boot_to_end, build_image, guest_lines, guest_table

from bench import configs, figures

pytestmark = pytest.mark.boot

# Generous: a victim keeps at least 80 % of a fair share, 1/N (two guests:
# 40 % of the CPU, where make bench's target is 45 %).
LEAST_OF_A_FAIR_SHARE = 0.8
# A guest that sleeps to be woken first gets no more than this of two.
MOST_OF_A_FAIR_SHARE = 0.6
SLEEP_ABUSER_COMPUTE_MS = 100 * 2           # tests/guests/sleep_abuser.S: ITERATIONS x COMPUTE_MS
SHARE_TOLERANCE = 0.05                      # a guest's part of the CPU over its share's: 1 +- this
HEARTBEAT_CYCLES = 600_000                  # about one heartbeat's busy wait (builder/guest_images.py)


@pytest.mark.parametrize("guests", [2, 4])
def test_compute_guests_keep_their_share_beside_a_cpuid_storm(tmp_path, target, guests):
    lines = boot_to_end(build_image(tmp_path, configs.storm(guests, "auto")), target)
    names = configs.storm_names(guests)
    for name in names:
        assert f"[hv] {name} exited with code 0" in lines
    storm = figures.storm_shares(figures.records(lines))
    exits = {summary.guest: summary.exits for summary in figures.summaries(lines)}
    assert exits[configs.STORM] >= storm.storm_cpuids, "every CPUID of the storm must exit"
    least, worst = LEAST_OF_A_FAIR_SHARE / guests, storm.worst
    shares = ", ".join(f"{name} {share:.2%}" for name, share in storm.shares.items())
    assert worst >= least, (f"beside a CPUID storm ({storm.storm_cpuids} exits) the victims' shares "
                            f"of the CPU are {shares}; each should be at least {least:.0%}")


def test_sleeping_buys_no_guest_more_than_its_share(tmp_path, target):
    """tests/guests/sleep_abuser.S sleeps a tenth of a millisecond, is woken
    by its APIC's TSC deadline (a sleeper with credit runs at once), then
    computes 2 ms' worth of instructions, over and over, beside a guest that
    computes all the while: it gets about half of the machine, not all of
    it.  (Its share: the cycles of its computing, counted by instructions,
    over the TSC cycles that went by.)"""
    abuser = binutils_guest(tmp_path, "sleep_abuser.S", bits=32, link_address=0x100000)
    computed = TSC_HZ[target] // 1000 * SLEEP_ABUSER_COMPUTE_MS
    beats = 3 * computed // HEARTBEAT_CYCLES + 2       # outlasts the abuser at a half share
    config = (guest_table("abuser", "4M", multiboot=abuser, expect_exit=0x31)
              + guest_table("victim", "128K", builtin="heartbeat", heartbeats=beats))
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert "[hv] abuser exited with code 49" in lines and "[hv] victim exited with code 0" in lines
    said = dict(line.rsplit(" ", 1) for line in guest_lines(lines, "abuser"))
    share = int(said["computed cycles"]) / int(said["elapsed cycles"])
    assert share <= MOST_OF_A_FAIR_SHARE, f"the sleeping abuser took {share:.2%} of the machine"


@pytest.mark.parametrize("mix", configs.SHARE_MIXES)
def test_cpu_time_follows_the_shares(tmp_path, target, mix):
    """Guests with shares 1, 3 and 2 (bench/configs.py shares; in the
    exit-heavy mix the third is a CPUID storm with share 1) each measure
    their part of the CPU over whole rounds of the scheduler: it is their
    share over the sum of the shares.  `make bench` holds it to 2 % with
    2, 4 and 8 guests; here 5 % (the hypervisor's time at slice ends, under
    0.2 %, counts against the guests)."""
    guests = 3
    lines = boot_to_end(build_image(tmp_path, configs.shares(guests, mix, "auto")), target)
    weights = configs.share_weights(guests, mix)
    ratios = figures.weighted_shares(figures.records(lines), weights, configs.share_total(guests, mix))
    said = ", ".join(f"{name} (share {weights[name]}) {ratio:.3f}" for name, ratio in ratios.items())
    assert figures.share_deviation(ratios) <= SHARE_TOLERANCE, (
        f"each guest's part of the CPU over its share's should be 1: {said}")
