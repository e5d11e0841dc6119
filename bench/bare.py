"""The compute kernel as a bare multiboot kernel, for the slowdown figure.

bench/bare.s.j2 runs guests/bench_compute.s.j2, the very bytes the kernel
guest runs, on the machine itself.  Assembled with the builder's keystone
stage and written with its ELF writer, booted like the hypervisor (GRUB
ISO, Bochs).
"""

from __future__ import annotations

from pathlib import Path

from builder import elf, hw
from builder.assemble import assemble
from builder.build import make_iso
from builder.guest_images import BENCH_KERNEL_BYTES, HYPERCALLS, bench_kernel_constants
from builder.render import render

TEMPLATE = "bench/bare.s.j2"
CODE_BASE = 0x100000                # multiboot loads at 1 MiB and up
DATA_BASE = 0x200000                # stack, then the kernel's buffer: zero-filled by the loader
STACK_SIZE = 0x10000
MULTIBOOT_FLAGS = hw.MULTIBOOT_FLAG_PAGE_ALIGN | hw.MULTIBOOT_FLAG_MEMORY_INFO


def constants() -> dict[str, int]:
    buffer = DATA_BASE + STACK_SIZE
    return {**hw.asm_constants(), **bench_kernel_constants(buffer),
            "HYPERCALL_EXIT": HYPERCALLS["EXIT"],           # guests/lib.s.j2's guest_exit
            "BARE_STACK_TOP": buffer,
            "BARE_MULTIBOOT_FLAGS": MULTIBOOT_FLAGS,
            "BARE_MULTIBOOT_CHECKSUM": -(hw.MULTIBOOT_HEADER_MAGIC + MULTIBOOT_FLAGS) & 0xFFFFFFFF}


def image() -> bytes:
    """The bare kernel as a multiboot ELF32."""
    assembly = assemble(render(TEMPLATE, constants()), CODE_BASE, TEMPLATE)
    segments = [elf.LoadSegment(CODE_BASE, assembly.code, len(assembly.code), elf.PF_R | elf.PF_X),
                elf.LoadSegment(DATA_BASE, b"", STACK_SIZE + BENCH_KERNEL_BYTES, elf.PF_R | elf.PF_W)]
    return elf.write_elf(segments, assembly.labels["bare_entry"], (CODE_BASE, len(assembly.code)),
                         assembly.labels)


def build(directory: Path) -> Path:
    """Write bare.elf and bare.iso into `directory`; return the ELF's path."""
    path = directory / "bare.elf"
    path.write_bytes(image())
    make_iso(path, path.with_suffix(".iso"))
    return path
