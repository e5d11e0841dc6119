"""hvbuild on bad input: one clear line naming the key or file, exit 2,
and nothing written."""

import subprocess
import sys

import pytest

GOOD_GUEST = """
[[guest]]
name = "alpha"
memory = "128K"
builtin = "heartbeat"
"""

CASES = {
    "unknown top-level key": ("colour = 1\n" + GOOD_GUEST, "hv.toml: colour: unknown key"),
    "unknown hypervisor key": ("[hypervisor]\nslice = 5\n" + GOOD_GUEST, "hv.toml: hypervisor.slice: unknown key"),
    "unknown guest key": (GOOD_GUEST + "colour = 'red'\n", "hv.toml: guest[0].colour: unknown key"),
    "time slice of the wrong type": ("[hypervisor]\ntime_slice = '1ms'\n" + GOOD_GUEST,
                                     "hv.toml: hypervisor.time_slice: must be an integer, not str"),
    "time slice too short": ("[hypervisor]\ntime_slice = 5\n" + GOOD_GUEST,
                             "hv.toml: hypervisor.time_slice: 5 is out of range"),
    "unknown backend": ("[hypervisor]\nbackend = 'tdx'\n" + GOOD_GUEST,
                        "hv.toml: hypervisor.backend: unknown backend 'tdx'"),
    "unsupported console": ("[hypervisor]\nconsole = 'vga'\n" + GOOD_GUEST,
                            "hv.toml: hypervisor.console: unknown console 'vga'"),
    "no guests": ("[hypervisor]\n", "hv.toml: guest: no guests"),
    "guest without a name": ("[[guest]]\nbuiltin = 'heartbeat'\n", "hv.toml: guest[0].name: missing"),
    "bad guest name": (GOOD_GUEST.replace('"alpha"', '"Alpha One"'), "hv.toml: guest[0].name: 'Alpha One' must be"),
    "duplicate names": (GOOD_GUEST + GOOD_GUEST, "hv.toml: guest[1].name: duplicate guest name 'alpha'"),
    "memory too small": (GOOD_GUEST.replace('"128K"', '"16K"'), "hv.toml: guest[0].memory: 16384 bytes is too small"),
    "memory too large": (GOOD_GUEST.replace('"128K"', '"2G"'), "hv.toml: guest[0].memory: 2147483648 bytes is too large"),
    "memory not a size": (GOOD_GUEST.replace('"128K"', '"lots"'), "hv.toml: guest[0].memory: 'lots' is not a size"),
    "memory not page granular": (GOOD_GUEST.replace('"128K"', "65537"), "hv.toml: guest[0].memory: 65537 bytes is not a multiple of 4K"),
    "two images": (GOOD_GUEST + "elf = 'x.elf'\n", "hv.toml: guest[0]: give exactly one of"),
    "unknown fault policy": (GOOD_GUEST + "on_fault = 'reboot'\n",
                             "hv.toml: guest[0].on_fault: 'reboot' is not one of ['stop', 'restart']"),
    "disks without a pool": (GOOD_GUEST + "disks = [{ name = 'root', size = '8M' }]\n",
                             "hv.toml: guest[0].disks: disks need a pool: add [storage] pool"),
    "storage without a pool": ("[storage]\nsize = '1G'\n" + GOOD_GUEST, "hv.toml: storage.pool: missing"),
    "unknown storage key": ("[storage]\npool = 'p.img'\nkind = 'raw'\n" + GOOD_GUEST,
                            "hv.toml: storage.kind: unknown key"),
    "pool past 28-bit LBAs": ("[storage]\npool = 'p.img'\nsize = '129G'\n" + GOOD_GUEST,
                              "hv.toml: storage.size: 138512695296 bytes is too large; at most 128G"),
    "pool size not whole MiB": ("[storage]\npool = 'p.img'\nsize = '3584K'\n" + GOOD_GUEST,
                                "hv.toml: storage.size: 3670016 bytes is not a multiple of 1M"),
    "disk size not whole MiB": ("[storage]\npool = 'p.img'\n" + GOOD_GUEST
                                + "disks = [{ name = 'root', size = '100K' }]\n",
                                "hv.toml: guest[0].disks[0].size: 102400 bytes is too small; at least 1M"),
    "disk without a size": ("[storage]\npool = 'p.img'\n" + GOOD_GUEST + "disks = [{ name = 'root' }]\n",
                            "hv.toml: guest[0].disks[0].size: missing"),
    "duplicate disk names": ("[storage]\npool = 'p.img'\n" + GOOD_GUEST
                             + "disks = [{ name = 'root', size = '1M' }, { name = 'root', size = '2M' }]\n",
                             "hv.toml: guest[0].disks[1].name: duplicate disk name 'root'"),
    "too many disks": ("[storage]\npool = 'p.img'\n" + GOOD_GUEST + "disks = ["
                       + ", ".join(f"{{ name = 'd{i}', size = '1M' }}" for i in range(5)) + "]\n",
                       "hv.toml: guest[0].disks: 5 disks; at most 4 per guest"),
    "share of zero": (GOOD_GUEST + "share = 0\n", "hv.toml: guest[0].share: 0 is out of range [1, 10000]"),
    "share too large": (GOOD_GUEST + "share = 10001\n", "hv.toml: guest[0].share: 10001 is out of range"),
    "share not a number": (GOOD_GUEST + "share = '2'\n", "hv.toml: guest[0].share: must be an integer, not str"),
    "restart limit without restarts": (GOOD_GUEST + "max_restarts = 3\n",
                                       "hv.toml: guest[0].max_restarts: only valid with on_fault = \"restart\""),
    "expected exit code not a number": (GOOD_GUEST + "expect_exit = 'zero'\n",
                                        "hv.toml: guest[0].expect_exit: must be an integer, not str"),
    "restart limit of zero": (GOOD_GUEST + "on_fault = 'restart'\nmax_restarts = 0\n",
                              "hv.toml: guest[0].max_restarts: 0 is out of range"),
    "unknown builtin": (GOOD_GUEST.replace('"heartbeat"', '"tetris"'), "hv.toml: guest[0].builtin: unknown builtin guest 'tetris'"),
    "missing ELF file": ("[[guest]]\nname = 'a'\nelf = 'missing.elf'\n", "hv.toml: guest[0].elf: no such file: missing.elf"),
    "flat image without load address": ("[[guest]]\nname = 'a'\nflat = 'blob.bin'\nmode = 'real'\n",
                                        "hv.toml: guest[0].load_address: missing"),
    "flat image without mode": ("[[guest]]\nname = 'a'\nflat = 'blob.bin'\nload_address = 0x7C00\n",
                                "hv.toml: guest[0].mode: missing"),
    "unknown mode": ("[[guest]]\nname = 'a'\nflat = 'blob.bin'\nload_address = 0\nmode = 'virtual'\n",
                     "hv.toml: guest[0].mode: 'virtual' is not one of"),
    "flat image beyond memory": ("[[guest]]\nname = 'a'\nmemory = '64K'\nflat = 'blob.bin'\nload_address = 0xFFF0\nmode = 'real'\n",
                                 "hv.toml: guest[0].flat: segment [0xfff0, 0x10010) lies outside its memory"),
    "not an ELF file": ("[[guest]]\nname = 'a'\nelf = 'blob.bin'\n", "hv.toml: guest[0].elf: blob.bin: not a valid ELF file"),
    "not TOML": ("[[guest]\n", "hv.toml: not valid TOML"),
    "command line for an ELF guest": ("[[guest]]\nname = 'a'\nelf = 'blob.bin'\ncmdline = 'x'\n",
                                      "hv.toml: guest[0].cmdline: only valid for a guest with multiboot or linux image"),
    "multiboot module missing": ("[[guest]]\nname = 'a'\nmultiboot = 'blob.bin'\nmodules = ['gone.bin']\n",
                                 "hv.toml: guest[0].modules[0]: no such file: gone.bin"),
    "multiboot kernel in real mode": ("[[guest]]\nname = 'a'\nmultiboot = 'blob.bin'\nmode = 'real'\n",
                                      "hv.toml: guest[0].mode: a multiboot kernel starts in 'protected' mode"),
    "multiboot file without a header": ("[[guest]]\nname = 'a'\nmultiboot = 'blob.bin'\n",
                                        "hv.toml: guest[0].multiboot: blob.bin: no multiboot header"),
}


def run_hvbuild(directory, text):
    (directory / "hv.toml").write_text(text)
    (directory / "blob.bin").write_bytes(bytes(range(32)))
    return subprocess.run([sys.executable, "-m", "builder.cli", "hv.toml", "-o", "out"],
                          cwd=directory, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_gives_one_line_exit_2_and_no_output(tmp_path, case):
    text, expected = CASES[case]
    done = run_hvbuild(tmp_path, text)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"hvbuild: error: {expected}"), lines[0]
    assert not (tmp_path / "out").exists()


def test_a_multiboot_kernel_that_needs_a_video_mode_is_refused(tmp_path):
    import struct
    magic, flags = 0x1BADB002, 0x4                   # bit 2: the kernel requires a video mode
    (tmp_path / "video.bin").write_bytes(bytes(64) + struct.pack("<III", magic, flags, -(magic + flags) & 0xFFFFFFFF))
    done = run_hvbuild(tmp_path, "[[guest]]\nname = 'a'\nmultiboot = 'video.bin'\n")
    assert done.returncode == 2
    assert done.stderr.strip() == ("hvbuild: error: hv.toml: guest[0].multiboot: video.bin: the kernel requires "
                                   "multiboot features this loader lacks (header flags 0x4; video modes are "
                                   "not offered)")


def test_a_multiboot_kernel_and_modules_beyond_memory_are_refused(tmp_path):
    from harness import binutils_guest
    kernel = binutils_guest(tmp_path, "multiboot_kernel.S", bits=32, link_address=0x100000)
    (tmp_path / "big.bin").write_bytes(bytes(3 * 1024 * 1024))
    done = run_hvbuild(tmp_path, f"[[guest]]\nname = 'a'\nmemory = '4M'\nmultiboot = '{kernel}'\n"
                                 "modules = ['big.bin']\n")
    assert done.returncode == 2
    assert done.stderr.startswith("hvbuild: error: hv.toml: guest[0].multiboot: the kernel, its modules and "
                                  "the boot information need 0x")
    assert done.stderr.rstrip().endswith("tables ends at 0x3ff000")


def test_an_elf_segment_outside_guest_memory_is_refused(tmp_path):
    from harness import binutils_guest
    guest = binutils_guest(tmp_path, "elf32_hello.S", bits=32, link_address=0x20000)
    done = run_hvbuild(tmp_path, f"[[guest]]\nname = 'a'\nmemory = '64K'\nelf = '{guest}'\n")
    assert done.returncode == 2
    assert "hvbuild: error: hv.toml: guest[0].elf: segment [0x20000, " in done.stderr
    assert "lies outside its memory below the start-up tables [0, 0xf000)" in done.stderr


def test_a_good_config_builds(tmp_path):
    done = run_hvbuild(tmp_path, GOOD_GUEST)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["build-report.txt", "hv.elf", "hv.iso"]


def test_a_missing_config_file_is_named(tmp_path):
    done = subprocess.run([sys.executable, "-m", "builder.cli", "nope.toml", "-o", "out"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == "hvbuild: error: nope.toml: cannot read config: No such file or directory\n"
    assert not (tmp_path / "out").exists()
