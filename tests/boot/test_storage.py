"""The storage pool at run time (issue 11, first part): hvrun attaches the
pool file as the ATA disk the hypervisor drives (hv/drivers/ata.s.j2),
and at boot the hypervisor checks that the disk holds the pool this image
was built for, byte for byte its header (or that header with disks grown
at run time since), before it would serve any disk.  The guests run
whatever it finds."""

from dataclasses import replace

import pytest
from harness import boot_to_end, booted, build_image, guest_table

from builder import pool
from builder.errors import BuildError

pytestmark = pytest.mark.boot

ALPHA = guest_table("alpha", "128K", builtin="heartbeat", heartbeats=2) + 'disks = [{ name = "root", size = "2M" }]\n'
BETA = guest_table("beta", "128K", builtin="heartbeat", heartbeats=2)
GUESTS = ALPHA + BETA
FOUND = "[hv] storage: the ATA disk holds this image's pool (4 MiB, 1 disk)"
FOREIGN = ("[hv] storage: the ATA disk does not hold the pool this image was built for (rebuild it): "
           "the guests' disks are offline")
ABSENT = "[hv] storage: no ATA disk holds the pool: the guests' disks are offline"


def storage(size="4M"):
    return f'[storage]\npool = "pool.img"\nsize = "{size}"\n\n'


def ended(lines):
    return "[hv] alpha exited with code 0" in lines and "[hv] beta exited with code 0" in lines


def test_the_hypervisor_reads_the_pool_it_was_built_for(tmp_path, target):
    lines = boot_to_end(build_image(tmp_path, storage() + GUESTS), target)
    assert FOUND in lines
    assert ended(lines)


def test_an_image_built_for_another_state_of_the_pool_serves_no_disk(tmp_path, target):
    """The pool moved on (a later build gave beta a disk: generation and
    extents changed); the image built before must not serve from it."""
    old = build_image(tmp_path, storage() + GUESTS)
    newer = ALPHA + BETA + 'disks = [{ name = "root", size = "1M" }]\n'
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "pool.img").symlink_to(tmp_path / "pool.img")
    build_image(tmp_path / "newer", storage() + newer)
    with booted(old, target) as console:
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert FOREIGN in lines
    assert ended(lines)


def test_without_the_disk_the_guests_run_and_the_disks_are_offline(tmp_path, target):
    image = build_image(tmp_path, storage() + GUESTS)
    with booted(image, target, pool=None) as console:
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert ABSENT in lines
    assert ended(lines)


def test_a_pool_serves_one_machine_at_a_time(tmp_path):
    """A second hvrun on a pool in use is refused before its emulator
    starts; the first runs on undisturbed."""
    image = build_image(tmp_path, storage() + GUESTS)
    with booted(image, "qemu") as console:
        with pytest.raises(BuildError, match=r"pool.img: the storage pool is in use by another hvrun"):
            with booted(image, "qemu"):
                pass
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert FOUND in lines
    assert ended(lines)


def rewritten(path, change):
    """The pool's header with `change(extent, header) -> (extent, generation)` applied."""
    header = pool.read(path)
    extent, generation = change(header.extents[0], header)
    with open(path, "r+b") as stream:
        stream.write(pool.pack(pool.Header(header.size, generation, (extent,))))


GROWN_HEADERS = {   # alpha/root is [1M, 3M) of the 4M pool
    "grown into the free space": (lambda e, h: (replace(e, size=e.size + pool.MIB), h.generation + 1), True),
    "shrunk": (lambda e, h: (replace(e, size=e.size - pool.MIB), h.generation + 1), False),
    "not whole MiB": (lambda e, h: (replace(e, size=e.size + 512), h.generation + 1), False),
    "past the pool's end": (lambda e, h: (replace(e, size=e.size + 2 * pool.MIB), h.generation + 1), False),
    "an older generation": (lambda e, h: (replace(e, size=e.size + pool.MIB), h.generation - 1), False),
    "moved": (lambda e, h: (replace(e, start=e.start + pool.MIB), h.generation + 1), False),
    "renamed": (lambda e, h: (replace(e, disk="data"), h.generation + 1), False),
}


@pytest.mark.parametrize("case", GROWN_HEADERS)
def test_only_a_header_with_disks_grown_since_the_build_serves(tmp_path, target, case):
    """At run time a disk grows (the control console's disk command); the
    image then serves the pool whose header is its build's with grown
    disks, and nothing else that differs."""
    image = build_image(tmp_path, storage() + GUESTS)
    change, serves = GROWN_HEADERS[case]
    rewritten(tmp_path / "pool.img", change)
    lines = boot_to_end(image, target)
    assert (FOUND[:-1] + ", grown at run time)" if serves else FOREIGN) in lines
    assert ended(lines)
