"""Stage 6: write the multiboot image as an ELF32 executable.

QEMU's `-kernel` accepts only ELF32 multiboot images, and GRUB loads either,
so the image is ELF32: every PT_LOAD segment at its physical address (all
below 4 GiB), bytes past a segment's file size zeroed by the loader.  A
`.text` section and a symbol table name the hypervisor's labels for gdb,
objdump and crash reports (ELF: System V ABI, "Object Files").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PAGE = 0x1000
EHDR_SIZE = 52
PHDR_SIZE = 32
SHDR_SIZE = 40
EM_386 = 3
ET_EXEC = 2
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
SHF_ALLOC, SHF_EXECINSTR = 2, 4
STB_GLOBAL, STT_FUNC = 1, 2


@dataclass(frozen=True)
class LoadSegment:
    address: int
    data: bytes
    memory_size: int
    flags: int


def write_elf(segments: list[LoadSegment], entry: int, text: tuple[int, int],
              symbols: dict[str, int]) -> bytes:
    """`segments` in file order (the first must hold the multiboot header);
    `text` is the (address, size) of the code, which the symbols point into."""
    offsets = []
    cursor = PAGE
    for segment in segments:
        cursor += (segment.address - cursor) % PAGE     # p_offset = p_vaddr mod page size
        offsets.append(cursor)
        cursor += len(segment.data)
    body = bytearray(cursor)
    for segment, offset in zip(segments, offsets):
        body[offset:offset + len(segment.data)] = segment.data

    shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    strtab = bytearray(b"\0")
    symtab = bytearray(16)                              # symbol 0 is the null symbol
    for name, value in sorted(symbols.items(), key=lambda item: (item[1], item[0])):
        symtab += struct.pack("<IIIBBH", len(strtab), value, 0, STB_GLOBAL << 4 | STT_FUNC, 0, 1)
        strtab += name.encode() + b"\0"
    tables_at = []
    for blob in (symtab, strtab, shstrtab):
        body += bytes(-len(body) % 8)
        tables_at.append(len(body))
        body += blob
    body += bytes(-len(body) % 8)
    shoff = len(body)
    text_offset = offsets[0] + (text[0] - segments[0].address)
    sections = [
        struct.pack("<10I", *[0] * 10),
        struct.pack("<10I", 1, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, text[0], text_offset,
                    text[1], 0, 0, 16, 0),
        struct.pack("<10I", 7, SHT_SYMTAB, 0, 0, tables_at[0], len(symtab), 3, 1, 4, 16),
        struct.pack("<10I", 15, SHT_STRTAB, 0, 0, tables_at[1], len(strtab), 0, 0, 1, 0),
        struct.pack("<10I", 23, SHT_STRTAB, 0, 0, tables_at[2], len(shstrtab), 0, 0, 1, 0),
    ]
    body += b"".join(sections)

    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)   # ELFCLASS32, little endian, version 1
    header = ident + struct.pack("<HHIIIIIHHHHHH", ET_EXEC, EM_386, 1, entry, EHDR_SIZE, shoff, 0,
                                 EHDR_SIZE, PHDR_SIZE, len(segments), SHDR_SIZE, len(sections), 4)
    phdrs = b"".join(
        struct.pack("<8I", PT_LOAD, offset, s.address, s.address, len(s.data), s.memory_size,
                    s.flags, PAGE)
        for s, offset in zip(segments, offsets))
    assert EHDR_SIZE + len(phdrs) <= PAGE, "too many segments for the first page"
    body[:len(header) + len(phdrs)] = header + phdrs
    return bytes(body)
