"""The guests' virtio devices as the build describes them (builder/virtio.py):
where their windows are, which interrupts they raise, what a Linux guest
is told, and the records the hypervisor starts from."""

from pathlib import Path

from builder import config, devices, hw, platform, pool, virtio
from builder.config import DiskConfig, GuestConfig
from builder.structs import VIRTIO, VIRTIO_QUEUE


def guest(disks):
    return GuestConfig("alpha", 1 << 20, None, None,
                       disks=tuple(DiskConfig(name, size, "x") for name, size in disks))


def test_each_device_has_a_page_above_every_guests_memory_and_clear_of_the_apics():
    assert virtio.BASE >= config.GUEST_MEMORY_MAX
    assert virtio.STRIDE == hw.PAGE_SIZE and virtio.BASE % hw.PAGE_SIZE == 0
    end = virtio.BASE + virtio.WINDOWS_SIZE
    for base, size in ((hw.IOAPIC_BASE, hw.IOAPIC_PAGE_SIZE), (hw.LAPIC_BASE, hw.PAGE_SIZE)):
        assert end <= base or base + size <= virtio.BASE
    assert hw.VIRTIO_MMIO_WINDOW_SIZE <= virtio.STRIDE
    assert any(device.name == "virtio" and device.guest_size == "virtio_windows"
               for device in devices.MMIO_DEVICES)


def test_the_interrupts_are_isa_lines_no_other_device_raises_each_routed_to_its_own_pin():
    taken = {hw.ISA_IRQ_PIT, hw.ISA_IRQ_CASCADE, hw.ISA_IRQ_SCI, 1, 3, 4, 8, 12}
    assert not taken & set(virtio.IRQS)
    assert len(set(virtio.IRQS)) == virtio.DEVICES_MAX > config.DISKS_PER_GUEST_MAX
    routes = {route.irq: route for route in platform.ISA_ROUTES}
    for irq in virtio.IRQS:
        assert routes[irq].pin == irq and not routes[irq].overridden   # edge, active high, GSI = IRQ


def test_a_linux_guest_is_told_of_each_disk_on_its_command_line():
    assert virtio.cmdline(guest([])) == ""
    assert virtio.cmdline(guest([("root", 1 << 20), ("data", 2 << 20)])) == (
        "virtio_mmio.device=512@0xd0000000:5 virtio_mmio.device=512@0xd0001000:10")


def test_a_disks_record_holds_its_extent_its_features_and_its_configuration():
    extents = (pool.Extent("beta", "data", 1 << 20, 2 << 20), pool.Extent("alpha", "root", 3 << 20, 4 << 20))
    plan = pool.Plan(Path("pool.img"), False, pool.Header(8 << 20, 1, extents), (), ())
    disks = virtio.disks(guest([("root", 4 << 20)]), plan)
    fields = virtio.record_fields(disks)
    assert fields["virtio_windows"] == hw.PAGE_SIZE
    record = fields["virtio"]
    assert len(record) == VIRTIO.size

    def field(name, size=8):
        start = VIRTIO.offsets[name]
        return int.from_bytes(record[start:start + size], "little")

    assert field("device_id", 4) == hw.VIRTIO_ID_BLOCK and field("irq", 4) == 5 and field("queues", 4) == 1
    assert field("pool_entry") == 1
    assert field("first_sector") == (3 << 20) // 512 and field("sectors") == (4 << 20) // 512
    assert field("device_features") == (hw.VIRTIO_F_VERSION_1 | hw.VIRTIO_BLK_F_FLUSH
                                        | hw.VIRTIO_BLK_F_SEG_MAX | hw.VIRTIO_BLK_F_SIZE_MAX)
    config_start = VIRTIO.offsets["config"]
    capacity, size_max, seg_max = (int.from_bytes(record[config_start + a:config_start + b], "little")
                                   for a, b in ((0, 8), (8, 12), (12, 16)))
    assert (capacity, size_max, seg_max) == ((4 << 20) // 512, hw.PAGE_SIZE, virtio.QUEUE_SIZE - 2)
    assert field("config_size", 4) == 16
    assert record[VIRTIO.offsets["serial"]:VIRTIO.offsets["serial"] + 5] == b"root\0"
    # the transport's state starts reset: status 0, every queue not ready
    assert record[VIRTIO.offsets["status"]:] == bytes(VIRTIO.size - VIRTIO.offsets["status"])
    assert VIRTIO.offsets["queue"] % 8 == 0 and VIRTIO_QUEUE.offsets["desc"] % 8 == 0


def test_the_pool_stays_within_what_28_bit_lbas_reach():
    assert config.POOL_SIZE_MAX == (1 << 28) * 512
    assert config.DISK_SIZE_MAX < config.POOL_SIZE_MAX
