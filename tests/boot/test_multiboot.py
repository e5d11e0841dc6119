"""A multiboot v1 kernel boots as a guest the way a multiboot loader starts
it (builder/multiboot.py): EAX = 0x2BADB002, EBX = its multiboot
information with memory sizes, a memory map that leaves out the reserved
pages, the command line, the loader's name and its modules, page-aligned.
Booted on every target beside a witness."""

import pytest
from harness import binutils_guest, boot_to_end, build_image, guest_lines, guest_table

pytestmark = pytest.mark.boot

MEMORY = 4 * 1024 * 1024
START_UP_TABLES = 0x1000          # a protected-mode guest's GDT page, at the top


def test_a_multiboot_kernel_gets_its_boot_information(tmp_path, target):
    kernel = binutils_guest(tmp_path, "multiboot_kernel.S", bits=32, link_address=0x100000)
    (tmp_path / "greeting.txt").write_text("hello from a module\nsecond line\n")
    config = (guest_table("kernel", "4M", multiboot=kernel, cmdline="console=com1 answer=42")
              + 'modules = ["greeting.txt"]\n'
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=3))
    lines = boot_to_end(build_image(tmp_path, config), target)
    top = MEMORY - START_UP_TABLES
    assert guest_lines(lines, "kernel") == [
        "magic 0x2badb002 in eax",
        "flags 0000024d ",                # memory, cmdline, modules, memory map, loader name
        "mem_lower 0000027f ",            # 639 KiB
        f"mem_upper {(top - 0x100000) // 1024:08x} ",
        "cmdline console=com1 answer=42",
        "boot loader hvbuild",
        "mmap base 00000000 length 0009fc00 type 00000001 ",
        "mmap base 0009fc00 length 00060400 type 00000002 ",
        f"mmap base 00100000 length {top - 0x100000:08x} type 00000001 ",
        f"mmap base {top:08x} length {START_UP_TABLES:08x} type 00000002 ",
        "module greeting.txt says hello from a module",
        "module page offset 00000000 ",
    ]
    assert "[hv] kernel exited with code 0" in lines
    assert "[hv] witness exited with code 0" in lines
