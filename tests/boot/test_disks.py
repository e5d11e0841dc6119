"""The guests' disks at run time (issue 11): virtio-blk devices over MMIO
(hv/devices/virtio_blk.s.j2) serving extents of the storage pool from
its ATA disk.  The disk_tester guest (guests/disk_tester.s.j2) drives its
disk as a driver would, then as a hostile one would; the pool file is
read afterwards, from outside, for what the guests could not have
faked."""

import pytest
from harness import boot_to_end, booted, build_image, guest_lines, guest_table, machine

from builder import pool

pytestmark = pytest.mark.boot

DISK_MIB = 2
PATTERN_SECTOR = 8                   # guests/disk_tester.s.j2's
PATTERN_BYTES = 1024
GUESTS = (guest_table("alpha", "1M", builtin="disk_tester", heartbeats=1)
          + f'disks = [{{ name = "root", size = "{DISK_MIB}M" }}]\n'
          + guest_table("beta", "1M", builtin="disk_tester", heartbeats=1)
          + f'disks = [{{ name = "data", size = "{DISK_MIB}M" }}]\n')
STORAGE = '[storage]\npool = "pool.img"\nsize = "8M"\n\n'
# What each hostile request gets: (status byte, used length).  1 is
# VIRTIO_BLK_S_IOERR, 2 UNSUPP; 238 is the byte the guest preset: a chain
# that cannot be followed to its end has no status byte the device may
# write, and is given back with nothing written.
HOSTILE = {"outside memory": (1, 1), "huge length": (1, 1), "above 4 GiB": (1, 1),
           "across the end": (1, 1), "past the end": (1, 1), "sector 2^63": (1, 1),
           "partial sector": (1, 1), "too large": (1, 1), "order": (1, 1), "indirect": (1, 1),
           "loop": (238, 0), "index": (238, 0), "type": (2, 1)}


def pattern(name):
    """The guest's pattern: byte i is 7 i plus the sum of its name's bytes."""
    seed = sum(name.encode())
    return bytes((7 * i + seed) & 0xFF for i in range(PATTERN_BYTES))


def extent_bytes(pool_path, guest, disk):
    extent = pool.read(pool_path).extent(guest, disk)
    with open(pool_path, "rb") as stream:
        stream.seek(extent.start)
        return stream.read(extent.size)


def test_flushed_data_survives_a_kill_and_hostile_requests_fail_alone(tmp_path, target):
    image = build_image(tmp_path, STORAGE + GUESTS)
    with booted(image, target) as console:
        flushed = set()
        while len(flushed) < 2:
            flushed.add(console.expect(r"\[(alpha|beta)\] flushed status 0 used 1"))
        first = console.lines
    # the emulator is killed here, the moment both guests saw their flush complete
    for name in ("alpha", "beta"):
        assert "found: zeros" in guest_lines(first, name)          # a new disk reads as zeros
    lines = boot_to_end(image, target)
    for name, disk in (("alpha", "root"), ("beta", "data")):
        said = guest_lines(lines, name)
        assert said[:4] == ["virtio magic 0x74726976 version 2 device 2",
                            "status after features 11 queue max 64", f"capacity {DISK_MIB * 2048}",
                            f"id {disk}"], said[:6]
        assert "found: pattern" in said                             # what the killed boot flushed
        assert "read back: pattern" in said
        statuses = {line[len("hostile "):].split(":")[0]: line for line in said if line.startswith("hostile ")}
        assert statuses == {what: f"hostile {what}: status {status} used {used}"
                            for what, (status, used) in HOSTILE.items()}
        # the device serves on after every refusal; a broken ring needs a
        # reset (status 79: DEVICE_NEEDS_RESET and the driver's bits,
        # interrupt 2: a configuration change), and serves again after it
        assert "still serving: pattern" in said
        assert "broken ring: status 79 interrupt 2" in said
        assert "after reset: pattern" in said
        assert "queue outside memory: ready 0 status 64" in said
        assert f"[hv] {name} exited with code 0" in lines
        refused = [line for line in lines if line.startswith(f"[hv] {name} disk {disk}: ")]
        assert len(refused) == 8                                    # the first 8, then counted only
        assert f"[hv] {name} disk {disk}: request refused, I/O error (sectors outside the disk)" in refused
    # Seen from outside: each extent holds its guest's pattern at its
    # sectors and zeros everywhere else; none of the hostile writes (0xAA)
    # landed anywhere, in its own extent or the other's.
    for name, disk in (("alpha", "root"), ("beta", "data")):
        data = extent_bytes(tmp_path / "pool.img", name, disk)
        start = PATTERN_SECTOR * 512
        assert data[start:start + PATTERN_BYTES] == pattern(name)
        assert data[:start].count(0) == start
        assert data[start + PATTERN_BYTES:].count(0) == len(data) - start - PATTERN_BYTES


GROWN = STORAGE + guest_table("alpha", "1M", builtin="disk_tester", heartbeats=1_000_000) + \
    f'disks = [{{ name = "root", size = "{DISK_MIB}M" }}]\n'
# alpha/root is [1M, 3M) of the 8M pool: 5 MiB free after it
BAD_GROWS = {
    "disk alpha root grow 6M": "error: alpha root: the pool has 5 MiB free right after its extent",
    "disk alpha other grow 1M": "error: alpha has no disk of that name",
    "disk alpha root grow 3K": "error: a size is a whole number of MiB, as 8M or 1G",
    "disk alpha root grow 0M": "error: a size is a whole number of MiB, as 8M or 1G",
    "disk alpha root grow 99999999G": "error: a size is a whole number of MiB, as 8M or 1G",
    "disk alpha root grow 1.5M": "error: a size is a whole number of MiB, as 8M or 1G",
    "disk alpha root shrink 1M": "error: usage: disk NAME DISK grow SIZE",
    "disk alpha root grow": "error: usage: disk NAME DISK grow SIZE",
    "disk nobody root grow 1M": "error: no guest named 'nobody'",
}


def test_a_disk_grows_at_run_time_into_zeroed_pool_space_and_its_guest_is_told(tmp_path, target):
    image = build_image(tmp_path, GROWN)
    pool_path = tmp_path / "pool.img"
    with open(pool_path, "r+b") as stream:          # old data in the free space, as a released disk leaves
        stream.seek((1 + DISK_MIB) * pool.MIB)
        stream.write(b"\xaa" * (5 * pool.MIB))
    with machine(image, target) as run:
        run.console.expect(r"\[alpha\] heartbeat 1\r?\n")
        for command, answer in BAD_GROWS.items():
            assert run.control.command(command) == answer, command
        assert run.control.command("disk alpha root grow 2M") == "ok alpha root 4194304 bytes"
        run.console.expect(r"\[alpha\] new space: ")
        run.console.expect(r"\[hv\] powering off")
        lines = run.console.run_to_end()
    said = guest_lines(lines, "alpha")
    assert "grown: capacity 8192 interrupt 2" in said           # a configuration change interrupt
    assert "new space: zeros" in said
    header = pool.read(pool_path)                                # hvbuild's reader checks the checksum
    assert header.extent("alpha", "root").size == 2 * DISK_MIB * pool.MIB
    assert header.generation == 2                                # the build's, then the growth
    # the same image serves the grown disk at its next boot
    with machine(image, target) as run:
        run.console.expect(r"\[alpha\] heartbeat 1\r?\n")
        assert run.control.command("quit").startswith("ok")
        run.console.expect(r"\[hv\] powering off")
        again = run.console.run_to_end()
    assert "[hv] storage: the ATA disk holds this image's pool (8 MiB, 1 disk, grown at run time)" in again
    assert f"capacity {4 * DISK_MIB * 1024}" in guest_lines(again, "alpha")
