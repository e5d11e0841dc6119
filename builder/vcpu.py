"""A guest's virtual CPU: every piece of processor state a guest can write
and another guest could read, and who switches it on each backend.

VM entry and exit switch part of the state themselves: the VMCS guest-state
area (SDM Vol. 3C 25.4, 27.3, 28.3) and the VMCB state-save area with
VMLOAD/VMSAVE (AMD APM Vol. 2 15.5, 15.5.2, table B-2).  The rest stays in
the processor across a world switch, so the hypervisor saves it and loads
the next guest's whenever the guest on the CPU changes (never on an exit
that resumes the same guest: the hypervisor itself touches none of it).
This table is the one definition of that state: the builder lays out the
record fields and their reset values from it, and hv/core/vcpu.s.j2
generates each backend's save and load code and the state dump from it.

The general-purpose registers are switched on every exit (structs.GUEST's
register area) and are not listed here; nor are the MSRs that only
describe the machine (MTRRs, MCG_STATUS, MISC_ENABLE...: builder/msrs.py
RECORD_KINDS), which live in the guest's record and never reach the CPU.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from builder import hw

XSAVE_AREA_SIZE = hw.PAGE_SIZE    # per guest; the boot check compares CPUID.(0xD,0).EBX with it

# The XSAVE state components a guest may enable in XCR0 (those this CPU
# also has, CPUID.(EAX=0xD,ECX=0).EAX).  MPX (BNDREGS, BNDCSR) is left
# out: its supervisor state (IA32_BNDCFGS) is not emulated; so are the
# components XCR0 cannot enable (supervisor state, managed through IA32_XSS).
GUEST_XFEATURES = (hw.XFEATURE_X87 | hw.XFEATURE_SSE | hw.XFEATURE_AVX | hw.XFEATURE_AVX512
                   | hw.XFEATURE_PKRU)


class Access(enum.Enum):
    """How the hypervisor reads and writes a piece of state on the CPU."""

    FPU = "fpu"                 # x87/SSE/AVX... registers: XSAVE/XRSTOR (FXSAVE/FXRSTOR without XSAVE)
    XCR = "xcr"                 # XGETBV/XSETBV
    CONTROL = "control"         # MOV from/to CRn
    DEBUG = "debug"             # MOV from/to DRn
    MSR = "msr"                 # RDMSR/WRMSR


class Keeper(enum.Enum):
    """Who switches a piece of state between guests."""

    ENTRY = "entry"             # the VM entry and exit (VMCS field, VMCB field, VMLOAD/VMSAVE)
    HYPERVISOR = "hypervisor"   # hv/core/vcpu.s.j2, when the guest on the CPU changes
    EMULATED = "emulated"       # every access exits: the record holds it, the CPU never does


@dataclass(frozen=True)
class StateItem:
    name: str                   # the record field (GUEST_<NAME>) and the name in the dump
    access: Access
    number: int                 # CR or DR number, MSR index, XCR index; unused for FPU
    reset: int                  # the value at power-on (SDM Vol. 3A 9.1.1, table 9-1)
    keeper: dict[str, Keeper]   # per backend
    where: str                  # what the SDM/APM says holds it, or why the hypervisor must


H, E = Keeper.HYPERVISOR, Keeper.ENTRY
BOTH = {"vmx": H, "svm": H}
VMX_ONLY = {"vmx": H, "svm": E}

STATE = (
    # XSETBV exits on both backends (but under QEMU 7.2's SVM, which ignores
    # the XSETBV intercept), so the record holds XCR0; it is saved with the
    # FPU state by XGETBV all the same, and loaded after it (the FPU load
    # needs every component enabled).
    StateItem("xcr0", Access.XCR, hw.XCR_XFEATURE_ENABLED_MASK, hw.XCR0_RESET, BOTH,
              "in neither VMCS nor VMCB"),
    # Saved and loaded as a whole for every component in GUEST_XFEATURES,
    # whatever the guest's XCR0: SSE registers are usable with XCR0.SSE
    # clear, and a component the next guest enables must not hold the
    # previous guest's values (SDM Vol. 1 13.5).
    StateItem("fpu", Access.FPU, 0, 0, BOTH, "x87, SSE, AVX, AVX-512, PKRU: in neither VMCS nor VMCB"),
    # The VMCB has a CR2 (APM B-2), but Bochs 2.7's VMRUN does not load it:
    # switched by the hypervisor on both backends (the VMCB's copy, saved at
    # every #VMEXIT, always equals what the switch saved).
    StateItem("cr2", Access.CONTROL, 2, 0, BOTH, "no VMCS field; the VMCB's is not loaded by Bochs"),
    StateItem("dr0", Access.DEBUG, 0, 0, BOTH, "in neither VMCS nor VMCB"),
    StateItem("dr1", Access.DEBUG, 1, 0, BOTH, "in neither VMCS nor VMCB"),
    StateItem("dr2", Access.DEBUG, 2, 0, BOTH, "in neither VMCS nor VMCB"),
    StateItem("dr3", Access.DEBUG, 3, 0, BOTH, "in neither VMCS nor VMCB"),
    StateItem("dr6", Access.DEBUG, 6, hw.DR6_RESET, VMX_ONLY, "VMCB DR6 (APM B-2); no VMCS field"),
    StateItem("star", Access.MSR, hw.IA32_STAR, 0, VMX_ONLY, "VMLOAD/VMSAVE (APM 15.5.2); no VMCS field"),
    StateItem("lstar", Access.MSR, hw.IA32_LSTAR, 0, VMX_ONLY, "VMLOAD/VMSAVE; no VMCS field"),
    StateItem("cstar", Access.MSR, hw.IA32_CSTAR, 0, VMX_ONLY, "VMLOAD/VMSAVE; no VMCS field"),
    StateItem("fmask", Access.MSR, hw.IA32_FMASK, 0, VMX_ONLY, "VMLOAD/VMSAVE; no VMCS field"),
    StateItem("kernel_gs_base", Access.MSR, hw.IA32_KERNEL_GS_BASE, 0, VMX_ONLY,
              "VMLOAD/VMSAVE; no VMCS field; SWAPGS changes it without an exit"),
    StateItem("tsc_aux", Access.MSR, hw.IA32_TSC_AUX, 0, BOTH, "in neither VMCS nor VMCB; RDTSCP reads it"),
    # MOV to/from CR8 exits under VMX (CR8-load/store exiting): without it a
    # guest would write the real TPR.  Under SVM, V_INTR_MASKING keeps the
    # guest's in the VMCB's V_TPR (APM 15.21.4).
    StateItem("cr8", Access.CONTROL, 8, 0, {"vmx": Keeper.EMULATED, "svm": E}, "VMCB V_TPR"),
)
# State the VM entry and exit switch on both backends, listed for the
# README: DR7 and IA32_DEBUGCTL (VMCS guest fields with the "load/save
# debug controls" controls; VMCB DR7, DBGCTL), PAT (VMCS GUEST_IA32_PAT
# with the PAT load/save controls; VMCB G_PAT), EFER, CR0, CR3, CR4, the
# segment registers and descriptor tables, SYSENTER_*, FS/GS base, RSP,
# RIP, RFLAGS, and under SVM also CR2, DR6 and the SYSCALL MSRs.


def switched(backend: str) -> tuple[StateItem, ...]:
    """The items the hypervisor switches for `backend`, in switching order."""
    return tuple(item for item in STATE if item.keeper[backend] is Keeper.HYPERVISOR)


def record_fields() -> list[tuple[str, int]]:
    """(name, size) of the record fields the state needs, after the registers."""
    return [("xsave_area", 8)] + [(item.name, 8) for item in STATE if item.access is not Access.FPU]


def reset_values() -> dict[str, int]:
    return {item.name: item.reset for item in STATE if item.access is not Access.FPU and item.reset}


def xsave_area_reset() -> bytes:
    """A guest's XSAVE area at power-on.  The header's XSTATE_BV is zero, so
    XRSTOR puts every component in its initial state (SDM Vol. 1 13.8.1);
    MXCSR, which XRSTOR loads from the legacy area whatever XSTATE_BV says,
    and the x87 control word (for FXRSTOR, without XSAVE) hold their
    reset values."""
    area = bytearray(XSAVE_AREA_SIZE)
    area[hw.XSAVE_LEGACY_FCW:hw.XSAVE_LEGACY_FCW + 2] = hw.FCW_RESET.to_bytes(2, "little")
    area[hw.XSAVE_LEGACY_MXCSR:hw.XSAVE_LEGACY_MXCSR + 4] = hw.MXCSR_RESET.to_bytes(4, "little")
    return bytes(area)
