"""Initial VMCB contents, computed at build time (AMD APM Vol. 2 chapter
15, appendix B).

Unlike a VMCS, a VMCB is plain memory with no CPU-dependent encoding, so
the builder writes each guest's VMCB completely; the hypervisor only reads
exit information from it and updates the guest state it emulates.
"""

from __future__ import annotations

import struct

from builder import hw
from builder.guest_images import GuestImage
from builder.layout import GuestLayout, Layout
from builder.start_state import Segment, start_state

M = hw.Vmcb

INTERCEPT_EXCEPTIONS = hw.SVM_INTERCEPT_EXCEPTION_DF   # a double fault would escalate past us
INTERCEPT_MISC1 = (hw.SVM_INTERCEPT_NMI | hw.SVM_INTERCEPT_RDPMC | hw.SVM_INTERCEPT_CPUID
                   | hw.SVM_INTERCEPT_INVD | hw.SVM_INTERCEPT_HLT | hw.SVM_INTERCEPT_INVLPGA
                   | hw.SVM_INTERCEPT_IOIO_PROT | hw.SVM_INTERCEPT_MSR_PROT | hw.SVM_INTERCEPT_SHUTDOWN)
# XSETBV: XCR0 is switched by the hypervisor (builder/vcpu.py), so the
# guest's writes must pass through it; MONITOR/MWAIT get #UD.
INTERCEPT_MISC2 = (hw.SVM_INTERCEPT_VMRUN | hw.SVM_INTERCEPT_VMMCALL | hw.SVM_INTERCEPT_VMLOAD
                   | hw.SVM_INTERCEPT_VMSAVE | hw.SVM_INTERCEPT_STGI | hw.SVM_INTERCEPT_CLGI
                   | hw.SVM_INTERCEPT_SKINIT | hw.SVM_INTERCEPT_MONITOR | hw.SVM_INTERCEPT_MWAIT
                   | hw.SVM_INTERCEPT_MWAIT_CONDITIONAL | hw.SVM_INTERCEPT_XSETBV)


def segment_attributes(access: int) -> int:
    """VMX access rights -> VMCB attributes: type, S, DPL, P in bits 0-7,
    AVL, L, D/B, G in bits 8-11 (APM Vol. 2 15.5.1).  Unusable becomes
    not present."""
    if access & hw.AR_UNUSABLE:
        return 0
    return (access & 0xFF) | (access >> 4 & 0xF00)


def vmcb(layout: Layout, guest: GuestLayout, image: GuestImage) -> bytes:
    state = start_state(guest, image)
    out = bytearray(hw.PAGE_SIZE)

    def put(offset: int, fmt: str, value: int) -> None:
        struct.pack_into(fmt, out, offset, value)

    put(M.INTERCEPT_EXCEPTIONS, "<I", INTERCEPT_EXCEPTIONS)
    put(M.INTERCEPT_MISC1, "<I", INTERCEPT_MISC1)
    put(M.INTERCEPT_MISC2, "<I", INTERCEPT_MISC2)
    put(M.IOPM_BASE_PA, "<Q", layout.svm["iopm"])
    put(M.MSRPM_BASE_PA, "<Q", layout.svm["msrpm"])
    put(M.GUEST_ASID, "<I", guest.vpid)
    put(M.TLB_CONTROL, "<B", hw.SVM_TLB_CONTROL_FLUSH_GUEST)   # cleared after the first run
    put(M.V_INTR, "<I", hw.SVM_V_INTR_MASKING)
    put(M.NP_CONTROL, "<Q", hw.SVM_NP_ENABLE)
    put(M.N_CR3, "<Q", guest.npt.pml4)
    for name, segment in state.segments.items():
        _put_segment(out, M[name], segment)
    _put_segment(out, M.GDTR, Segment(0, state.gdtr[0], state.gdtr[1], 0))
    _put_segment(out, M.IDTR, Segment(0, state.idtr[0], state.idtr[1], 0))
    put(M.CPL, "<B", 0)
    put(M.EFER, "<Q", state.efer | hw.EFER_SVME)     # APM 15.5.1: VMRUN needs guest EFER.SVME
    put(M.CR0, "<Q", state.cr0)
    put(M.CR3, "<Q", state.cr3)
    put(M.CR4, "<Q", state.cr4)
    put(M.DR6, "<Q", hw.SVM_DR6_DEFAULT)
    put(M.DR7, "<Q", hw.DR7_RESET)
    put(M.RFLAGS, "<Q", state.rflags)
    put(M.RIP, "<Q", state.rip)
    put(M.RSP, "<Q", state.rsp)
    put(M.G_PAT, "<Q", hw.PAT_POWER_ON)
    return bytes(out)


def _put_segment(out: bytearray, offset: int, segment: Segment) -> None:
    struct.pack_into("<HHIQ", out, offset, segment.selector, segment_attributes(segment.access),
                     segment.limit, segment.base)
