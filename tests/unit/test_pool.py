"""The storage pool (builder/pool.py) as hvbuild keeps it: extents that
keep their data from build to build, new ones zeroed, freed only when
asked, and a pool that is too small or damaged refused with the file
untouched (`hvbuild`, exit 2, one line)."""

import hashlib
import subprocess
import sys

import pytest

from builder import pool

MIB = 1 << 20
GUEST = """
[[guest]]
name = "{name}"
memory = "128K"
builtin = "heartbeat"
disks = [{disks}]
"""


def config(tmp_path, guests, size="64M"):
    """Write hv.toml: [storage] pool.img of `size`, guests as {name: "disks"}."""
    storage = f'[storage]\npool = "pool.img"\n' + (f'size = "{size}"\n' if size else "")
    text = storage + "".join(GUEST.format(name=name, disks=disks) for name, disks in guests.items())
    (tmp_path / "hv.toml").write_text(text)
    return tmp_path / "hv.toml"


def hvbuild(tmp_path, *extra):
    return subprocess.run([sys.executable, "-m", "builder.cli", str(tmp_path / "hv.toml"), "-o",
                           str(tmp_path / "out"), "--no-iso", *extra], capture_output=True, text=True)


def extents(tmp_path):
    header = pool.read(tmp_path / "pool.img")
    return {e.key: (e.start, e.size) for e in header.extents}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_disks_keep_their_extents_and_data_across_builds(tmp_path):
    config(tmp_path, {"alpha": '{ name = "root", size = "16M" }, { name = "data", size = "8M" }',
                      "beta": '{ name = "root", size = "4M" }'})
    first = hvbuild(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "(created)" in first.stdout
    placed = extents(tmp_path)
    assert placed == {"alpha/root": (MIB, 16 * MIB), "alpha/data": (17 * MIB, 8 * MIB),
                      "beta/root": (25 * MIB, 4 * MIB)}
    image = tmp_path / "pool.img"
    assert image.stat().st_size == 64 * MIB
    with open(image, "r+b") as stream:                       # a guest wrote its disk
        stream.seek(placed["beta/root"][0])
        stream.write(b"beta's data")
    again = hvbuild(tmp_path)
    assert again.returncode == 0, again.stderr
    assert extents(tmp_path) == placed
    with open(image, "rb") as stream:
        stream.seek(placed["beta/root"][0])
        assert stream.read(11) == b"beta's data"
    assert pool.read(image).generation == 2


def test_a_removed_disk_is_kept_until_released_and_its_space_reused_zeroed(tmp_path):
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }', "beta": '{ name = "old", size = "8M" }'})
    assert hvbuild(tmp_path).returncode == 0
    old_start = extents(tmp_path)["beta/old"][0]
    with open(tmp_path / "pool.img", "r+b") as stream:
        stream.seek(old_start)
        stream.write(b"\xa5" * MIB)                          # beta's data, then beta drops the disk
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }', "beta": ""})
    kept = hvbuild(tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "beta/old: 8 MiB at byte 0x900000 (not in the config: kept until --release)" in kept.stdout
    assert "beta/old" in extents(tmp_path)
    wrong = hvbuild(tmp_path, "--release", "beta/nothing")
    assert wrong.returncode == 2 and "--release beta/nothing: the pool has no such disk" in wrong.stderr
    released = hvbuild(tmp_path, "--release", "beta/old")
    assert released.returncode == 0, released.stderr
    assert "beta/old" not in extents(tmp_path)
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }', "beta": '{ name = "new", size = "8M" }'})
    assert hvbuild(tmp_path).returncode == 0
    assert extents(tmp_path)["beta/new"][0] == old_start          # first fit: the freed space
    with open(tmp_path / "pool.img", "rb") as stream:
        stream.seek(old_start)
        assert stream.read(MIB) == bytes(MIB), "a new disk reads another's old data"


@pytest.mark.parametrize("case", ["too small", "damaged", "not a pool", "future version", "shrunk"])
def test_a_pool_that_cannot_serve_is_refused_untouched(tmp_path, case):
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }'}, size="16M")
    assert hvbuild(tmp_path).returncode == 0
    image = tmp_path / "pool.img"
    if case == "too small":
        config(tmp_path, {"alpha": '{ name = "root", size = "8M" }', "beta": '{ name = "root", size = "8M" }'},
               size="16M")
        expected = "guest[1].disks[0].size: disk beta/root needs 8M; the pool pool.img has 7M free"
    elif case == "damaged":
        with open(image, "r+b") as stream:
            stream.seek(pool.HEADER_FORMAT.size + 20)
            stream.write(b"\x01")
        expected = "the pool header is damaged (its checksum does not match)"
    elif case == "not a pool":
        image.write_bytes(bytes(2 * MIB))
        expected = "not a storage pool (no pool header at its start)"
    elif case == "future version":
        header = bytearray(image.read_bytes()[:pool.HEADER_BYTES])
        header[8] = 9
        with open(image, "r+b") as stream:
            stream.write(header)
        expected = "pool header version 9; this hvbuild reads version 1"
    else:
        config(tmp_path, {"alpha": '{ name = "root", size = "8M" }'}, size="8M")
        expected = "cannot shrink it"
    before = digest(image)
    refused = hvbuild(tmp_path)
    assert refused.returncode == 2
    assert len(refused.stderr.splitlines()) == 1 and expected in refused.stderr, refused.stderr
    assert digest(image) == before


def test_a_pool_is_created_only_with_a_size_and_grows_when_asked(tmp_path):
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }'}, size=None)
    missing = hvbuild(tmp_path)
    assert missing.returncode == 2 and "no such pool: give [storage] size to create it" in missing.stderr
    assert not (tmp_path / "pool.img").exists()
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }'}, size="16M")
    assert hvbuild(tmp_path).returncode == 0
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }', "beta": '{ name = "root", size = "24M" }'},
           size="48M")
    grown = hvbuild(tmp_path)
    assert grown.returncode == 0, grown.stderr
    assert (tmp_path / "pool.img").stat().st_size == 48 * MIB
    assert extents(tmp_path)["beta/root"] == (9 * MIB, 24 * MIB)


def test_the_header_round_trips_and_refuses_overlaps():
    header = pool.Header(64 * MIB, 3, (pool.Extent("a", "root", MIB, 2 * MIB),
                                      pool.Extent("b", "root", 3 * MIB, MIB)))
    assert pool.unpack(pool.pack(header), "p") == header
    overlapping = pool.Header(64 * MIB, 3, (pool.Extent("a", "root", MIB, 2 * MIB),
                                           pool.Extent("b", "root", 2 * MIB, MIB)))
    with pytest.raises(pool.BuildError, match="disk b/root's extent .* overlaps or leaves the pool"):
        pool.unpack(pool.pack(overlapping), "p")


def test_hvbuild_names_the_pool_beside_the_image_for_hvrun(tmp_path):
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }'})
    assert hvbuild(tmp_path).returncode == 0
    assert (tmp_path / "out" / "hv.pool").read_text() == f"{tmp_path / 'pool.img'}\n"
    (tmp_path / "hv.toml").write_text(GUEST.format(name="alpha", disks=""))
    assert hvbuild(tmp_path).returncode == 0
    assert not (tmp_path / "out" / "hv.pool").exists(), "a pool the config no longer has stays named"


def test_a_disk_grown_at_run_time_keeps_its_size_and_never_grows_at_build_time(tmp_path):
    """The hypervisor grows a disk by rewriting the header (hv/drivers/ata.s.j2
    storage_grow): here the same rewrite, done by hand.  The next build keeps
    the larger extent and says so; a config asking for more is refused."""
    config(tmp_path, {"alpha": '{ name = "root", size = "8M" }'}, size="32M")
    assert hvbuild(tmp_path).returncode == 0
    header = pool.read(tmp_path / "pool.img")
    start = header.extents[0].start
    grown = pool.Header(header.size, header.generation + 1, (pool.Extent("alpha", "root", start, 16 * MIB),))
    with open(tmp_path / "pool.img", "r+b") as stream:
        stream.write(pool.pack(grown))
    kept = hvbuild(tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "alpha/root: 16 MiB at byte 0x100000 (kept, grown at run time from 8 MiB)" in kept.stdout
    assert extents(tmp_path) == {"alpha/root": (start, 16 * MIB)}
    config(tmp_path, {"alpha": '{ name = "root", size = "32M" }'}, size="32M")
    refused = hvbuild(tmp_path)
    assert refused.returncode == 2
    assert "disk alpha/root has 16M in the pool; a disk cannot grow at build time" in refused.stderr
