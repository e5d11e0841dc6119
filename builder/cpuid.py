"""What CPUID tells a guest: the real CPU's answer, less every feature the
hypervisor does not virtualise.

A feature is hidden when its state is not switched between guests (an
MSR that is not emulated, a performance counter, a supervisor XSAVE
component), when its instructions are refused (MONITOR/MWAIT, RDPMC,
VMX/SVM), or when the device behind it does not exist for guests (x2APIC).  The
rules are built into the image as a table sorted by leaf; the core's CPUID
handler (hv/core/exit_policy.s.j2) ANDs each register with the masks of
the matching entries.  The bits that follow the guest's own state
(OSXSAVE, OSPKE, the XSAVE components), the features of the guest's
virtual PC that the hypervisor emulates whatever the real CPU has (APIC,
TSC-deadline, ARAT: GUEST_FEATURES below) and the hypervisor leaves are
set by the handler itself.

Bit numbers from the SDM Vol. 2A CPUID tables and AMD APM Vol. 3
appendix E.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builder import hw, vcpu
from builder.hw import bit

ANY_SUBLEAF = 0xFFFFFFFF
REGISTERS = ("eax", "ebx", "ecx", "edx")
ALL = 0xFFFFFFFF


@dataclass(frozen=True)
class Hide:
    """Clear `bits` of `register` in CPUID leaf `leaf` (subleaf `subleaf`)."""

    leaf: int
    register: str
    bits: int
    why: str
    subleaf: int = ANY_SUBLEAF


def _bits(*numbers: int) -> int:
    mask = 0
    for number in numbers:
        mask |= bit(number)
    return mask


HIDDEN = (
    # Leaf 1
    Hide(hw.CPUID_FEATURES_LEAF, "ecx", _bits(2, 4, 7, 8, 11, 15),
         "DTES64, DS-CPL, EST, TM2, SDBG, PDCM: debug-store, thermal and PMU MSRs not emulated"),
    Hide(hw.CPUID_FEATURES_LEAF, "ecx", _bits(3), "MONITOR/MWAIT: #UD (they would let a guest idle the real CPU)"),
    Hide(hw.CPUID_FEATURES_LEAF, "ecx", _bits(hw.CPUID_1_ECX_VMX_BIT, 6), "VMX, SMX: #UD"),
    Hide(hw.CPUID_FEATURES_LEAF, "ecx", _bits(21), "x2APIC: the guest's local APIC is an xAPIC"),
    Hide(hw.CPUID_FEATURES_LEAF, "ecx", _bits(hw.CPUID_1_ECX_OSXSAVE_BIT), "OSXSAVE: set from the guest's own CR4"),
    Hide(hw.CPUID_FEATURES_LEAF, "ecx", _bits(14),
         "xTPR update control: no chipset takes xTPR messages; IA32_MISC_ENABLE[23] is fixed"),
    Hide(hw.CPUID_FEATURES_LEAF, "edx", _bits(21, 22, 29, 31), "DS, ACPI thermal, TM, PBE: MSRs not emulated"),
    # Leaves 5, 6, 0xA: MONITOR/MWAIT, power management, performance monitoring
    *(Hide(hw.CPUID_MONITOR_LEAF, register, ALL, "MONITOR/MWAIT leaf") for register in REGISTERS),
    *(Hide(hw.CPUID_THERMAL_LEAF, register, ALL, "thermal and power-management MSRs not emulated") for register in REGISTERS),
    # Leaf 7, subleaf 0
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ebx", _bits(1),
         "IA32_TSC_ADJUST not emulated: guests read the real TSC (builder/msrs.py)", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ebx", _bits(2), "SGX", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ebx", _bits(10), "INVPCID: not enabled under VMX", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ebx", _bits(12, 15), "RDT monitoring and allocation MSRs not emulated", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ebx", _bits(14), "MPX: IA32_BNDCFGS not emulated", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ebx", _bits(25), "Intel PT MSRs not emulated", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ecx", _bits(hw.CPUID_7_ECX_OSPKE_BIT), "OSPKE: set from the guest's own CR4", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ecx", _bits(5), "WAITPKG: UMWAIT/TPAUSE would idle the real CPU", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ecx", _bits(7), "CET shadow stacks: supervisor XSAVE state not switched", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "ecx", _bits(30, 31), "SGX launch control, protection keys for supervisor pages", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "edx", _bits(18, 20), "PCONFIG, CET indirect branch tracking", 0),
    Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, "edx", _bits(26, 27, 28, 29, 30, 31),
         "IA32_SPEC_CTRL, PRED_CMD, FLUSH_CMD, ARCH_CAPABILITIES, CORE_CAPABILITIES: not emulated", 0),
    *(Hide(hw.CPUID_EXTENDED_FEATURES_LEAF, register, ALL, "subleaf 2: speculation-control MSRs not emulated", 2)
      for register in REGISTERS),
    *(Hide(hw.CPUID_PMU_LEAF, register, ALL, "no performance counters: RDPMC raises #GP") for register in REGISTERS),
    # Leaf 0xD: XSAVE
    Hide(hw.CPUID_XSAVE_LEAF, "eax", ALL & ~vcpu.GUEST_XFEATURES, "XCR0 components guests may not enable", 0),
    Hide(hw.CPUID_XSAVE_LEAF, "edx", ALL, "no XCR0 component above bit 31", 0),
    Hide(hw.CPUID_XSAVE_LEAF, "eax", _bits(3, 4), "XSAVES/XRSTORS and XFD: IA32_XSS and XFD MSRs not emulated", 1),
    Hide(hw.CPUID_XSAVE_LEAF, "ecx", ALL, "no supervisor state components (IA32_XSS)", 1),
    Hide(hw.CPUID_XSAVE_LEAF, "edx", ALL, "no supervisor state components (IA32_XSS)", 1),
    # Leaves 0x10, 0x12, 0x14: RDT allocation, SGX, processor trace
    *(Hide(leaf, register, ALL, "RDT, SGX and processor trace are not virtualised")
      for leaf in (hw.CPUID_RDT_ALLOCATION_LEAF, hw.CPUID_SGX_LEAF, hw.CPUID_PROCESSOR_TRACE_LEAF)
      for register in REGISTERS),
    # AMD extended leaves
    Hide(hw.CPUID_EXT_FEATURES_LEAF, "ecx", _bits(hw.CPUID_80000001_ECX_SVM_BIT), "SVM: #UD"),
    Hide(hw.CPUID_EXT_FEATURES_LEAF, "ecx", _bits(10, 12, 13, 15, 17, 19, 23, 24, 28, 29),
         "IBS, SKINIT, WDT, LWP, TCE, NodeId, performance counters, MONITORX: not virtualised"),
    Hide(hw.CPUID_ADDRESS_SIZES_LEAF, "ebx", _bits(12, 14, 15, 23, 24, 25),
         "IBPB, IBRS, STIBP, PPIN, SSBD, VIRT_SSBD: MSRs not emulated"),
    Hide(hw.CPUID_ADDRESS_SIZES_LEAF, "ebx", _bits(1), "IRPERF: its counter and HWCR.IRPerfEn not emulated"),
    *(Hide(hw.CPUID_SVM_FEATURES_LEAF, register, ALL, "SVM features: guests see no SVM") for register in REGISTERS),
    *(Hide(hw.CPUID_SEV_LEAF, register, ALL, "memory encryption (SEV) is not virtualised") for register in REGISTERS),
)

# Set in every guest's CPUID, because the virtual PC has them: a local
# APIC (leaf 1 EDX.APIC), its TSC-deadline timer mode (ECX.TSC_DEADLINE),
# and a timer that keeps running in every C-state (leaf 6 EAX.ARAT), which
# with TSC-deadline lets Linux use the local APIC timer without
# calibrating it against the PIT.
GUEST_FEATURES_1_ECX = bit(hw.CPUID_1_ECX_TSC_DEADLINE_BIT)
GUEST_FEATURES_1_EDX = hw.CPUID_1_EDX_APIC
GUEST_FEATURES_6_EAX = bit(hw.CPUID_6_EAX_ARAT_BIT)

ENTRY_FORMAT = "<IIIIII"            # leaf, subleaf, then an AND mask per register
ENTRY_SIZE = struct.calcsize(ENTRY_FORMAT)
ENTRY_OFFSETS = {"leaf": 0, "subleaf": 4, **{reg: 8 + 4 * i for i, reg in enumerate(REGISTERS)}}


def entries() -> list[tuple[int, int, dict[str, int]]]:
    """The rules merged into one (leaf, subleaf, keep masks) entry each,
    sorted by leaf (the handler stops at the first leaf above the guest's)."""
    merged: dict[tuple[int, int], dict[str, int]] = {}
    for rule in HIDDEN:
        masks = merged.setdefault((rule.leaf, rule.subleaf), dict.fromkeys(REGISTERS, ALL))
        masks[rule.register] &= ~rule.bits & ALL
    return [(leaf, subleaf, masks) for (leaf, subleaf), masks in sorted(merged.items())]


TABLE_COUNT = len(entries())


def table() -> bytes:
    return b"".join(struct.pack(ENTRY_FORMAT, leaf, subleaf, *(masks[reg] for reg in REGISTERS))
                    for leaf, subleaf, masks in entries())
