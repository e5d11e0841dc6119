"""on_fault = "restart": a guest the hypervisor stops is reloaded from its
image as built and runs again, with fresh memory and a fresh CPU, up to
its max_restarts; the guest beside it never notices.  Booted on every
target."""

import re

import pytest
from harness import binutils_guest, boot_to_end, build_image, guest_lines, guest_table

pytestmark = pytest.mark.boot

RESTARTS = 3
WITNESS_BEATS = 4


def test_a_stopped_guest_restarts_from_its_pristine_image_until_its_limit(tmp_path, target):
    guest = binutils_guest(tmp_path, "restartable.S", bits=32)
    config = (guest_table("phoenix", "64K", elf=guest, on_fault="restart", max_restarts=RESTARTS)
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=WITNESS_BEATS))
    lines = boot_to_end(build_image(tmp_path, config), target)
    # Each run sees its restart count, and memory and registers as built,
    # never what the run before it left.
    assert guest_lines(lines, "phoenix") == [f"run after {run} restarts, counter 1, fresh state"
                                             for run in range(RESTARTS + 1)]
    stops = [line for line in lines if line.startswith("[hv] phoenix stopped: ")]
    assert len(stops) == RESTARTS + 1
    assert all(re.search(r", guest-physical 0x7ff00000, rip 0x[0-9a-f]+$", line) for line in stops), stops
    restarts = [line for line in lines if " restarted (" in line]
    assert restarts == [f"[hv] phoenix restarted (restart {n} of {RESTARTS})" for n in range(1, RESTARTS + 1)]
    assert f"[hv] phoenix stays stopped: its {RESTARTS} restarts are used up" in lines
    summary = next(line for line in lines if line.startswith("[hv] summary: phoenix"))
    assert f", restarted {RESTARTS} times, " in summary
    beats = [line for line in guest_lines(lines, "witness") if line.startswith("heartbeat")]
    assert beats == [f"heartbeat {n}" for n in range(1, WITNESS_BEATS + 1)]
    assert "[hv] witness exited with code 0" in lines
