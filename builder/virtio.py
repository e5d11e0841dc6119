"""The guests' virtio devices (virtio 1.x over MMIO): where each one's
register window is, which interrupt it raises, and the state the
hypervisor keeps of it, defined once.

A guest's devices are numbered from 0: its disks first, in config order.
Device n's window is the first VIRTIO_MMIO_WINDOW_SIZE bytes of the page
at BASE + n * STRIDE, a page of its own that no guest memory covers, so
every access exits and the MMIO path (hv/core/mmio.s.j2) hands it to
hv/devices/virtio_mmio.s.j2; the page's rest reads 0.  Its interrupt is
ISA IRQ IRQS[n], raised as an edge when InterruptStatus becomes non-zero.
A Linux guest finds the devices on its command line
(`virtio_mmio.device=512@0xd0000000:5`, Documentation/admin-guide/
kernel-parameters.txt) and its memory map reserves the windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import hw, pool
from builder.config import DISKS_PER_GUEST_MAX, GuestConfig
from builder.structs import (VIRTIO, VIRTIO_DEVICES_MAX, VIRTIO_QUEUE, VIRTIO_QUEUE_SIZE, VIRTIO_QUEUES_MAX,
                             VIRTIO_REQUEST)

BASE = 0xD000_0000              # guest-physical: above any guest's memory (< 1 GiB), below the APICs
STRIDE = hw.PAGE_SIZE
# ISA IRQs no device of the virtual PC raises (builder/devices.py): not the
# PIT (0), keyboard (1), cascade (2), COM2/COM1 (3, 4), parallel port (7),
# RTC (8), SCI (9), mouse (12) or FPU (13).
IRQS = (5, 10, 11, 14, 15)
DEVICES_MAX = VIRTIO_DEVICES_MAX
assert len(IRQS) == DEVICES_MAX
assert DISKS_PER_GUEST_MAX < DEVICES_MAX    # one left for the memory balloon
WINDOWS_SIZE = DEVICES_MAX * STRIDE         # what the guests' tables reserve
VENDOR_ID = int.from_bytes(b"hvb\0", "little")
QUEUE_SIZE = VIRTIO_QUEUE_SIZE
QUEUES_MAX = VIRTIO_QUEUES_MAX
# A block request's data: at most BLK_SEG_MAX descriptors of at most
# BLK_SIZE_MAX bytes (offered as VIRTIO_BLK_F_SEG_MAX and _SIZE_MAX, which
# Linux obeys), the header and status descriptors beside them in the queue.
BLK_SEG_MAX = QUEUE_SIZE - 2
BLK_SIZE_MAX = hw.PAGE_SIZE
BLK_DATA_MAX = BLK_SEG_MAX * BLK_SIZE_MAX
BLK_FEATURES = (hw.VIRTIO_F_VERSION_1 | hw.VIRTIO_BLK_F_SIZE_MAX | hw.VIRTIO_BLK_F_SEG_MAX
                | hw.VIRTIO_BLK_F_FLUSH)
BLK_CONFIG_SIZE = 16            # struct virtio_blk_config: capacity, size_max, seg_max
BAD_REQUESTS_LOGGED = 8         # bad requests a device reports on the console; the rest are counted


@dataclass(frozen=True)
class Disk:
    """A guest's disk as its virtio-blk device serves it."""

    index: int                  # the guest's device number
    name: str                   # the config's disk name; GET_ID answers it
    entry: int                  # its entry in the pool's header (builder/pool.py)
    first_sector: int           # where its extent starts on the pool's disk
    sectors: int

    @property
    def base(self) -> int:
        return window(self.index)

    @property
    def irq(self) -> int:
        return IRQS[self.index]


def window(index: int) -> int:
    return BASE + index * STRIDE


def disks(guest: GuestConfig, plan: pool.Plan | None) -> tuple[Disk, ...]:
    """The guest's disks, where the pool's plan puts them."""
    out = []
    for index, disk in enumerate(guest.disks):
        assert plan is not None             # config: disks need a pool
        entry = plan.header.entry(guest.name, disk.name)
        extent = plan.header.extents[entry]
        out.append(Disk(index, disk.name, entry, extent.start // hw.VIRTIO_BLK_SECTOR_SIZE,
                        extent.size // hw.VIRTIO_BLK_SECTOR_SIZE))
    return tuple(out)


def cmdline(guest: GuestConfig) -> str:
    """What a Linux guest's command line needs to find its devices."""
    return " ".join(f"virtio_mmio.device={hw.VIRTIO_MMIO_WINDOW_SIZE}@{window(index):#x}:{IRQS[index]}"
                    for index in range(len(guest.disks)))


def blk_config(disk: Disk) -> bytes:
    """The device-specific configuration (virtio 1.2 5.2.4) the driver reads."""
    return (disk.sectors.to_bytes(8, "little") + BLK_SIZE_MAX.to_bytes(4, "little")
            + BLK_SEG_MAX.to_bytes(4, "little"))


def record_fields(devices: tuple[Disk, ...]) -> dict[str, int | bytes]:
    """GUEST.virtio and virtio_windows as the guest starts: every device
    reset (status 0)."""
    packed = b""
    for disk in devices:
        serial = disk.name.encode()[:hw.VIRTIO_BLK_ID_BYTES]
        packed += VIRTIO.pack(device_id=hw.VIRTIO_ID_BLOCK, irq=disk.irq, queues=1,
                              config_size=BLK_CONFIG_SIZE, device_features=BLK_FEATURES,
                              config=blk_config(disk), pool_entry=disk.entry, first_sector=disk.first_sector,
                              sectors=disk.sectors, serial=serial)
    return {"virtio": packed, "virtio_windows": len(devices) * STRIDE}


def asm_constants() -> dict[str, int]:
    return {**VIRTIO.asm_constants(), **VIRTIO_QUEUE.asm_constants(), **VIRTIO_REQUEST.asm_constants(),
            "VIRTIO_WINDOWS_BASE": BASE, "VIRTIO_WINDOW_STRIDE": STRIDE,
            "VIRTIO_VENDOR": VENDOR_ID, "VIRTIO_DEVICES_MAX": DEVICES_MAX, "VIRTIO_QUEUE_SIZE": QUEUE_SIZE,
            "VIRTIO_BLK_DATA_MAX": BLK_DATA_MAX,
            # keystone takes one symbol per memory operand
            "REQ_HEADER_TYPE": VIRTIO_REQUEST.offsets["header"] + hw.VIRTIO_BLK_OUTHDR_TYPE,
            "REQ_HEADER_SECTOR": VIRTIO_REQUEST.offsets["header"] + hw.VIRTIO_BLK_OUTHDR_SECTOR, "VIRTIO_BAD_REQUESTS_LOGGED": BAD_REQUESTS_LOGGED}
