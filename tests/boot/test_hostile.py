"""Hostile guests (tests/guests/hostile_*.S), each booted beside the witness
(guests/witness.s.j2) on every target: whatever the attacker does, the
hypervisor survives, the witness keeps beating with the checksum of its
memory as built and its planted CPU state, and the attacker gets the
documented outcome (README, "The guest's view"): its own fault, or a stop
with a report naming the reason."""

import re
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from harness import (
    BACKEND_OF,
    EMULATOR_GAPS,
    EXPECTED_EXITS,
    binutils_guest,
    boot_to_end,
    guest_lines,
    guest_table,
    write_config,
)

from builder import build, config, guest_images, hw, msrs

pytestmark = pytest.mark.boot

WITNESS_MEMORY = 128 * 1024
HOSTILE_MEMORY = 128 * 1024
BEAT = re.compile(r"heartbeat (\d+) checksum (0x[0-9a-f]{8}) state (.*)")
VECTOR_BP, VECTOR_PF = 3, 14           # SDM Vol. 3A table 6-1 (builder/hw.py names the others)
GP, UD, BP, PF = (f"vector {vector:#x}" for vector in (hw.VECTOR_GP, hw.VECTOR_UD, VECTOR_BP, VECTOR_PF))


# --- the witness ---------------------------------------------------------

def witness_memory(result: build.BuildResult, filled: bool) -> bytes:
    """The witness's guest-physical [0, WITNESS_PATTERN_END) as the image
    leaves it, and after its fill (`filled`)."""
    (segment,) = result.images[0].segments
    top = guest_images.usable_top(config.StartMode.PROTECTED, WITNESS_MEMORY)
    end = top - guest_images.WITNESS_STACK_SIZE
    memory = bytearray(end)
    pattern_start = segment.address + len(segment.data)
    memory[segment.address:pattern_start] = segment.data
    if filled:
        value = guest_images.WITNESS_PATTERN_SEED
        for address in range(pattern_start, end, 4):
            value = (value * guest_images.WITNESS_LCG_MULTIPLIER + guest_images.WITNESS_LCG_INCREMENT) % 2**32
            memory[address:address + 4] = value.to_bytes(4, "little")
    return bytes(memory)


def fnv1a_dwords(data: bytes) -> int:
    checksum = guest_images.WITNESS_FNV_OFFSET_BASIS
    for offset in range(0, len(data), 4):
        checksum ^= int.from_bytes(data[offset:offset + 4], "little")
        checksum = checksum * guest_images.WITNESS_FNV_PRIME % 2**32
    return checksum


def witness_intact(lines: list[str], beats: int, checksum: int | None = None) -> bool:
    """All `beats` heartbeats, in order, each with the same checksum (the
    first one's, or `checksum`) and its planted state; then exit code 0."""
    said = [BEAT.fullmatch(line) for line in guest_lines(lines, "witness") if line.startswith("heartbeat")]
    if None in said or [int(beat[1]) for beat in said] != list(range(1, beats + 1)):
        return False
    expected = f"{checksum:#010x}" if checksum is not None else said[0][2]
    return (all(beat[2] == expected and beat[3] == "ok" for beat in said)
            and "[hv] witness exited with code 0" in lines)


def beats_after(lines: list[str], index: int) -> int:
    """How many witness heartbeats the console shows after line `index`."""
    return sum(1 for line in lines[index + 1:] if line.startswith("[witness] heartbeat "))


# --- booting an attacker beside it ---------------------------------------

def beside_witness(directory, hostile_elf, beats: int) -> build.BuildResult:
    """The witness first, then the attacker, built in memory."""
    text = (guest_table("witness", f"{WITNESS_MEMORY // 1024}K", builtin="witness", heartbeats=beats)
            + guest_table("hostile", f"{HOSTILE_MEMORY // 1024}K", elf=hostile_elf))
    return build.build(config.load(write_config(directory, text)))


def build_beside_witness(directory, hostile_elf, beats: int) -> tuple[build.BuildResult, Path]:
    """As beside_witness, written out; returns the build and hv.elf's path."""
    result = beside_witness(directory, hostile_elf, beats)
    build.write_outputs(result, directory / "out", iso=True)
    return result, directory / "out" / "hv.elf"


def attack(tmp_path, target, source: str, beats: int, defines=()) -> tuple[list[str], list[str], Path]:
    """Boot the attacker beside the witness; check that the witness was
    untouched, before, during and after the attack.  Returns the console,
    what the attacker said and its ELF."""
    elf = binutils_guest(tmp_path, source, bits=64, defines=defines)
    result, image = build_beside_witness(tmp_path, elf, beats)
    lines = boot_to_end(image, target)
    check_witness(lines, result, beats)
    return lines, guest_lines(lines, "hostile"), elf


def check_witness(lines: list[str], result: build.BuildResult, beats: int) -> None:
    """The hypervisor powered off normally; the witness's self-test saw its
    state differ and its memory as built; every beat had its planted state
    and the checksum of its filled memory, and one came after the attacker
    ended (a test that gives the witness too few beats fails here)."""
    console = "\n".join(lines)
    assert lines[-1] == "[hv] powering off", f"the hypervisor did not survive:\n{console}"
    assert not any("PANIC" in line for line in lines), console
    said = guest_lines(lines, "witness")
    items = " ".join(name for name, _ in guest_images.WITNESS_STATE)
    assert said[:2] == [f"before planting: state CHANGED {items}",
                        f"before the fill: checksum {fnv1a_dwords(witness_memory(result, False)):#010x}"], console
    assert witness_intact(lines, beats, fnv1a_dwords(witness_memory(result, True))), console
    end = next((i for i, line in enumerate(lines) if re.match(r"\[hv\] hostile (exited|stopped)", line)), None)
    assert end is not None, f"the attacker neither exited nor was stopped:\n{console}"
    assert beats_after(lines, end) >= 1, f"the witness ended before the attack did; give it more beats:\n{console}"


def symbol(elf: Path, name: str) -> int:
    with open(elf, "rb") as file:
        return ELFFile(file).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]


def test_the_witness_checksums_its_memory_as_built_and_sees_its_state_change(tmp_path, target):
    """Alone, so that nothing but the witness itself decides what it prints."""
    beats = 3
    text = guest_table("witness", f"{WITNESS_MEMORY // 1024}K", builtin="witness", heartbeats=beats)
    result = build.build(config.load(write_config(tmp_path, text)))
    build.write_outputs(result, tmp_path / "out", iso=True)
    lines = boot_to_end(tmp_path / "out" / "hv.elf", target)
    said = guest_lines(lines, "witness")
    before, after = (fnv1a_dwords(witness_memory(result, filled)) for filled in (False, True))
    assert before != after
    assert said == [f"before planting: state CHANGED {' '.join(name for name, _ in guest_images.WITNESS_STATE)}",
                    f"before the fill: checksum {before:#010x}",
                    *(f"heartbeat {n} checksum {after:#010x} state ok" for n in range(1, beats + 1))]
    assert witness_intact(lines, beats)


# --- ports ----------------------------------------------------------------

def test_every_port_and_the_reset_and_exit_ports_reach_nothing(tmp_path, target):
    _, said, _ = attack(tmp_path, target, "hostile_ports.S", beats=60)
    com1 = [0, 0, hw.UART_IIR_NO_INTERRUPT, hw.UART_LCR_8N1, 0, hw.UART_LSR_THRE | hw.UART_LSR_TEMT,
            hw.UART_MSR_IDLE, 0]          # RBR ... SCR at reset (README, "Console")
    # The other devices' ports, as the read sweep found them (README, "The
    # guest's view"): the 8042's data (nothing waiting) and status (SYS), the
    # RTC's write-only index and its data (register 0, the seconds, in BCD),
    # port A (A20 on), fw_cfg's write-only selector and its data (the first
    # byte of item 0, the signature), the reset control register.
    assert said[2].startswith("ports: devices read "), said
    words = said[2].removeprefix("ports: devices read ").split()
    devices = dict(zip(words[::2], words[1::2]))
    seconds = int(devices.pop("0x71"), 16)
    assert seconds >> 4 <= 5 and seconds & 0xF <= 9, "the RTC's seconds in BCD"
    assert devices == {"0x60": "0x0", "0x64": "0x4", "0x70": "0xff", "0x92": "0x2", "0x510": "0xff",
                       "0x511": hex(ord("Q")), "0xcf9": "0x0"}
    # Beside each reset value, not on it: a reset is the guest's own
    # (tests/boot/test_devices.py); then the emulators' exit ports.
    pokes = [(0xFF, 0x64), (0xF1, 0x64), (0xFB, 0xCF9), (0xA, 0xCF9), (0xFE, 0x92), (0x0, 0x501),
             (ord("X"), 0x402), (ord("X"), 0xE9)]
    # beyond those, the 8259As and 8254 answer at their reset state: the
    # 8259As' IRR and the master's IMR (0x20, 0x21, 0xA0; the slave's IMR
    # reads 0xff), the 8254's three counters (0x40-0x42), port 0x61 and the
    # ELCRs (0x4D0, 0x4D1): builder/devices.py
    assert said[:2] + said[3:] == [
        "ports: 65536 read, 9 not 0xff outside COM1, the ACPI PM block and the devices listed next",
        "ports: COM1 reads " + " ".join(hex(value) for value in com1),
        "ports: 65525 written with 0xfe (all but COM1, the debug-exit port, 0x64 and 0xcf9)",
        "ports: COM1 scratch reads back 0x5a",
        *(f"ports: wrote {value:#x} to {port:#x}, still running" for value, port in pokes),
        "ports: wrote Shutdown to 0x8900, still running",
        "ports: ACPI PM: 552 word writes, 0 word reads not 0xffff, 0 dword reads not 0xffffffff",
        "ports: PCI config address 0x80000000 reads 0xffffffff",
    ]


def test_bad_writes_to_the_acpi_pm_registers_change_nothing_and_power_nothing_off(tmp_path, target):
    """README, "ACPI power-off": only SLP_EN with SLP_TYP 5 in PM1_CNT
    powers a guest off; PM1_CNT keeps BM_RLD and SLP_TYP and reads SCI_EN
    set, PM1_STS reads 0, PM1_EN keeps its defined bits; bytes merge into
    their register, dwords and words across two registers are ignored."""
    lines, said, _ = attack(tmp_path, target, "hostile_acpi_pm.S", beats=12)

    def registers(cnt: int, en: int = 0) -> str:
        return f"sts 0x0 en {en:#x} cnt {cnt:#x}"
    slp_typ_5 = 0x1401                     # SCI_EN | 5 << 10
    assert said == [
        f"pm: at start: {registers(0x1)}",
        *(f"pm: slp_en type {t}: {registers(0x1 | t << 10)}" for t in (0, 1, 2, 3, 4, 6, 7)),
        f"pm: type 5 without slp_en: {registers(slp_typ_5)}",
        f"pm: the s5 request as a dword: {registers(slp_typ_5)}",
        f"pm: the s5 request in a dword's high half: {registers(slp_typ_5)}",
        f"pm: a word across pm1_en and pm1_cnt: {registers(slp_typ_5)}",
        f"pm: a word across pm1_cnt and the next port: {registers(slp_typ_5)}",
        f"pm: slp_en type 6 by its byte: {registers(0x1801)}",
        f"pm: the low byte all ones: {registers(0x1803)}",          # BM_RLD kept; GBL_RLS reads 0
        f"pm: all ones: {registers(0x1C03)}",
        f"pm: zero: {registers(0x1)}",                              # SCI_EN stays set
        f"pm: status all ones: {registers(0x1)}",
        f"pm: enable all ones: {registers(0x1, en=0x4721)}",        # TMR, GBL, PWRBTN, SLPBTN, RTC, PCIEXP_WAKE_DIS
        f"pm: enable high byte zero: {registers(0x1, en=0x21)}",
        "pm: reads: byte cnt 0x1 byte cnt high 0x0 dword 0xffffffff word across 0xffff word at the end 0xffff",
    ]
    assert "[hv] hostile exited with code 0" in lines
    assert not any("powered off" in line for line in lines)


# --- MSRs -----------------------------------------------------------------

SWEPT_RANGES = [range(base, base + 0x2000) for base in (0, 0x40000000, 0xC0000000, 0xC0010000)]


def test_an_msr_sweep_and_hostile_msr_writes_fault_in_the_guest(tmp_path, target):
    """Every MSR the guest's vendor has reads, and takes back what it read
    but for the TSC and the read-only ones; every other MSR raises #GP."""
    lines, said, _ = attack(tmp_path, target, "hostile_msrs.S", beats=30)
    vendor = msrs.BACKEND_VENDOR[BACKEND_OF[target]]
    emulated = sorted((msr.number, msr.kind) for msr in msrs.EMULATED_MSRS
                      if msr.vendors & vendor and any(msr.number in swept for swept in SWEPT_RANGES))
    assert len(emulated) == sum(1 for msr in msrs.EMULATED_MSRS if msr.vendors & vendor), \
        "every emulated MSR lies in a swept range"
    swept = sum(len(swept) for swept in SWEPT_RANGES)
    refused = [number for number, kind in emulated                                  # writes #GP
               if kind in (msrs.MsrKind.TSC, msrs.MsrKind.READ_ONLY)]
    assert said[:len(emulated)] == [
        f"msr {number:#x} read ok, write-back " + ("vector 0xd" if number in refused else "ok")
        for number, _ in emulated]
    faulting = swept - len(emulated)
    assert said[len(emulated):] == [
        (f"msrs: {swept} swept, {len(emulated)} read ok, {faulting} read #GP, "
         f"{len(emulated) - len(refused)} written back, {faulting} zero writes #GP, 0 other faults"),
        f"efer-reserved-bit-1: {GP}",
        f"efer-reserved-bit-63: {GP}",
        f"efer-svme: {GP}",
        f"efer reads {hw.EFER_LME | hw.EFER_LMA:#x}",
        f"apic-base-moved: {GP}",
        f"apic-base-x2apic: {GP}",
        f"feature-control-lock-vmx: {GP}",
        f"vm-hsave-pa: {GP}",
        f"vm-cr-lock-svmdis: {GP}",
        f"debugctl-lbr-btf: {GP}",
        "mtrr-def-type-uc: ok",                  # its own MTRRs: they only describe memory types
        "mtrr-variable: 0 of 16 writes ok",
        f"efer-clear-lme: {GP}",
        f"efer reads {hw.EFER_LME | hw.EFER_LMA:#x}",
    ]
    assert "[hv] hostile exited with code 0" in lines


# --- instructions -----------------------------------------------------------

VMX_SVM_INSTRUCTIONS = ("vmxon", "vmxoff", "vmlaunch", "vmresume", "vmptrld", "vmptrst", "vmclear", "vmread",
                        "vmwrite", "invept", "invvpid", "vmfunc", "vmrun", "vmload", "vmsave", "stgi", "clgi",
                        "skinit", "invlpga")
FLOODS = {
    **{name: f"100 x {UD}" for name in VMX_SVM_INSTRUCTIONS},
    "invd": "1000 ok",
    "wbinvd": "1000 ok",
    "monitor": f"1000 x {UD}",
    "mwait": f"1000 x {UD}",
    "xsetbv-invalid-xcr0": f"1000 x {GP}",
    "cr0-reserved-bits": f"32 x {GP}",
    "cr4-reserved-bits": f"32 x {GP}",
    "cr3-reserved-bits": f"11 x {GP}",
    "int3": f"20000 x {BP}",
    "rdrand": "20000 ok",
    "cpuid": "20000 ok",
    "hlt-interrupts-off": "50 ok",
}
REFUSED_CR_WRITES = ("cr0-reserved-bits", "cr4-reserved-bits", "cr3-reserved-bits")


def test_instruction_floods_then_a_garbage_idt_end_in_a_triple_fault(tmp_path, target):
    gap = (target, "refused_cr_writes") in EMULATOR_GAPS
    lines, said, elf = attack(tmp_path, target, "hostile_instructions.S", beats=40,
                              defines=("NO_REFUSED_CR_WRITES",) if gap else ())
    features = dict(line.split()[1:] for line in said if line.startswith("cpuid ") and ": " not in line)
    assert features["xsave"] == "present", "the XSETBV flood needs XSAVE"
    expected = {name: outcome for name, outcome in FLOODS.items() if not (gap and name in REFUSED_CR_WRITES)}
    if features["rdrand"] == "absent":
        expected["rdrand"] = f"20000 x {UD}"
    floods = dict(line.split(": ", 1) for line in said if ": " in line)
    assert floods == expected
    assert said[-1] == "lidt garbage, then ud2"
    triple_fault = EXPECTED_EXITS[target]["triple_fault"]
    assert f"[hv] hostile stopped: {triple_fault}, rip {symbol(elf, 'garbage_ud2'):#x}" in lines


# --- hypercalls -------------------------------------------------------------

def test_invalid_hypercalls_return_minus_one_and_leave_the_registers_alone(tmp_path, target):
    lines, said, _ = attack(tmp_path, target, "hostile_hypercalls.S", beats=30)
    instruction = {"vmx": "vmcall", "svm": "vmmcall"}[BACKEND_OF[target]]
    assert said == [f"hypercall instruction {instruction}",
                    "hypercalls: 20000 invalid numbers, 0 did not return -1, 0 clobbered a register",
                    "yields: 50, 0 clobbered a register",
                    f"other instruction: {UD}"]
    assert f"[hv] hostile exited with code {0x7FFFFFFF}" in lines


# --- memory -----------------------------------------------------------------

# An access to a guest-physical page its EPT or NPT does not map stops the
# guest: the report gives the exit qualification (SDM Vol. 3C table 28-7:
# bit 0 read, 1 write, 7 the linear address is valid, 8 the access is to
# the translated address) or EXITINFO1 (APM Vol. 2 15.25.6: bit 1 write, 2
# user, as nested walks are; bit 32 the final guest-physical address).
STOPS = {("vmx", "read"): "EPT_VIOLATION, exit 48, qualification 0x181",
         ("vmx", "write"): "EPT_VIOLATION, exit 48, qualification 0x182",
         ("svm", "read"): "NPF, exit 1024, qualification 0x100000004",
         ("svm", "write"): "NPF, exit 1024, qualification 0x100000006"}
LOCAL_APIC_ICR = 0xFEE00300             # a write there sends an IPI
RESET_VECTOR_PAGE = 0xFFFFF000
HUGE = 1 << 46                          # inside 4-level paging's 48 bits; the emulators' MAXPHYADDR is 40
NON_CANONICAL = 1 << 47
PF_RSVD = 1 << 3                        # #PF error code: a reserved bit was set (SDM Vol. 3A 5.7)


def nested_root(layout, backend):
    hostile = layout.guests[1]
    return (hostile.ept if backend == "vmx" else hostile.npt).pml4


def control_block(layout, backend):
    witness = layout.guests[0]
    return witness.vmcs if backend == "vmx" else witness.vmcb


# (id, access, its guest-physical address from the build's layout and the
# backend; None: the highest page below MAXPHYADDR, which the guest finds)
OUT_OF_BOUNDS = [
    ("the-page-past-my-memory", "read", lambda layout, backend: HOSTILE_MEMORY),
    ("the-witness-memory", "write", lambda layout, backend: layout.guests[0].memory_base),
    ("my-own-host-physical-memory", "read", lambda layout, backend: layout.guests[1].memory_base),
    ("the-hypervisor-code", "write", lambda layout, backend: layout.text),
    ("the-guest-records", "write", lambda layout, backend: layout.rwdata["guests"]),
    ("my-nested-page-table-root", "write", nested_root),
    ("the-witness-vmcs-or-vmcb", "write", control_block),
    ("the-reset-vector-page", "read", lambda layout, backend: RESET_VECTOR_PAGE),
    ("the-top-page-below-maxphyaddr", "read", None),
]


def memory_attacker(tmp_path, address: int | None, defines: tuple[str, ...]):
    """hostile_memory.S with `probe_address` set in its ELF (None: PROBE_TOP)."""
    if address is None:
        defines += ("PROBE_TOP",)
    elf = binutils_guest(tmp_path, "hostile_memory.S", bits=64, defines=defines)
    with open(elf, "r+b") as file:
        image = ELFFile(file)
        where = image.get_section_by_name(".symtab").get_symbol_by_name("probe_address")[0]["st_value"]
        section = next(s for s in image.iter_sections()
                       if s["sh_type"] == "SHT_PROGBITS" and s["sh_addr"] <= where < s["sh_addr"] + s["sh_size"])
        file.seek(section["sh_offset"] + where - section["sh_addr"])
        file.write((address or 0).to_bytes(8, "little"))
    return elf


def probe(tmp_path, target, address, defines=()):
    """Boot the memory attacker beside the witness; returns the console,
    what the attacker said and the RIP of its access."""
    elf = memory_attacker(tmp_path, address, defines)
    result, image = build_beside_witness(tmp_path, elf, beats=3)
    lines = boot_to_end(image, target)
    check_witness(lines, result, 3)
    said = guest_lines(lines, "hostile")
    assert said[0] == f"memory: my {HOSTILE_MEMORY // hw.PAGE_SIZE} pages read and written back"
    return lines, said, symbol(elf, "probe_access")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The layout every memory test boots: it depends on the guests' memory only."""
    directory = tmp_path_factory.mktemp("layout")
    return beside_witness(directory, memory_attacker(directory, 0, ()), beats=3).layout


@pytest.mark.parametrize("access, where", [(access, where) for _, access, where in OUT_OF_BOUNDS],
                         ids=[f"{access}-{name}" for name, access, _ in OUT_OF_BOUNDS])
def test_an_access_to_memory_the_guest_does_not_own_stops_it_with_a_report(tmp_path, target, layout, access,
                                                                             where):
    backend = BACKEND_OF[target]
    address = where(layout, backend) if where else None
    lines, said, rip = probe(tmp_path, target, address, ("PROBE_WRITE",) if access == "write" else ())
    maxphyaddr = int(said[1].removeprefix("memory: maxphyaddr "))
    if address is None:
        address = (1 << maxphyaddr) - hw.PAGE_SIZE
    assert address >= HOSTILE_MEMORY, "an address of its own proves nothing"
    verb = {"read": "reading", "write": "writing"}[access]
    assert said[2:] == [f"memory: {verb} guest-physical {address:#x}"]
    assert (f"[hv] hostile stopped: {STOPS[backend, access]}, guest-physical {address:#x}, rip {rip:#x}"
            in lines), "\n".join(lines)


@pytest.mark.parametrize("address", [LOCAL_APIC_ICR, hw.IOAPIC_BASE], ids=["local-apic-icr", "io-apic"])
def test_the_apic_pages_are_the_guests_own_virtual_apics(tmp_path, target, address):
    """A qword write to the local APIC's ICR or the I/O APIC's IOREGSEL
    through the guest's own 4-level paging is decoded and goes to its own
    virtual device (which ignores accesses that are not dwords): the guest
    goes on, nothing reaches the real APICs (the witness and the hypervisor
    are undisturbed)."""
    lines, said, _ = probe(tmp_path, target, address, ("PROBE_WRITE", "PROBE_DEVICE"))
    assert said[2:] == [f"memory: writing guest-physical {address:#x}",
                        "memory: the access went to a device of my own virtual PC"]
    assert "[hv] hostile exited with code 0" in lines


def test_a_physical_address_at_2_to_the_46_is_a_fault_or_a_stop_as_maxphyaddr_says(tmp_path, target):
    """Beyond MAXPHYADDR its page-table entry has reserved bits set: the
    guest's own #PF (SDM Vol. 3A 5.7); below it, a page it does not own."""
    lines, said, rip = probe(tmp_path, target, HUGE)
    maxphyaddr = int(said[1].removeprefix("memory: maxphyaddr "))
    assert said[2] == f"memory: reading guest-physical {HUGE:#x}"
    if HUGE >> maxphyaddr == 0:
        stop = STOPS[BACKEND_OF[target], "read"]
        assert f"[hv] hostile stopped: {stop}, guest-physical {HUGE:#x}, rip {rip:#x}" in lines
        return
    fault = re.fullmatch(r"memory: vector 0xe, error code (0x[0-9a-f]+), rip (0x[0-9a-f]+)", said[3])
    assert fault and int(fault[2], 16) == rip, said
    # The RSVD bit; a CPU sets P too, QEMU 7.2's software CPU does not.
    assert int(fault[1], 16) & PF_RSVD
    assert "[hv] hostile exited with code 0" in lines


@pytest.mark.parametrize("address, fault", [(HUGE, PF), (NON_CANONICAL, GP)],
                         ids=["unmapped-2^46", "non-canonical-2^47"])
def test_a_linear_address_outside_the_guests_page_tables_is_its_own_fault(tmp_path, target, address, fault):
    lines, said, rip = probe(tmp_path, target, address, ("PROBE_LINEAR",))
    assert said[2:] == [f"memory: reading linear {address:#x}",
                        f"memory: {fault}, error code 0x0, rip {rip:#x}"]
    assert "[hv] hostile exited with code 0" in lines
