"""builder/linux.py, the x86 boot protocol loader, against the protocol's
own layout (Documentation/arch/x86/boot.rst, zero-page.rst): a setup
header it must refuse or accept, the zero page it writes, the e820 map,
where the initrd goes; and hvbuild's one-line errors for a bad bzImage,
an initrd that does not fit and a command line over the header's limit.
The bzImages here are made up; tests/boot/test_linux.py boots real ones."""

import struct
import subprocess
import sys

import pytest

from builder import hw, linux
from builder.errors import BuildError

MIB = 1 << 20


def bzimage(version=0x020F, xloadflags=linux.XLF_KERNEL_64, setup_sects=2, kernel_size=0x3000,
            cmdline_size=0x7FF, init_size=0x400000, pref_address=0x1000000, initrd_addr_max=0x7FFFFFFF,
            relocatable=1, magic=b"HdrS"):
    """A bzImage's real-mode part with a setup header, then a kernel of zeros."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[linux.SETUP_SECTS] = setup_sects
    struct.pack_into("<H", setup, linux.BOOT_FLAG, linux.BOOT_FLAG_VALUE)
    setup[linux.HEADER_END_OFFSET] = 0x6A             # header ends at 0x26C, as 2.15's does
    setup[linux.HEADER_MAGIC:linux.HEADER_MAGIC + 4] = magic
    struct.pack_into("<H", setup, linux.VERSION, version)
    struct.pack_into("<IIB", setup, linux.INITRD_ADDR_MAX, initrd_addr_max, 0x200000, relocatable)
    struct.pack_into("<H", setup, linux.XLOADFLAGS, xloadflags)
    struct.pack_into("<I", setup, linux.CMDLINE_SIZE, cmdline_size)
    struct.pack_into("<QI", setup, linux.PREF_ADDRESS, pref_address, init_size)
    return bytes(setup) + bytes(range(256)) * (kernel_size // 256)


def place(data, memory=64 * MIB, cmdline="console=ttyS0", initrd=b"\x1f\x8b" + bytes(5000), rsdp=0xF0000):
    header = linux.read_header(data, "guest[0].linux", "bzImage")
    return linux.place(data, header, memory, memory - 4 * hw.PAGE_SIZE, cmdline, initrd, rsdp,
                       "guest[0].linux", "bzImage")


def segments(placed):
    return dict(placed.segments)


@pytest.mark.parametrize("change, message", [
    (dict(magic=b"MZ\0\0"), "not a Linux bzImage (no \"HdrS\" setup header at 0x202)"),
    (dict(version=0x020B), "boot protocol 2.11 is too old; the 64-bit entry needs 2.12 or newer"),
    (dict(xloadflags=0), "the kernel has no 64-bit entry (xloadflags bit 0 clear): a 32-bit kernel"),
])
def test_a_header_the_loader_cannot_start_is_refused_in_one_line(change, message):
    with pytest.raises(BuildError) as error:
        linux.read_header(bzimage(**change), "guest[0].linux", "bzImage")
    assert str(error.value) == f"guest[0].linux: bzImage: {message}"


def test_a_file_shorter_than_a_header_is_not_a_bzimage():
    with pytest.raises(BuildError, match="not a Linux bzImage"):
        linux.read_header(b"\x7fELF" + bytes(100), "guest[0].linux", "vmlinux")


def test_the_zero_page_carries_the_header_and_what_the_loader_filled_in():
    data = bzimage()
    placed = place(data)
    zero_page = segments(placed)[linux.ZERO_PAGE]
    assert placed.zero_page == linux.ZERO_PAGE == 0x7000
    assert placed.entry == 0x100200                      # the 64-bit entry: load address + 0x200
    # the header, from 0x1F1 to its end (0x202 + the byte at 0x201), copied,
    # but for the fields the loader fills in
    expected = bytearray(data[0x1F1:0x26C])
    expected[0x210 - 0x1F1] = 0xFF                       # type_of_loader: undefined
    expected[0x211 - 0x1F1] |= 1                         # loadflags: LOADED_HIGH
    address, size = struct.unpack_from("<II", zero_page, 0x218)
    struct.pack_into("<II", expected, 0x218 - 0x1F1, address, size)     # ramdisk_image, ramdisk_size
    struct.pack_into("<I", expected, 0x228 - 0x1F1, linux.CMDLINE)      # cmd_line_ptr
    assert zero_page[0x1F1:0x26C] == expected
    assert zero_page[0x26C:0x2D0] == bytes(0x2D0 - 0x26C)
    assert segments(placed)[linux.CMDLINE] == b"console=ttyS0\0"
    assert struct.unpack_from("<Q", zero_page, 0x070)[0] == 0xF0000   # acpi_rsdp_addr (2.14+)
    # the protected-mode kernel, without its real-mode part, at 1 MiB
    assert segments(placed)[0x100000] == data[3 * 512:]


def test_the_e820_map_reserves_the_legacy_areas_the_start_up_tables_and_the_device_windows():
    zero_page = segments(place(bzimage()))[linux.ZERO_PAGE]
    count = zero_page[0x1E8]
    entries = [struct.unpack_from("<QQI", zero_page, 0x2D0 + 20 * i) for i in range(count)]
    top = 64 * MIB - 4 * hw.PAGE_SIZE
    assert entries == [
        (0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x100000, top - 0x100000, 1), (top, 0x4000, 2),
        (0xD0000000, 5 * 0x1000, 2), (hw.IOAPIC_BASE, 0x1000, 2), (hw.LAPIC_BASE, 0x1000, 2)]


def test_the_initrd_goes_high_page_aligned_below_its_limit_and_clear_of_the_kernel():
    initrd = bytes(5000)
    zero_page = segments(place(bzimage(), initrd=initrd))[linux.ZERO_PAGE]
    address, size = struct.unpack_from("<II", zero_page, 0x218)
    top = 64 * MIB - 4 * hw.PAGE_SIZE
    assert size == 5000 and address % hw.PAGE_SIZE == 0
    assert address + size <= top < address + size + hw.PAGE_SIZE
    limited = segments(place(bzimage(initrd_addr_max=32 * MIB - 1), initrd=initrd))[linux.ZERO_PAGE]
    address = struct.unpack_from("<I", limited, 0x218)[0]
    assert address + 5000 <= 32 * MIB and address >= 32 * MIB - 2 * hw.PAGE_SIZE


def test_no_initrd_leaves_the_ramdisk_fields_zero():
    zero_page = segments(place(bzimage(), initrd=None))[linux.ZERO_PAGE]
    assert struct.unpack_from("<II", zero_page, 0x218) == (0, 0)


def test_an_initrd_that_would_reach_into_the_kernel_is_refused():
    # the kernel decompresses at pref_address 16 MiB and needs init_size 12 MiB there: up to 28 MiB
    data = bzimage(init_size=12 * MIB)
    with pytest.raises(BuildError) as error:
        place(data, memory=32 * MIB, initrd=bytes(5 * MIB))
    assert str(error.value).startswith("guest[0].linux.initrd: 5242880 bytes do not fit between the "
                                       "kernel (up to 0x1c00000) and ")


def test_a_kernel_bigger_than_the_guest_is_refused():
    with pytest.raises(BuildError, match=r"the kernel needs guest memory up to 0x1c00000 \(init_size "
                                         r"0xc00000\); the guest's ends at 0xfc000"):
        place(bzimage(init_size=12 * MIB), memory=1 * MIB, initrd=None)


def test_a_command_line_over_the_headers_limit_is_refused():
    with pytest.raises(BuildError) as error:
        place(bzimage(cmdline_size=16), cmdline="console=ttyS0 quiet")
    assert str(error.value) == ("guest[0].linux.cmdline: 19 bytes; the kernel takes at most 16 "
                                "(its header's cmdline_size)")
    place(bzimage(cmdline_size=19), cmdline="console=ttyS0 quiet")     # exactly the limit: fine


@pytest.mark.parametrize("config, expected", [
    ("linux = 'blob.bin'\n", "hv.toml: guest[0].linux: blob.bin: not a Linux bzImage"),
    ("linux = 'bzImage'\ninitrd = 'big.img'\nmemory = '32M'\n",
     "hv.toml: guest[0].linux.initrd: 20971520 bytes do not fit between the kernel"),
    ("linux = 'bzImage'\ncmdline = '" + "x" * 300 + "'\n",
     "hv.toml: guest[0].linux.cmdline: 300 bytes; the kernel takes at most 255"),
    ("linux = 'bzImage'\ninitrd = 'gone.img'\n", "hv.toml: guest[0].initrd: no such file: gone.img"),
    ("linux = 'bzImage'\nmode = 'protected'\n",
     "hv.toml: guest[0].mode: a Linux kernel starts at its 64-bit entry: 'long' mode"),
    ("elf = 'blob.bin'\ninitrd = 'big.img'\n", "hv.toml: guest[0].initrd: only valid for a guest with linux image"),
])
def test_hvbuild_gives_one_line_and_exit_2_for_a_linux_guest_it_cannot_boot(tmp_path, config, expected):
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bzImage").write_bytes(bzimage(cmdline_size=255, init_size=12 * MIB))
    (tmp_path / "big.img").write_bytes(bytes(20 * MIB))
    (tmp_path / "hv.toml").write_text("[[guest]]\nname = 'a'\nmemory = '64M'\n" + config
                                      if "memory" not in config else "[[guest]]\nname = 'a'\n" + config)
    done = subprocess.run([sys.executable, "-m", "builder.cli", "hv.toml", "-o", "out"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"hvbuild: error: {expected}"), done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
