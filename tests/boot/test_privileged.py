"""Privileged instructions and control-register writes get what a real CPU
gives them (README, "The guest's view"): they run, or the guest gets its
#GP or #UD; the hypervisor never stops a guest for something a CPU
tolerates.  Booted for real on every target beside a witness."""

import re

import pytest
from elftools.elf.elffile import ELFFile
from harness import EMULATOR_GAPS, binutils_guest, boot_to_end, build_image, guest_lines, guest_table

pytestmark = pytest.mark.boot

GP, UD = "vector 0xd", "vector 0x6"
OUTCOMES = {
    "invd": "ok",                       # a no-op: a guest may not drop others' cache lines
    "wbinvd": "ok",
    "xsetbv-no-x87": GP,
    "xsetbv-xcr1": GP,
    "xsetbv-avx-without-sse": GP,
    "xsetbv-unknown-component": GP,
    "xsetbv-x87-sse": "ok",
    "cr4-vmxe": GP,                     # CPUID shows no VMX: CR4.VMXE is reserved
    "cr0-nw-without-cd": GP,
    "cr0-high-bits": GP,
    "cr0-clear-ne": "ok",
    "cr0-set-ne": "ok",
    "cr8-reserved": GP,
    "cr8-write": "ok",
    "monitor": UD,
    "mwait": UD,
    "rdpmc": GP,
    "rdtscp": "ok",
    "single-step-over-cpuid": "vector 0x1",                  # #DB
    "pat-reserved-type": GP,
    "efer-clear-lme-while-paging": GP,
    "lstar-non-canonical": GP,
    "tsc-aux-high-bits": GP,
}
REFUSED_CR_WRITES = ("cr4-vmxe", "cr0-nw-without-cd", "cr0-high-bits")
WITNESS = guest_table("witness", "128K", builtin="heartbeat", heartbeats=3)


def boot_prober(tmp_path, target, defines=()):
    guest = binutils_guest(tmp_path, "privileged.S", bits=64, defines=defines)
    lines = boot_to_end(build_image(tmp_path, guest_table("priv", "2M", elf=guest) + WITNESS), target)
    assert "[hv] witness exited with code 0" in lines
    return guest, lines


def test_privileged_instructions_run_or_fault_as_on_a_cpu(tmp_path, target):
    gap = EMULATOR_GAPS.get((target, "refused_cr_writes"))
    _, lines = boot_prober(tmp_path, target, ("NO_REFUSED_CR_WRITES",) if gap else ())
    said = guest_lines(lines, "priv")
    outcomes = dict(line.split(": ", 1) for line in said if ": " in line)
    expected = {probe: outcome for probe, outcome in OUTCOMES.items()
                if not (gap and probe in REFUSED_CR_WRITES)}
    for probe in OUTCOMES:
        if (target, probe) in EMULATOR_GAPS:      # the emulator's CPU decides, wrongly
            del outcomes[probe], expected[probe]
    assert outcomes == expected
    values = dict(line.rsplit(" ", 1) for line in said if ": " not in line)
    assert int(values["xcr0 after xsetbv"], 16) == 3
    assert int(values["cr0.ne after clearing it"], 16) == 0      # the guest sees what it wrote
    assert int(values["cr8"], 16) == 5
    # The emulated CPUID still single-steps: the trap's rip is right past it.
    assert int(values["single-step trap rip past the cpuid"], 16) == 0
    assert int(values["pat"], 16) == 0x0007040600070406
    ecx, edx = int(values["cpuid 1 ecx"], 16), int(values["cpuid 1 edx"], 16)
    assert ecx & (1 << 3 | 1 << 5) == 0, "MONITOR and VMX are hidden"
    assert ecx & (1 << 27), "OSXSAVE follows the guest's CR4.OSXSAVE, which it set"
    assert ecx & (1 << 31), "hypervisor present"
    assert edx & (1 << 9), "the virtual PC's local APIC is shown"
    assert ecx & (1 << 24) and not ecx & (1 << 21), "TSC-deadline shown, x2APIC hidden"
    assert edx & (1 << 7 | 1 << 12 | 1 << 14) == 1 << 7 | 1 << 12 | 1 << 14, "MCE, MTRR, MCA: MSRs emulated"
    assert int(values["cpuid 0xa eax"], 16) == 0, "no performance counters"
    assert "[hv] priv exited with code 0" in lines


def test_a_refused_cr4_write_under_qemus_svm_stops_the_guest_at_its_rip(tmp_path, target):
    """What QEMU's gap looks like: the report names the guest's MOV to CR4."""
    if (target, "refused_cr_writes") not in EMULATOR_GAPS:
        pytest.skip(f"{target} raises #GP itself (the test above)")
    guest, lines = boot_prober(tmp_path, target)
    with open(guest, "rb") as file:
        symbols = ELFFile(file).get_section_by_name(".symtab")
        rip = symbols.get_symbol_by_name("refused_cr4")[0]["st_value"]
    assert any(re.fullmatch(rf"\[hv\] priv stopped: INVALID \(VMRUN refused the guest state\), "
                            rf"exit 4294967295, qualification 0x0, rip {rip:#x}", line) for line in lines), lines
