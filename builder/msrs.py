"""The MSRs a guest may use, and where each backend keeps them.

Every RDMSR and WRMSR exits; the core's exit policy
(hv/core/exit_policy.s.j2) looks the MSR up in this table, built into the
image, and asks the chosen backend to read or write the guest state named
for it, or, for MSRs the hypervisor switches itself (builder/vcpu.py),
reads or writes the MSR on the CPU, which holds the guest's value while the
guest is the one loaded.  Any MSR not listed raises #GP in the guest
(README, "The guest's view").  Every value is checked before it reaches a
real WRMSR or a VM entry, so no guest value can fault in the hypervisor.
"""

from __future__ import annotations

import enum
import struct

from builder import hw


class MsrKind(enum.IntEnum):
    """How the hypervisor emulates an MSR the guest may use."""

    ADDRESS = 0          # kept in the guest state; writes must be canonical
    VALUE = 1            # kept in the guest state as written
    EFER = 2             # only SCE, LME, NXE are writable; LMA follows the CPU
    TSC = 3              # reads the time-stamp counter; writes raise #GP
    VALUE32 = 4          # as VALUE, but bits 63:32 are reserved (#GP if set)
    PAT = 5              # eight memory types, each one of hw.PAT_VALID_TYPES
    APIC_BASE = 6        # the guest's local APIC (hv/devices/lapic.s.j2), in its record:
    TSC_DEADLINE = 7     #   its base and enable bit, its timer's TSC deadline


# Where a backend keeps an MSR: a VMCS field, a VMCB offset, or this: the
# MSR itself on the CPU, switched between guests by builder/vcpu.py's code.
IN_HARDWARE = 0xFFFFFFFF

V, M = hw.Vmcs, hw.Vmcb
# (MSR, kind, where VMX keeps it: VMCS field, where SVM keeps it: VMCB offset)
EMULATED_MSRS = (
    (hw.IA32_TSC, MsrKind.TSC, 0, 0),
    (hw.IA32_SYSENTER_CS, MsrKind.VALUE, V.GUEST_SYSENTER_CS, M.SYSENTER_CS),
    (hw.IA32_SYSENTER_ESP, MsrKind.ADDRESS, V.GUEST_SYSENTER_ESP, M.SYSENTER_ESP),
    (hw.IA32_SYSENTER_EIP, MsrKind.ADDRESS, V.GUEST_SYSENTER_EIP, M.SYSENTER_EIP),
    (hw.IA32_EFER, MsrKind.EFER, V.GUEST_IA32_EFER, M.EFER),
    (hw.IA32_FS_BASE, MsrKind.ADDRESS, V.GUEST_FS_BASE, M.FS + hw.VMCB_SEGMENT_BASE),
    (hw.IA32_GS_BASE, MsrKind.ADDRESS, V.GUEST_GS_BASE, M.GS + hw.VMCB_SEGMENT_BASE),
    (hw.IA32_STAR, MsrKind.VALUE, IN_HARDWARE, M.STAR),
    (hw.IA32_LSTAR, MsrKind.ADDRESS, IN_HARDWARE, M.LSTAR),
    (hw.IA32_CSTAR, MsrKind.ADDRESS, IN_HARDWARE, M.CSTAR),
    (hw.IA32_FMASK, MsrKind.VALUE32, IN_HARDWARE, M.SFMASK),
    (hw.IA32_KERNEL_GS_BASE, MsrKind.ADDRESS, IN_HARDWARE, M.KERNEL_GS_BASE),
    (hw.IA32_TSC_AUX, MsrKind.VALUE32, IN_HARDWARE, IN_HARDWARE),
    (hw.IA32_PAT, MsrKind.PAT, V.GUEST_IA32_PAT, M.G_PAT),
    (hw.IA32_APIC_BASE, MsrKind.APIC_BASE, 0, 0),
    (hw.IA32_TSC_DEADLINE, MsrKind.TSC_DEADLINE, 0, 0),
)
ENTRY_FORMAT = "<IIII"                                    # number, kind, VMCS field, VMCB offset
ENTRY_SIZE = struct.calcsize(ENTRY_FORMAT)
ENTRY_OFFSETS = {"number": 0, "kind": 4, "vmx": 8, "svm": 12}
TABLE_SIZE = ENTRY_SIZE * len(EMULATED_MSRS)


def table() -> bytes:
    return b"".join(struct.pack(ENTRY_FORMAT, msr, kind, vmx_field, svm_offset)
                    for msr, kind, vmx_field, svm_offset in EMULATED_MSRS)
