"""What the built image holds: bytes checked from outside, through the ELF
file as a boot loader sees it."""

import io
import itertools
import re
import struct

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from elftools.elf.elffile import ELFFile
from harness import build_image

from builder import build, config, hw
from builder.render import PROJECT_ROOT
from builder.structs import GUEST, SAVED_REGISTERS

PAGE = 0x1000
THREE_GUESTS = """
[hypervisor]
time_slice = 50000
[[guest]]
name = "a"
memory = "256K"
builtin = "heartbeat"
[[guest]]
name = "b"
memory = "3M"
builtin = "scanner"
[[guest]]
name = "c"
memory = "64K"
builtin = "prober"
"""


class LoadedImage:
    """Physical memory as a multiboot loader leaves it: each PT_LOAD at its
    physical address, zero-filled to its memory size."""

    def __init__(self, data: bytes) -> None:
        self.elf = ELFFile(io.BytesIO(data))
        self.segments = [(s["p_paddr"], s.data().ljust(s["p_memsz"], b"\0"), s["p_flags"])
                         for s in self.elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        self.symbols = {s.name: s["st_value"] for s in self.elf.get_section_by_name(".symtab").iter_symbols()}

    def read(self, address: int, size: int) -> bytes:
        for start, data, _ in self.segments:
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        raise AssertionError(f"{address:#x} is not loaded by the image")

    def qword(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    directory = tmp_path_factory.mktemp("three")
    (directory / "hv.toml").write_text(THREE_GUESTS)
    result = build.build(config.load(directory / "hv.toml"))
    return result, LoadedImage(result.elf)


def test_the_same_config_builds_the_same_bytes(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = build_image(tmp_path / "one", config.DEFAULT_CONFIG.read_text())
    second = build_image(tmp_path / "two", config.DEFAULT_CONFIG.read_text())
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".iso").read_bytes() == second.with_suffix(".iso").read_bytes()


def test_the_image_is_a_multiboot_elf32_that_qemu_and_grub_load(three):
    result, image = three
    assert image.elf.elfclass == 32 and image.elf["e_machine"] == "EM_386"
    assert image.elf["e_entry"] == image.symbols["boot_entry"]
    head = result.elf[:hw.MULTIBOOT_SEARCH_LIMIT]
    offset = head.find(struct.pack("<I", hw.MULTIBOOT_HEADER_MAGIC))
    assert offset >= 0 and offset % 4 == 0
    magic, flags, checksum = struct.unpack("<III", head[offset:offset + 12])
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags & (1 << 16) == 0, "load addresses must come from the ELF headers"


def test_load_segments_do_not_overlap_and_stay_below_the_limit(three):
    _, image = three
    spans = sorted((start, start + len(data)) for start, data, _ in image.segments)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    assert spans[0][0] >= 0x100000 and spans[-1][1] <= 3 << 30


def test_symbols_name_the_hypervisor_routines(three):
    _, image = three
    for name in ("boot_entry", "vmx_exit_entry", "vmx_exit_cpuid", "sched_next", "panic_report"):
        assert name in image.symbols
    text = image.elf.get_section_by_name(".text")
    assert text["sh_addr"] <= image.symbols["vmx_exit_entry"] < text["sh_addr"] + text["sh_size"]


ADDRESS_BITS = (1 << 52) - PAGE


def walk_nested(image, root, present):
    """Every (guest-physical, host-physical, low flag bits) 4 KiB mapping of
    an EPT or NPT; `present` is the bit mask an entry needs to count."""
    mappings = []
    for i4 in range(512):
        e4 = image.qword(root + 8 * i4)
        if not e4 & present:
            continue
        for i3 in range(512):
            e3 = image.qword((e4 & ADDRESS_BITS) + 8 * i3)
            if not e3 & present:
                continue
            for i2 in range(512):
                e2 = image.qword((e3 & ADDRESS_BITS) + 8 * i2)
                if not e2 & present:
                    continue
                for i1 in range(512):
                    e1 = image.qword((e2 & ADDRESS_BITS) + 8 * i1)
                    if e1 & present:
                        gpa = i4 << 39 | i3 << 30 | i2 << 21 | i1 << 12
                        mappings.append((gpa, e1 & ADDRESS_BITS, e1 & 0x3F))
    return mappings


@pytest.mark.parametrize("kind", ["ept", "npt"])
def test_each_guests_second_level_tables_map_exactly_its_memory(three, kind):
    result, image = three
    owned = []
    for guest in result.layout.guests:
        if kind == "ept":
            root = guest.ept.ept_pointer & ~0xFFF
            assert guest.ept.ept_pointer & 0xFFF == hw.EPTP_WALK_LENGTH_4 | hw.EPTP_MEMTYPE_WB
            mappings = walk_nested(image, root, hw.EPT_RWX)
            flags = hw.EPT_RWX | hw.EPT_MEMTYPE_WB << hw.EPT_MEMTYPE_SHIFT
        else:
            root = guest.npt.pml4
            assert image.qword(guest.vmcb + hw.Vmcb.N_CR3) == root
            mappings = walk_nested(image, root, hw.PTE_PRESENT)
            flags = hw.PTE_PRESENT | hw.PTE_WRITABLE | hw.PTE_USER
        assert [gpa for gpa, _, _ in mappings] == list(range(0, guest.memory_size, PAGE))
        assert all(host == guest.memory_base + gpa for gpa, host, _ in mappings)
        assert all(bits == flags for _, _, bits in mappings)
        owned.append({host for _, host, _ in mappings})
    for i, pages in enumerate(owned):
        for other in owned[i + 1:]:
            assert not pages & other
        hv_end = result.layout.guests[0].memory_base
        assert min(pages) >= hv_end, "no guest page may be hypervisor memory"


def walk_hv_pages(image, pml4):
    pages = {}
    for i4 in range(512):
        e4 = image.qword(pml4 + 8 * i4)
        if not e4 & 1:
            continue
        for i3 in range(512):
            e3 = image.qword((e4 & (1 << 52) - PAGE) + 8 * i3)
            if not e3 & 1:
                continue
            for i2 in range(512):
                e2 = image.qword((e3 & (1 << 52) - PAGE) + 8 * i2)
                if not e2 & 1:
                    continue
                assert not e2 & hw.PTE_LARGE
                for i1 in range(512):
                    e1 = image.qword((e2 & (1 << 52) - PAGE) + 8 * i1)
                    if e1 & 1:
                        pages[i4 << 39 | i3 << 30 | i2 << 21 | i1 << 12] = e1
    return pages


def test_the_hypervisor_maps_only_itself_with_w_xor_x(three):
    result, image = three
    layout = result.layout
    pages = walk_hv_pages(image, layout.hv_tables[0])
    assert all(address == entry & (1 << 52) - PAGE for address, entry in pages.items())
    code = [a for a, e in pages.items() if not e & hw.PTE_NX]
    assert code and all(layout.text <= a < layout.text + result.text_size for a in code)
    assert all(not pages[a] & hw.PTE_WRITABLE for a in code)
    for guest in layout.guests:
        # a guest's memory writable (a restart copies its pristine image over
        # it; the MMIO decoder reads instructions and page tables there), that
        # image read-only, every page of both and neither executable; its EPT
        # and NPT writable, not executable (the run-time isolation check walks them)
        mapped = [a for a in pages if guest.memory_base <= a < guest.memory_base + guest.memory_size]
        pristine = [a for a in pages if guest.restart.image <= a < guest.restart.image + guest.memory_size]
        assert len(mapped) == len(pristine) == guest.memory_size // PAGE
        assert all(pages[a] & hw.PTE_WRITABLE and pages[a] & hw.PTE_NX for a in mapped)
        assert not any(pages[a] & hw.PTE_WRITABLE for a in pristine)
        for tables in (guest.ept, guest.npt):
            for table in (tables.pml4, tables.pdpt, tables.pd, *tables.pts):
                assert pages[table] & hw.PTE_WRITABLE and pages[table] & hw.PTE_NX
        assert pages[guest.vmcb] & hw.PTE_WRITABLE and pages[guest.vmcs] & hw.PTE_WRITABLE
    # Beyond itself and the guests' nested tables only the I/O APIC (the SVM
    # time slice) and the local APIC (the EOI of a host interrupt under
    # VMX), uncached.
    guest_pages = {a for g in layout.guests for base in (g.memory_base, g.restart.image)
                   for a in range(base, base + g.memory_size, PAGE)}
    guest_pages |= set(range(*layout.nested_tables, PAGE))
    outside = [a for a in pages if a >= layout.mapped_end and a not in guest_pages]
    assert outside == [hw.IOAPIC_BASE, hw.LAPIC_BASE]
    assert all(pages[page] & hw.PTE_PCD for page in outside)
    assert layout.stack_top - 0x4000 - PAGE not in pages, "the stack's guard page must be unmapped"
    assert layout.rwdata["gdt"] in pages and pages[layout.rwdata["gdt"]] & hw.PTE_WRITABLE
    assert 0 not in pages


def test_long_mode_guests_get_an_identity_map_in_their_own_memory(tmp_path):
    from harness import binutils_guest
    guest = binutils_guest(tmp_path, "elf64_hello.S", bits=64)
    (tmp_path / "hv.toml").write_text(f'[[guest]]\nname = "l"\nmemory = "4M"\nelf = "{guest}"\n')
    result = build.build(config.load(tmp_path / "hv.toml"))
    image = LoadedImage(result.elf)
    layout = result.layout.guests[0]
    pml4_gpa = layout.startup.pml4
    host = layout.memory_base

    def entry(table_gpa, index):
        return image.qword(host + table_gpa + 8 * index)

    pdpt = entry(pml4_gpa, 0) & (1 << 52) - PAGE
    pd = entry(pdpt, 0) & (1 << 52) - PAGE
    assert [entry(pd, i) & ~0xFFF for i in range(3)] == [0, 0x200000, 0]
    assert entry(pd, 1) & hw.PTE_LARGE


def test_templates_spell_no_hardware_number():
    """Hardware constants come from builder/hw.py as .set lines; a hex
    number in a hypervisor template would be a second source of truth."""
    offenders = []
    for template in list((PROJECT_ROOT / "hv").rglob("*.j2")) + list((PROJECT_ROOT / "boot").rglob("*.j2")):
        for number, line in enumerate(template.read_text().splitlines(), 1):
            if line.lstrip().startswith("{#"):
                continue
            code = line.split("#", 1)[0]
            if re.search(r"\b0x[0-9a-fA-F]+\b", code):
                offenders.append(f"{template.name}:{number}: {line.strip()}")
    assert offenders == []


def disassemble(result, label, count, mode=CS_MODE_64):
    address = result.labels[label]
    offset = address - result.layout.text
    code = result.elf[PAGE + offset:PAGE + offset + 16 * count]
    return [f"{i.mnemonic} {i.op_str}".strip() for i in Cs(CS_ARCH_X86, mode).disasm(code, address)][:count]


def test_capstone_reads_back_what_the_templates_say(three):
    """keystone mis-assembles silently (platform notes); an independent
    disassembler checks the routines where that would hurt."""
    result, _ = three
    exit_entry = disassemble(result, "vmx_exit_entry", 18)
    assert exit_entry[:15] == [f"push {r}" for r in ("r15", "r14", "r13", "r12", "r11", "r10", "r9",
                                                     "r8", "rdi", "rsi", "rbp", "rbx", "rdx", "rcx", "rax")]
    assert exit_entry[15:17] == ["mov rbx, rsp", f"mov rsp, {result.layout.stack_top:#x}"]
    assert "mov ecx, 0x3c" in disassemble(result, "console_put_hex", 12)
    resume = disassemble(result, "vmx_resume_guest", 41)
    assert resume[:3] == ["rdtsc", "shl rdx, 0x20", "or rdx, rax"]      # now, for the deadlines
    assert resume[4] == "jae " + hex(result.labels["vmx_resume_timers"])
    assert resume[6] == "jne " + hex(result.labels["vmx_resume_interrupt"])
    assert resume[9] == "jbe " + hex(result.labels["sched_next"])
    assert resume[-3:] == ["jne " + hex(result.labels["vmx_launch"]), "vmresume",
                           "jmp " + hex(result.labels["vmx_entry_failed"])]
    boot = disassemble(result, "boot_enter_long_mode", 16, CS_MODE_32)
    assert f"ljmp 8:{result.labels['boot_long_mode']:#x}" in boot
    svm_run = disassemble(result, "svm_resume_guest", 35)
    vmcb_from_registers_end = GUEST.offsets["vmcb"] - 8 * len(SAVED_REGISTERS)
    assert svm_run[-4:] == [f"mov rax, qword ptr [rsp + {vmcb_from_registers_end:#x}]",
                            "vmload rax", "vmrun rax", "vmsave rax"]


def test_a_vmcb_holds_the_guests_start_state_and_intercepts(three):
    result, image = three
    guest = result.layout.guests[2]                  # c: prober, protected mode
    vmcb = image.read(guest.vmcb, PAGE)

    def field(offset, size=8):
        return int.from_bytes(vmcb[offset:offset + size], "little")

    M = hw.Vmcb
    assert field(M.INTERCEPT_MISC2, 4) & hw.SVM_INTERCEPT_VMRUN, "VMRUN must be intercepted"
    for bit in (hw.SVM_INTERCEPT_CPUID, hw.SVM_INTERCEPT_IOIO_PROT, hw.SVM_INTERCEPT_MSR_PROT,
                hw.SVM_INTERCEPT_HLT, hw.SVM_INTERCEPT_SHUTDOWN, hw.SVM_INTERCEPT_NMI):
        assert field(M.INTERCEPT_MISC1, 4) & bit
    assert field(M.GUEST_ASID, 4) == 3
    assert field(M.EFER) == hw.EFER_SVME
    assert field(M.CR0) & hw.CR0_PE and not field(M.CR0) & hw.CR0_PG
    assert field(M.CS + hw.VMCB_SEGMENT_ATTRIBUTES, 2) == 0xC9B     # G, D, P, S, code RX accessed
    assert field(M.RIP) == 0x1000
    assert image.read(field(M.IOPM_BASE_PA), 3 * PAGE) == b"\xff" * 3 * PAGE
    assert image.read(field(M.MSRPM_BASE_PA), 2 * PAGE) == b"\xff" * 2 * PAGE


def test_no_two_regions_of_the_layout_overlap(three):
    result, _ = three
    regions = sorted((start, start + size, name) for name, start, size in result.layout.regions)
    for (_, end, name), (start, _, other) in itertools.pairwise(regions):
        assert end <= start, f"{name} overlaps {other}"


def test_an_elf_guests_segments_land_at_their_guest_physical_addresses(tmp_path):
    from harness import binutils_guest
    guest = binutils_guest(tmp_path, "elf32_hello.S", bits=32, link_address=0x3000)
    (tmp_path / "hv.toml").write_text(f'[[guest]]\nname = "e"\nmemory = "64K"\nelf = "{guest}"\n')
    result = build.build(config.load(tmp_path / "hv.toml"))
    image = LoadedImage(result.elf)
    base = result.layout.guests[0].memory_base
    with open(guest, "rb") as stream:
        elf = ELFFile(stream)
        entry = elf["e_entry"]
        segments = [(s["p_paddr"], s.data()) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert segments
    for address, data in segments:
        assert image.read(base + address, len(data)) == data
    assert result.images[0].entry == entry == 0x3000
    vmcb = result.layout.guests[0].vmcb
    assert image.qword(vmcb + hw.Vmcb.RIP) == entry


def test_templates_receive_the_hardware_constants_from_hw_py(tmp_path):
    """The .set lines the templates see are hw.py's values, by hw.py's names."""
    result = build.build(config.load())
    source = build.render_hypervisor(result.config, result.layout, frozenset())
    values = {name: int(value, 16) for name, value in
              re.findall(r"^\.set (\w+), (-?0x[0-9a-f]+)$", source, re.MULTILINE)}
    assert values["VMCS_GUEST_RIP"] == 0x681E
    assert values["EXIT_EPT_VIOLATION"] == 48
    assert values["VMCB_EXITCODE"] == 0x70
    assert values["SVM_EXIT_NPF"] == 0x400
    assert values["COM1_BASE"] == 0x3F8
    for name, value in hw.asm_constants().items():
        assert values[name] == value, name


@pytest.mark.parametrize("line, complaint", [
    ("mov rax, qword ptr [A + B]", "keeps only one of the symbols"),
    ("mov eax, dword ptr [rbx + A + B]", "keeps only one of the symbols"),
    ("and ecx, ~A", "mis-assembles '~'"),
    ("mov rbx, qword ptr [A]", "64-bit load from an absolute address into rbx"),
])
def test_the_assembler_refuses_what_keystone_would_silently_get_wrong(line, complaint):
    from builder.assemble import assemble
    from builder.errors import BuildError
    with pytest.raises(BuildError, match=re.escape(complaint)):
        assemble(f".set A, 0x112098\n.set B, 0x8\n{line}\n", 0x100000, "test")


def test_the_assembler_accepts_the_safe_forms_and_they_assemble_right():
    from builder.assemble import assemble
    code = assemble(".set A, 0x112098\nmov rax, qword ptr [A]\nmov eax, dword ptr [rbx + A]\n"
                    "mov ecx, 60\nlabel_here:\n", 0x100000, "test").code
    decoded = [f"{i.mnemonic} {i.op_str}" for i in Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, 0x100000)]
    assert decoded == ["movabs rax, qword ptr [0x112098]", "mov eax, dword ptr [rbx + 0x112098]",
                       "mov ecx, 0x3c"]


def test_every_guest_has_a_pristine_copy_of_its_memory_record_and_vmcb(tmp_path):
    """What a restart copies back, by its fault policy or the control
    console's `restart`."""
    text = THREE_GUESTS.replace('builtin = "scanner"', 'builtin = "scanner"\non_fault = "restart"\nmax_restarts = 4')
    (tmp_path / "hv.toml").write_text(text)
    result = build.build(config.load(tmp_path / "hv.toml"))
    image = LoadedImage(result.elf)
    b = result.layout.guests[1]
    assert len({g.restart.image for g in result.layout.guests}) == len(result.layout.guests)
    # the image copy is made at boot (boot/multiboot.s.j2): its segment
    # reserves the memory, zero-filled, and holds no bytes of the file
    with io.BytesIO(result.elf) as stream:
        loads = [(s["p_paddr"], s["p_filesz"], s["p_memsz"]) for s in ELFFile(stream).iter_segments()
                 if s["p_type"] == "PT_LOAD"]
    assert all((g.restart.image, 0, g.memory_size) in loads for g in result.layout.guests)
    assert image.read(b.restart.record, GUEST.size) == image.read(b.record, GUEST.size)
    assert image.read(b.restart.vmcb, PAGE) == image.read(b.vmcb, PAGE)
    record = image.read(b.record, GUEST.size)
    fields = {name: struct.unpack_from("<Q", record, GUEST.offsets[name])[0]
              for name in ("max_restarts", "restarts", "memory_base", "memory_size", "restart_image")}
    assert fields == {"max_restarts": 4, "restarts": 0, "memory_base": b.memory_base,
                      "memory_size": b.memory_size, "restart_image": b.restart.image}
    a = result.layout.guests[0]
    assert struct.unpack_from("<Q", image.read(a.record, GUEST.size), GUEST.offsets["max_restarts"])[0] == 0
