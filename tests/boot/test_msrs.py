"""The MSRs a kernel touches at boot, used from inside a guest with plain
RDMSR and WRMSR as Linux 6.1 uses them (tests/guests/msrs.S): each one the
guest's CPU vendor has reads what a PC's firmware leaves, keeps what may be
written, and raises #GP where the CPU would (reserved bits, reserved memory
types, address bits at or above MAXPHYADDR, read-only bits and registers);
the other vendor's raise #GP.  CPUID shows MTRR, MCE and MCA, hides
TSC_ADJUST, xTPR and IRPERF.  Intel under VMX (Bochs), AMD under SVM (QEMU,
Bochs); the expectations are the SDM's and the README's, written out."""

import pytest
from harness import BACKEND_OF, binutils_guest, boot_to_end, build_image, guest_lines, guest_table

from builder import msrs

pytestmark = pytest.mark.boot

GP = "vector 0xd"
WB, WP, UC = (bytes([memory_type]) * 8 for memory_type in (6, 5, 0))


def ok(value: int) -> str:
    return f"ok, reads {value:#x}"


def fixed(types: bytes) -> int:
    return int.from_bytes(types, "little")


# What the guest reads, in its order (the `every` macro): name, MSR number.
MSRS = [("bios-sign-id", 0x8B), ("misc-enable", 0x1A0), ("mtrrcap", 0xFE), ("mtrr-def-type", 0x2FF),
        *((f"mtrr-phys{part}{n}", 0x200 + 2 * n + (part == "mask")) for n in range(8) for part in ("base", "mask")),
        ("mtrr-fix64k-00000", 0x250), ("mtrr-fix16k-80000", 0x258), ("mtrr-fix16k-a0000", 0x259),
        *((f"mtrr-fix4k-{n}", 0x268 + n) for n in range(8)),
        ("mcg-cap", 0x179), ("mcg-status", 0x17A), ("tsc-adjust", 0x3B),
        ("hwcr", 0xC0010015), ("de-cfg", 0xC0011029), ("int-pending-msg", 0xC0010055),
        *((f"perf-{part}{n}", 0xC0010000 + n + 4 * (part == "ctr")) for n in range(4) for part in ("evtsel", "ctr"))]
READ_ONLY = {"mtrrcap", "mcg-cap"}
AMD_ONLY = {"hwcr", "de-cfg", "int-pending-msg", *(f"perf-{part}{n}" for n in range(4) for part in ("evtsel", "ctr"))}


def firmware(vendor: str, maxphyaddr: int) -> dict[str, int | None]:
    """What each MSR reads at power-on (None: #GP).  MTRRs as a PC BIOS
    leaves them: enabled, fixed ranges enabled, default WB; WB below
    0xA0000, UC to 0xBFFFF, WP to 0xFFFFF; [3 GiB, 4 GiB) UC."""
    values: dict[str, int | None] = {
        "mtrrcap": 0x508,                                  # 8 variable ranges, fixed ranges, WC
        "mtrr-def-type": 0xC06,
        **{f"mtrr-phys{part}{n}": 0 for n in range(8) for part in ("base", "mask")},
        "mtrr-physbase0": 0xC0000000,
        "mtrr-physmask0": (1 << maxphyaddr) - (1 << 30) | 0x800,
        "mtrr-fix64k-00000": fixed(WB), "mtrr-fix16k-80000": fixed(WB), "mtrr-fix16k-a0000": fixed(UC),
        **{f"mtrr-fix4k-{n}": fixed(WP) for n in range(8)},
        "mcg-cap": 0, "mcg-status": 0, "tsc-adjust": None,
        "bios-sign-id": 0,                                 # Intel: no microcode update; AMD: patch level 0
    }
    if vendor == "intel":
        return {**values, "misc-enable": 0x1801, **dict.fromkeys(AMD_ONLY)}
    return {**values, "misc-enable": None, "hwcr": 0x1000010, "de-cfg": 0x2, "int-pending-msg": 0,
            **{f"perf-{part}{n}": 0 for n in range(4) for part in ("evtsel", "ctr")}}


def probes(vendor: str, maxphyaddr: int) -> list[str]:
    """The writes after the write-backs, with their outcomes, in order."""
    intel, amd = vendor == "intel", vendor == "amd"
    one_gib_mask = (1 << maxphyaddr) - (1 << 30) | 0x800
    outcomes = [
        ("mtrr-def-type-bit-8", GP), ("mtrr-def-type-bit-12", GP), ("mtrr-def-type-type-2", GP),
        ("mtrr-def-type-type-3", GP), ("mtrr-def-type-type-7", GP), ("mtrr-def-type-type-8", GP),
        ("mtrr-def-type-disabled-uc", ok(0)), ("mtrr-def-type-wt", ok(0xC04)), ("mtrr-def-type-restore", ok(0xC06)),
        ("mtrr-physbase1-bit-8", GP), ("mtrr-physbase1-type-3", GP), ("mtrr-physbase1-type-7", GP),
        ("mtrr-physbase1-wb", ok(0x10000006)),
        ("mtrr-physbase1-below-maxphyaddr", ok(1 << maxphyaddr - 1 | 6)), ("mtrr-physbase1-at-maxphyaddr", GP),
        ("mtrr-physmask1-bit-10", GP), ("mtrr-physmask1-at-maxphyaddr", GP),
        ("mtrr-physmask1-one-gib", ok(one_gib_mask)), ("mtrr-physmask1-restore", ok(0)),
        ("mtrr-physbase1-restore", ok(0)),
        ("mtrr-fix4k-type-7-in-byte-5", GP), ("mtrr-fix4k-bit-4-in-byte-0", GP),
        ("mtrr-fix4k-mixed", ok(0x0001040506060504)), ("mtrr-fix4k-restore", ok(fixed(WP))),
        ("mtrrcap-write", GP),
        ("misc-enable-fast-strings-off", ok(0x1800) if intel else GP),
        ("misc-enable-tcc-on", ok(0x1809) if intel else GP),
        ("misc-enable-perfmon-available", GP),            # read-only bits
        ("misc-enable-bts-available", GP),
        ("misc-enable-monitor", GP),                      # CPUID hides MONITOR
        ("misc-enable-limit-cpuid", GP),                  # would change CPUID: refused
        ("misc-enable-xtpr-disable", GP),                 # CPUID hides xTPR update control
        ("misc-enable-xd-disable", GP),
        ("misc-enable-restore", ok(0x1801) if intel else GP),
        ("bios-sign-id-signature", ok(0) if intel else GP),   # AMD's patch level is read-only
        ("bios-sign-id-low-bits", GP),
        ("mcg-cap-write", GP),
        ("mcg-status-mcip", ok(4)), ("mcg-status-ripv-eipv", ok(3)), ("mcg-status-bit-3", GP),
        ("mcg-status-clear", ok(0)),
        ("hwcr-tlb-cache-dis", ok(0x1000018) if amd else GP),
        ("hwcr-mc-status-wr-en", ok(0x1040010) if amd else GP),
        ("hwcr-clear-tsc-freq-sel", GP), ("hwcr-irperf-en", GP),
        ("hwcr-restore", ok(0x1000010) if amd else GP),
        ("de-cfg-clear-lfence-serialize", ok(0) if amd else GP), ("de-cfg-bit-0", GP),
        ("de-cfg-restore", ok(2) if amd else GP),
        ("int-pending-msg-c1e", GP),
        ("perf-evtsel0-enable", ok(0) if amd else GP),    # accepted, counts nothing
        ("perf-evtsel0-bit-21", GP), ("perf-ctr0-bit-48", GP),
    ]
    return [f"{name}: {outcome}" for name, outcome in outcomes]


def transcript(vendor: str, maxphyaddr: int) -> list[str]:
    values = firmware(vendor, maxphyaddr)
    amd = vendor == "amd"
    reads = [f"read {name}: " + (GP if values[name] is None else f"{values[name]:#x}") for name, _ in MSRS]
    write_backs = [f"write-back {name}: " + (GP if values[name] is None or name in READ_ONLY
                                                or (amd and name == "bios-sign-id") else ok(values[name]))
                   for name, _ in MSRS]
    return [
        f"vendor {vendor}",
        "cpuid mce: 1", "cpuid mtrr: 1", "cpuid mca: 1", "cpuid pat: 1",
        "cpuid xtpr: 0", "cpuid tsc-adjust: 0", "cpuid irperf: 0",
        f"maxphyaddr: {maxphyaddr}",
        "bios-sign-id-zero: " + (GP if amd else ok(0)),   # Linux: write 0, CPUID.1, read
        *reads,
        "perf-ctr0-probe: " + (ok(0) if amd else GP),      # Linux's PMU probe finds no counter
        *write_backs,
        *probes(vendor, maxphyaddr),
    ]


def test_the_guest_reads_every_msr_the_table_emulates_beyond_the_backends_state():
    """A new emulated MSR that only describes the machine must be added to
    the guest's list above (and tests/guests/msrs.S)."""
    described = {msr.number for msr in msrs.EMULATED_MSRS
                 if msr.kind in msrs.RECORD_KINDS | {msrs.MsrKind.READ_ONLY, msrs.MsrKind.READS_ZERO}}
    assert described <= {number for _, number in MSRS}


def test_the_msrs_a_kernel_touches_behave_as_on_a_pc(tmp_path, target):
    guest = binutils_guest(tmp_path, "msrs.S", bits=64)
    lines = boot_to_end(build_image(tmp_path, guest_table("msrs", "2M", elf=guest)), target)
    said = guest_lines(lines, "msrs")
    assert "[hv] msrs exited with code 0" in lines, "\n".join(lines)
    maxphyaddr = int(next(line.split()[-1] for line in said if line.startswith("maxphyaddr: ")))
    assert 36 <= maxphyaddr <= 52
    vendor = {"vmx": "intel", "svm": "amd"}[BACKEND_OF[target]]
    assert said == transcript(vendor, maxphyaddr)
