"""The configs the benchmark builds: TOML text for hvbuild, and the default
demo's model for the sizes."""

from __future__ import annotations

from dataclasses import replace

from builder import config
from builder.config import DEFAULT_TIME_SLICE, GUEST_MEMORY_MIN, MIB
from builder.guest_images import BENCH_KERNEL_BUFFER, BENCH_KERNEL_BYTES
from builder.hw import PAGE_SIZE

PROBE = "probe"
SCALING_GUESTS = (2, 4, 8, 16, 32)
STORM = "storm"
STORM_GUESTS = (2, 4, 8)    # the victims and the exit storm
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
              f'builtin = "{"bench_storm" if name == STORM else "bench_victim"}"\n'
              for name in storm_names(guests)]
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
