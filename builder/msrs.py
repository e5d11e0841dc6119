"""The MSRs a guest may use, and where each backend keeps them.

Every RDMSR and WRMSR exits; the core's exit policy
(hv/core/exit_policy.s.j2) looks the MSR up in this table, built into the
image, and asks the chosen backend to read or write the guest state named
for it, or, for MSRs the hypervisor switches itself (builder/vcpu.py),
reads or writes the MSR on the CPU, which holds the guest's value while the
guest is the one loaded.  MSRs that only describe the machine to the guest
(its MTRRs, machine-check registers, IA32_MISC_ENABLE, AMD's HWCR...) are
kept in the guest's record (`RECORD_KINDS`: one slot each, reset values
from `FIRMWARE`) and never reach the CPU, so there is nothing to switch.
An MSR exists only for the vendor whose CPUs it belongs to (`Msr.vendors`):
guests see the host's CPUID vendor, Intel's under VMX and AMD's under SVM
(`BACKEND_VENDOR`).  Any MSR not listed raises #GP in the guest (README,
"The guest's view").  Every value is checked before it reaches a real
WRMSR or a VM entry, so no guest value can fault in the hypervisor.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from builder import hw


class MsrKind(enum.IntEnum):
    """How the hypervisor emulates an MSR the guest may use."""

    ADDRESS = 0          # kept in the guest state; writes must be canonical
    VALUE = 1            # kept in the guest state as written
    EFER = 2             # only SCE, LME, NXE are writable; LMA follows the CPU
    TSC = 3              # reads the time-stamp counter; writes raise #GP
    VALUE32 = 4          # as VALUE, but bits 63:32 are reserved (#GP if set)
    PAT = 5              # eight memory types, each one of hw.PAT_VALID_TYPES
    READ_ONLY = 6        # reads `value`; every write raises #GP
    READS_ZERO = 7       # reads 0; a write of bits within `value` is accepted and dropped, others #GP
    # Kept in the guest's record: a write may change the bits in `value`
    # (the writable bits); a write that changes any other bit raises #GP.
    BITS = 8             # nothing more
    MTRR_DEF_TYPE = 9    # and the type (bits 7:0) is one of hw.MTRR_VALID_TYPES
    MTRR_PHYSBASE = 10   # and so is its type; no address bit at or above MAXPHYADDR
    MTRR_PHYSMASK = 11   # no mask bit at or above MAXPHYADDR (reads drop those bits)
    MTRR_FIXED = 12      # each of its eight bytes one of hw.MTRR_VALID_TYPES
    APIC_BASE = 13       # the guest's local APIC (hv/devices/lapic.s.j2), in its record:
    TSC_DEADLINE = 14    #   its base and enable bit, its timer's TSC deadline


RECORD_KINDS = frozenset({MsrKind.BITS, MsrKind.MTRR_DEF_TYPE, MsrKind.MTRR_PHYSBASE,
                          MsrKind.MTRR_PHYSMASK, MsrKind.MTRR_FIXED})


class Vendor(enum.IntFlag):
    """Whose CPUs have an MSR."""

    INTEL = 1
    AMD = 2


BOTH = Vendor.INTEL | Vendor.AMD
# Guests see the host's vendor, and the backend tells it: VMX is Intel's
# (and Intel-compatible CPUs'), SVM is AMD's (and Hygon's).
BACKEND_VENDOR = {"vmx": Vendor.INTEL, "svm": Vendor.AMD}

# Where a backend keeps an MSR: a VMCS field, a VMCB offset, or this: the
# MSR itself on the CPU, switched between guests by builder/vcpu.py's code.
IN_HARDWARE = 0xFFFFFFFF
NO_SLOT = 0xFFFFFFFF             # the entry of an MSR not kept in the guest's record


class Msr(NamedTuple):
    number: int
    kind: MsrKind
    vmx: int = 0                 # the backends' kinds: where VMX keeps it (VMCS field)
    svm: int = 0                 # ... and SVM (VMCB offset)
    value: int = 0               # READ_ONLY: what reads return; READS_ZERO and RECORD_KINDS: writable bits
    vendors: Vendor = BOTH


# --- What a PC's firmware leaves, and what writes may change ---------------
# MTRRs (SDM Vol. 3A 12.11), as a PC BIOS programs them: MTRRs and fixed
# ranges enabled, default type WB (all of the guest's RAM, at most 1 GiB,
# builder/config.py); fixed ranges WB for the 640 KiB of low memory, UC for
# the VGA window 0xA0000-0xBFFFF, WP for the ROM area 0xC0000-0xFFFFF; one
# variable range makes [3 GiB, 4 GiB) UC, the window that holds the I/O
# APIC (0xFEC00000) and the local APIC (0xFEE00000).  The values only
# describe memory types to the guest: the memory types the guest's accesses
# get are the hypervisor's EPT or NPT entries' (and the guest's PAT).
MTRR_VARIABLE_RANGES = 8
MTRRCAP = MTRR_VARIABLE_RANGES | hw.MTRRCAP_FIX | hw.MTRRCAP_WC     # no SMRR
MTRR_DEF_TYPE_FIRMWARE = hw.MTRR_DEF_TYPE_E | hw.MTRR_DEF_TYPE_FE | hw.MEMORY_TYPE_WB
MMIO_WINDOW_BASE = 0xC0000000
MMIO_WINDOW_SIZE = 0x40000000
# The firmware's mask covers every architectural address bit; a read drops
# those at and above the CPU's MAXPHYADDR (which no write can set).
MTRR_PHYSMASK_FIRMWARE = hw.MTRR_ADDRESS & -MMIO_WINDOW_SIZE | hw.MTRR_PHYSMASK_VALID
MTRR_PHYSBASE_WRITABLE = hw.MTRR_ADDRESS | hw.MTRR_PHYSBASE_TYPE
MTRR_PHYSMASK_WRITABLE = hw.MTRR_ADDRESS | hw.MTRR_PHYSMASK_VALID
MTRR_DEF_TYPE_WRITABLE = hw.MTRR_DEF_TYPE_E | hw.MTRR_DEF_TYPE_FE | hw.MTRR_DEF_TYPE_TYPE
ALL_BITS = (1 << 64) - 1


def fixed_types(memory_type: int) -> int:
    """A fixed-range MTRR giving its eight ranges `memory_type`."""
    return int.from_bytes(bytes([memory_type]) * 8, "little")


MTRR_FIXED_FIRMWARE = {
    hw.IA32_MTRR_FIX64K_00000: fixed_types(hw.MEMORY_TYPE_WB),       # 0x00000-0x7FFFF
    hw.IA32_MTRR_FIX16K_80000: fixed_types(hw.MEMORY_TYPE_WB),       # 0x80000-0x9FFFF
    hw.IA32_MTRR_FIX16K_A0000: fixed_types(hw.MEMORY_TYPE_UC),       # 0xA0000-0xBFFFF
    **{hw.IA32_MTRR_FIX4K_C0000 + n: fixed_types(hw.MEMORY_TYPE_WP)  # 0xC0000-0xFFFFF
       for n in range(hw.MTRR_FIX4K_MSRS)},
}

# IA32_MISC_ENABLE (SDM Vol. 4 table 2-2), Intel only: fast strings on, BTS
# and PEBS unavailable (CPUID shows no debug store), no performance
# monitoring (bit 7 clear: CPUID leaf 0xA is zero).  A guest may change fast
# strings and the automatic thermal control circuit, kept and without
# effect on the real CPU.  The other bits are fixed: EST (16), MONITOR (18)
# and xTPR messages (23) because CPUID hides those features, Limit CPUID
# Maxval (22) and XD Bit Disable (34) because they would change the CPU's
# description, which the hypervisor does not do (a real CPU accepts those
# two; Linux only ever clears them, and they read 0); the rest is reserved
# or read-only.
MISC_ENABLE_FIRMWARE = (hw.MISC_ENABLE_FAST_STRINGS | hw.MISC_ENABLE_BTS_UNAVAILABLE
                        | hw.MISC_ENABLE_PEBS_UNAVAILABLE)
MISC_ENABLE_WRITABLE = hw.MISC_ENABLE_FAST_STRINGS | hw.MISC_ENABLE_AUTOMATIC_TCC

# Machine check (SDM Vol. 3B 16.3.1): CPUID shows MCE and MCA, and
# IA32_MCG_CAP reports no error-reporting banks, no MCG_CTL and no
# extensions: a kernel finds nothing to poll and nothing ever arrives (the
# hypervisor never forwards a machine check).  IA32_MCG_STATUS keeps RIPV,
# EIPV and MCIP as written; bits 63:3 are reserved.
MCG_CAP = 0
MCG_STATUS_WRITABLE = hw.MCG_STATUS_RIPV | hw.MCG_STATUS_EIPV | hw.MCG_STATUS_MCIP

# AMD's HWCR (BKDG MSRC001_0015): what a BIOS leaves, INVD acting as WBINVD
# and TscFreqSel (Linux warns of a firmware bug without it).  TlbCacheDis,
# INVDWBINVD, IgnneEm and McStatusWrEn are kept as written, without effect
# (INVD is a no-op either way; there are no banks); the rest is fixed.
HWCR_FIRMWARE = hw.HWCR_INVD_WBINVD | hw.HWCR_TSC_FREQ_SEL
HWCR_WRITABLE = hw.HWCR_TLB_CACHE_DIS | hw.HWCR_INVD_WBINVD | hw.HWCR_IGNNE_EM | hw.HWCR_MC_STATUS_WR_EN
# DE_CFG: LFENCE dispatch serializing, as Linux sets it; kept as written
# (the real CPU's LFENCE stays serializing).
DE_CFG_FIRMWARE = hw.DE_CFG_LFENCE_SERIALIZE

# Each record-kept MSR's value at power-on, by number.
FIRMWARE = {
    hw.IA32_MTRR_DEF_TYPE: MTRR_DEF_TYPE_FIRMWARE,
    hw.IA32_MTRR_PHYSBASE0: MMIO_WINDOW_BASE | hw.MEMORY_TYPE_UC,
    hw.IA32_MTRR_PHYSMASK0: MTRR_PHYSMASK_FIRMWARE,
    **MTRR_FIXED_FIRMWARE,
    hw.IA32_MISC_ENABLE: MISC_ENABLE_FIRMWARE,
    hw.AMD_HWCR: HWCR_FIRMWARE,
    hw.AMD_DE_CFG: DE_CFG_FIRMWARE,
}


def _mtrrs() -> tuple[Msr, ...]:
    variable = tuple(
        msr for n in range(MTRR_VARIABLE_RANGES) for msr in (
            Msr(hw.IA32_MTRR_PHYSBASE0 + 2 * n, MsrKind.MTRR_PHYSBASE, value=MTRR_PHYSBASE_WRITABLE),
            Msr(hw.IA32_MTRR_PHYSMASK0 + 2 * n, MsrKind.MTRR_PHYSMASK, value=MTRR_PHYSMASK_WRITABLE)))
    fixed = tuple(Msr(number, MsrKind.MTRR_FIXED, value=ALL_BITS) for number in MTRR_FIXED_FIRMWARE)
    return (Msr(hw.IA32_MTRRCAP, MsrKind.READ_ONLY, value=MTRRCAP),
            Msr(hw.IA32_MTRR_DEF_TYPE, MsrKind.MTRR_DEF_TYPE, value=MTRR_DEF_TYPE_WRITABLE),
            *variable, *fixed)


def _amd_performance_counters() -> tuple[Msr, ...]:
    """The four legacy counters every AMD CPU has (APM Vol. 2 13.2.1): with
    no counters in CPUID they count nothing: reads 0, and a write of defined
    bits is dropped, so Linux's probe (write, read back) finds no PMU."""
    amd = Vendor.AMD
    return tuple(msr for n in range(hw.AMD_LEGACY_PERF_COUNTERS) for msr in (
        Msr(hw.AMD_PERF_EVTSEL0 + n, MsrKind.READS_ZERO, value=hw.AMD_PERF_EVTSEL_DEFINED, vendors=amd),
        Msr(hw.AMD_PERF_CTR0 + n, MsrKind.READS_ZERO, value=hw.AMD_PERF_CTR_DEFINED, vendors=amd)))


V, M = hw.Vmcs, hw.Vmcb
EMULATED_MSRS = (
    Msr(hw.IA32_TSC, MsrKind.TSC),
    Msr(hw.IA32_SYSENTER_CS, MsrKind.VALUE, V.GUEST_SYSENTER_CS, M.SYSENTER_CS),
    Msr(hw.IA32_SYSENTER_ESP, MsrKind.ADDRESS, V.GUEST_SYSENTER_ESP, M.SYSENTER_ESP),
    Msr(hw.IA32_SYSENTER_EIP, MsrKind.ADDRESS, V.GUEST_SYSENTER_EIP, M.SYSENTER_EIP),
    Msr(hw.IA32_EFER, MsrKind.EFER, V.GUEST_IA32_EFER, M.EFER),
    Msr(hw.IA32_FS_BASE, MsrKind.ADDRESS, V.GUEST_FS_BASE, M.FS + hw.VMCB_SEGMENT_BASE),
    Msr(hw.IA32_GS_BASE, MsrKind.ADDRESS, V.GUEST_GS_BASE, M.GS + hw.VMCB_SEGMENT_BASE),
    Msr(hw.IA32_STAR, MsrKind.VALUE, IN_HARDWARE, M.STAR),
    Msr(hw.IA32_LSTAR, MsrKind.ADDRESS, IN_HARDWARE, M.LSTAR),
    Msr(hw.IA32_CSTAR, MsrKind.ADDRESS, IN_HARDWARE, M.CSTAR),
    Msr(hw.IA32_FMASK, MsrKind.VALUE32, IN_HARDWARE, M.SFMASK),
    Msr(hw.IA32_KERNEL_GS_BASE, MsrKind.ADDRESS, IN_HARDWARE, M.KERNEL_GS_BASE),
    Msr(hw.IA32_TSC_AUX, MsrKind.VALUE32, IN_HARDWARE, IN_HARDWARE),
    Msr(hw.IA32_PAT, MsrKind.PAT, V.GUEST_IA32_PAT, M.G_PAT),
    *_mtrrs(),
    Msr(hw.IA32_MCG_CAP, MsrKind.READ_ONLY, value=MCG_CAP),
    Msr(hw.IA32_MCG_STATUS, MsrKind.BITS, value=MCG_STATUS_WRITABLE),
    # Intel: Linux writes 0, runs CPUID.1 and reads the microcode signature
    # (plain accesses); reads 0 ("no update loaded"), as if CPUID had just
    # run, and a write of bits 63:32 is accepted.
    Msr(hw.IA32_BIOS_SIGN_ID, MsrKind.READS_ZERO, value=hw.BIOS_SIGN_ID_SIGNATURE, vendors=Vendor.INTEL),
    Msr(hw.IA32_MISC_ENABLE, MsrKind.BITS, value=MISC_ENABLE_WRITABLE, vendors=Vendor.INTEL),
    # AMD: the patch level reads 0 (no patch loaded), HWCR and DE_CFG as
    # above, the C1E status reads 0 (C1E is not in use; Linux reads it with
    # a plain RDMSR), the legacy performance counters count nothing.
    Msr(hw.AMD_PATCH_LEVEL, MsrKind.READ_ONLY, value=0, vendors=Vendor.AMD),
    Msr(hw.AMD_HWCR, MsrKind.BITS, value=HWCR_WRITABLE, vendors=Vendor.AMD),
    Msr(hw.AMD_DE_CFG, MsrKind.BITS, value=hw.DE_CFG_LFENCE_SERIALIZE, vendors=Vendor.AMD),
    Msr(hw.AMD_INT_PENDING_MSG, MsrKind.READS_ZERO, value=0, vendors=Vendor.AMD),
    *_amd_performance_counters(),
    # The guest's local APIC (hv/devices/lapic.s.j2), kept with its state.
    Msr(hw.IA32_APIC_BASE, MsrKind.APIC_BASE),
    Msr(hw.IA32_TSC_DEADLINE, MsrKind.TSC_DEADLINE),
)
# IA32_TSC_ADJUST is not emulated (CPUID hides it, and RDMSR raises #GP):
# the guests read the real TSC, which a write to TSC_ADJUST would have to
# move for that guest alone.

ENTRY_FORMAT = "<IIIIIIQ"        # number, kind, VMCS field, VMCB offset, record slot, vendors, value
ENTRY_SIZE = struct.calcsize(ENTRY_FORMAT)
ENTRY_OFFSETS = {"number": 0, "kind": 4, "vmx": 8, "svm": 12, "slot": 16, "vendors": 20, "value": 24}
TABLE_SIZE = ENTRY_SIZE * len(EMULATED_MSRS)
RECORDED = tuple(msr for msr in EMULATED_MSRS if msr.kind in RECORD_KINDS)
RECORD_SIZE = 8 * len(RECORDED)  # the guest record's `msrs` field: a slot of 8 bytes each


def slot(msr: Msr) -> int:
    """The byte offset of `msr`'s value in the guest record's `msrs` field."""
    return 8 * RECORDED.index(msr) if msr.kind in RECORD_KINDS else NO_SLOT


def record_reset() -> bytes:
    """The `msrs` field as a guest starts (and restarts): each slot's FIRMWARE value, else 0."""
    return b"".join(FIRMWARE.get(msr.number, 0).to_bytes(8, "little") for msr in RECORDED)


def table() -> bytes:
    """The entries sorted by number, for the lookup's binary search."""
    return b"".join(struct.pack(ENTRY_FORMAT, msr.number, msr.kind, msr.vmx, msr.svm, slot(msr),
                                msr.vendors, msr.value)
                    for msr in sorted(EMULATED_MSRS, key=lambda msr: (msr.number, msr.vendors)))


def asm_constants() -> dict[str, int]:
    return {"MSR_TABLE_COUNT": len(EMULATED_MSRS), "MSR_IN_HARDWARE": IN_HARDWARE,
            "MSR_NO_SLOT": NO_SLOT, "MSR_TABLE_ENTRY_SIZE": ENTRY_SIZE,
            **{f"MSR_ENTRY_{name.upper()}": offset for name, offset in ENTRY_OFFSETS.items()},
            **{f"MSR_KIND_{kind.name}": int(kind) for kind in MsrKind},
            **{f"MSR_VENDOR_{backend.upper()}": int(vendor) for backend, vendor in BACKEND_VENDOR.items()}}
