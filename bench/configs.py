"""The configs the benchmark builds: TOML text for hvbuild, and the default
demo's model for the sizes."""

from __future__ import annotations

from dataclasses import replace

from builder import config
from builder.config import DEFAULT_TIME_SLICE, GUEST_MEMORY_MIN, MIB
from builder.guest_images import BENCH_KERNEL_BUFFER, BENCH_KERNEL_BYTES, BENCH_SHARE_UNIT, BENCH_STORM_SLICES
from builder.hw import PAGE_SIZE

PROBE = "probe"
SCALING_GUESTS = (2, 4, 8, 16, 32)
STORM = "storm"
STORM_GUESTS = (2, 4, 8)    # the victims and the exit storm
SHARE_GUESTS = (2, 4, 8)        # CPU shares: guests in a run, the storm among them in the exit-heavy mix
SHARE_MIXES = ("compute", "storm")
SHARE_WEIGHTS = (1, 3, 2, 4)    # the measured guests' shares, in turn
SHARE_ROUNDS = 4                # rounds of the scheduler in each guest's window
STORM_SHARE = 1                 # the storm's: one run, so one gap, a round
KERNEL_GUEST = "kernel"
# The kernel guest's buffer, then its start-up GDT page, rounded up to MiB.
KERNEL_GUEST_MEMORY = -(-(BENCH_KERNEL_BUFFER + BENCH_KERNEL_BYTES + PAGE_SIZE) // MIB) * MIB


def guest_names(guests: int) -> list[str]:
    """The probe first, then its peers."""
    return [PROBE] + [f"peer{index:02}" for index in range(1, guests)]


def hypervisor(backend: str) -> str:
    """The [hypervisor] table: the default time slice, one backend forced."""
    return f'[hypervisor]\ntime_slice = {DEFAULT_TIME_SLICE}\nbackend = "{backend}"\n'


def scaling(guests: int, backend: str) -> str:
    """`guests` benchmark guests at the default time slice, for `backend`
    only: the probe (guests/bench_probe.s.j2) and guests - 1 peers
    (guests/bench_peer.s.j2)."""
    tables = [f'[[guest]]\nname = "{name}"\nmemory = {GUEST_MEMORY_MIN}\n'
              f'builtin = "{"bench_probe" if name == PROBE else "bench_peer"}"\n'
              for name in guest_names(guests)]
    return hypervisor(backend) + "\n" + "\n".join(tables)


def storm_names(guests: int) -> list[str]:
    """The victims first, then the storm."""
    return [f"victim{index:02}" for index in range(1, guests)] + [STORM]


def storm(guests: int, backend: str) -> str:
    """An exit storm (guests/bench_storm.s.j2) after guests - 1 compute
    victims (guests/bench_victim.s.j2) at the default time slice, for
    `backend` ("auto" too: neither guest needs an image for one backend)."""
    tables = [f'[[guest]]\nname = "{name}"\nmemory = {GUEST_MEMORY_MIN}\n'
              + (f'builtin = "bench_storm"\nheartbeats = {BENCH_STORM_SLICES}\n' if name == STORM
                 else 'builtin = "bench_victim"\n')
              for name in storm_names(guests)]
    return hypervisor(backend) + "\n" + "\n".join(tables)


def share_weights(guests: int, mix: str) -> dict[str, int]:
    """The measured guests (guests/bench_share.s.j2) and their shares: all
    `guests` of them in the compute mix, all but the storm in the other."""
    measured = guests - (mix == "storm")
    return {f"weighted{index:02}": SHARE_WEIGHTS[index % len(SHARE_WEIGHTS)] for index in range(measured)}


def share_total(guests: int, mix: str) -> int:
    """The sum of every guest's shares, the storm's too."""
    return sum(share_weights(guests, mix).values()) + (STORM_SHARE if mix == "storm" else 0)


def shares(guests: int, mix: str, backend: str) -> str:
    """`guests` guests with CPU shares at the default time slice: compute
    guests that measure their part of the CPU over SHARE_ROUNDS whole
    rounds, and in the "storm" mix an exit storm (guests/bench_storm.s.j2)
    with STORM_SHARE.  A guest's window starts half a window after its
    first round and lasts SHARE_ROUNDS rounds, then it spins as long again.
    The storm counts its gaps, a round each, and stops after 2 SHARE_ROUNDS
    of them: past every window (each ends by round 2 + 1.5 SHARE_ROUNDS)
    and before the guests beside it end (after 1 + 2.5 SHARE_ROUNDS:
    alone, the storm would see no gap)."""
    weights, total = share_weights(guests, mix), share_total(guests, mix)
    assert DEFAULT_TIME_SLICE % BENCH_SHARE_UNIT == 0
    units = SHARE_ROUNDS * total * DEFAULT_TIME_SLICE // BENCH_SHARE_UNIT
    tables = [f'[[guest]]\nname = "{name}"\nmemory = {GUEST_MEMORY_MIN}\nbuiltin = "bench_share"\n'
              f'heartbeats = {units}\nshare = {weight}\n' for name, weight in weights.items()]
    if mix == "storm":
        tables.append(f'[[guest]]\nname = "{STORM}"\nmemory = {GUEST_MEMORY_MIN}\nbuiltin = "bench_storm"\n'
                      f'heartbeats = {2 * SHARE_ROUNDS}\nshare = {STORM_SHARE}\n')
    return hypervisor(backend) + "\n" + "\n".join(tables)


def kernel(backend: str) -> str:
    """The compute kernel alone in one guest, at the default time slice,
    for `backend` only."""
    return (hypervisor(backend) + "\n"
            f'[[guest]]\nname = "{KERNEL_GUEST}"\nmemory = {KERNEL_GUEST_MEMORY}\n'
            'builtin = "bench_kernel"\n')


def default(backend: str) -> config.Config:
    """The default demo (builder/default.toml) with `backend` ("auto",
    "vmx" or "svm") in place of its own."""
    loaded = config.load()
    return replace(loaded, hypervisor=replace(loaded.hypervisor, backend=backend))
