"""No CPU state crosses between guests: two copies of one long-mode guest
(tests/guests/vcpu_state.S), each planting values of its own into x87, SSE
and AVX state, XCR0, CR2, the debug registers, the SYSCALL, PAT and
TSC_AUX MSRs and the MSRs the hypervisor keeps in the guest's record
(MTRRs, MCG_STATUS, MISC_ENABLE or HWCR), run side by side on every target (the `target` fixture,
tests/boot/conftest.py) and yield to each other before reading them back."""

import re
from dataclasses import dataclass, field

import pytest
from harness import binutils_guest, boot_to_end, build_image, guest_lines, guest_table

pytestmark = pytest.mark.boot

GUEST_NAMES = ("first", "second")      # run in this order, round robin
# What a fresh guest must find, item by item as the guest names them: the
# x87/SSE/AVX initial configuration (SDM Vol. 1 13.6; FCW as after FNINIT,
# MXCSR 0x1F80), XCR0 with x87 only (Vol. 1 13.3), and the reset values of
# CR2, the debug registers and the MSRs (Vol. 3A 10.1.1, table 10-1; PAT:
# Vol. 3A 13.12.4).  TSC_AUX_RDTSCP is TSC_AUX as RDTSCP returns it.  The
# MSRs kept in the record start as a PC's firmware leaves them (README,
# "MSRs"): MTRRs on, fixed ranges on, default WB; the fixed range at
# 0xC8000 WP; no variable range 1; no machine check in progress; fast
# strings, BTS and PEBS unavailable (Intel); INVD as WBINVD, TscFreqSel (AMD).
RESET = {
    "MM0": 0, "FCW": 0x37F, "XMM1": 0, "MXCSR": 0x1F80, "XCR0": 0x1, "YMM1_UPPER": 0,
    "CR2": 0, "DR0": 0, "DR1": 0, "DR2": 0, "DR3": 0, "DR6": 0xFFFF0FF0, "DR7": 0x400,
    "STAR": 0, "LSTAR": 0, "CSTAR": 0, "SFMASK": 0, "KERNEL_GS_BASE": 0,
    "TSC_AUX": 0, "TSC_AUX_RDTSCP": 0, "PAT": 0x0007040600070406,
    "MTRR_DEF_TYPE": 0xC06, "MTRR_PHYSBASE1": 0, "MTRR_PHYSMASK1": 0, "MTRR_FIX4K_C8000": 0x0505050505050505,
    "MCG_STATUS": 0, "MISC_ENABLE": 0x1801, "HWCR": 0x1000010,
}
# Items a CPU may lack: the guest prints "<feature> absent" and skips them.
NEEDS = {"XCR0": "xsave", "YMM1_UPPER": "avx", "TSC_AUX_RDTSCP": "rdtscp",
         "MISC_ENABLE": "intel", "HWCR": "amd"}
# Both copies plant XCR0 alike (7, or 3 without AVX); every other value differs.
PLANTED_ALIKE = {"XCR0"}
SEED_ORDERS = [("SEED_A", "SEED_B"), ("SEED_B", "SEED_A")]

ITEM_LINE = re.compile(r"(initial|planted|after) (\w+) 0x([0-9a-f]+)")
TSC_LINE = re.compile(r"tsc (initial|planted|after) 0x([0-9a-f]+)")
CS_LINE = re.compile(r"(syscall entered|sysret returned) with cs 0x([0-9a-f]+)")
ABSENT_LINE = re.compile(r"(\w+) absent")


@dataclass
class Report:
    """What one copy of the guest printed, parsed."""
    lines: list[str]
    values: dict[str, dict[str, int]] = field(default_factory=lambda: {"initial": {}, "planted": {}, "after": {}})
    tsc: dict[str, int] = field(default_factory=dict)       # the TSC at each phase
    cs: dict[str, int] = field(default_factory=dict)        # CS after SYSCALL and after SYSRET
    absent: set[str] = field(default_factory=set)

    @property
    def items(self) -> list[str]:
        """The items the guest must report on this CPU."""
        return [item for item in RESET if NEEDS.get(item) not in self.absent]


def parse(lines: list[str]) -> Report:
    report = Report(lines)
    for line in lines:
        if match := ITEM_LINE.fullmatch(line):
            report.values[match[1]][match[2]] = int(match[3], 16)
        elif match := TSC_LINE.fullmatch(line):
            report.tsc[match[1]] = int(match[2], 16)
        elif match := CS_LINE.fullmatch(line):
            report.cs[match[1]] = int(match[2], 16)
        elif match := ABSENT_LINE.fullmatch(line):
            report.absent.add(match[1])
    return report


def run_side_by_side(tmp_path, target, seeds) -> tuple[list[str], dict[str, Report]]:
    elfs = [binutils_guest(tmp_path, "vcpu_state.S", bits=64, defines=(seed,)) for seed in seeds]
    config = "".join(guest_table(name, "2M", elf=elf) for name, elf in zip(GUEST_NAMES, elfs))
    lines = boot_to_end(build_image(tmp_path, config), target)
    return lines, {name: parse(guest_lines(lines, name)) for name in GUEST_NAMES}


def hexed(values: dict[str, int]) -> dict[str, str]:
    return {item: hex(value) for item, value in values.items()}


def others_values(values: dict[str, int], other: Report) -> dict[str, str]:
    """The items of `values` that hold the other guest's planted value."""
    return {item: hex(value) for item, value in values.items()
            if item not in PLANTED_ALIKE and value == other.values["planted"].get(item)}


@pytest.mark.parametrize("seeds", SEED_ORDERS, ids=["a-then-b", "b-then-a"])
def test_no_cpu_state_crosses_between_guests(tmp_path, target, seeds):
    lines, reports = run_side_by_side(tmp_path, target, seeds)
    console = "\n".join(lines)
    for name in GUEST_NAMES:
        assert f"[hv] {name} exited with code 0" in lines, f"{name} did not run to its end:\n{console}"
    first, second = reports.values()
    assert first.absent == second.absent, "one CPU, one feature set"
    # The yields interleave the guests: the second reads its initial values
    # after the first planted, the first reads them again after the second
    # planted; else this test would prove nothing.
    assert set(first.tsc) == set(second.tsc) == {"initial", "planted", "after"}, console
    assert first.tsc["planted"] < second.tsc["initial"], f"the guests did not interleave:\n{console}"
    assert second.tsc["planted"] < first.tsc["after"], f"the guests did not interleave:\n{console}"

    for name, report in reports.items():
        other = second if report is first else first
        initial, planted, after = (report.values[phase] for phase in ("initial", "planted", "after"))
        assert set(initial) == set(planted) == set(after) == set(report.items), \
            f"{name} skipped or added items:\n{console}"
        crossed = {"at its start": others_values(initial, other), "after the other ran": others_values(after, other)}
        assert not any(crossed.values()), f"{name} found the other guest's values: {crossed}"
        assert hexed(initial) == hexed({item: RESET[item] for item in report.items}), \
            f"{name} must start from the reset values"
        assert not {item for item, value in planted.items() if value == RESET[item]}, \
            f"{name} must plant values that differ from the reset values"
        assert not {item for item in planted if item not in PLANTED_ALIKE
                    and planted[item] == other.values["planted"][item]}, "the seeds must differ"
        assert hexed(after) == hexed(planted), f"{name} must find its own values after the other ran"

        said = report.lines
        assert "syscall reached my handler" in said, f"{name}: {said}"
        assert "syscall masked rflags with my SFMASK" in said, f"{name}: {said}"
        star = planted["STAR"]
        assert report.cs == {"syscall entered": star >> 32 & 0xFFFC,
                             "sysret returned": (star >> 48) + 16 | 3}, f"{name}: {said}"
