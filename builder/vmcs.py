"""Initial VMCS contents, computed at build time (SDM Vol. 3C chapter 25).

The hypervisor sets up a guest's VMCS by walking two tables of
(field, value) entries: one common to every guest (host state, execution
controls) and one per guest (its start state, EPT pointer, VPID).  Control
values depend on what the CPU allows, which only the running hypervisor can
read, so each entry carries an adjust kind: at boot the hypervisor reads the
capability MSR of each kind, and an entry's value v is written as
``(v | must_be_one[kind]) & may_be_one[kind]`` (SDM Vol. 3D A.3-A.5, A.7-A.8).
A wanted bit the CPU cannot set is reported as a missing feature.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from builder import hw
from builder.config import StartMode
from builder.guest_images import GuestImage
from builder.layout import CAPS_SOURCE_SIZE, GuestLayout, Layout
from builder.start_state import start_state
from builder.structs import GUEST, SAVED_REGISTERS

V = hw.Vmcs

# Host selectors: our GDT (see builder.tables.gdt)
SELECTOR_CODE64 = 0x08
SELECTOR_DATA = 0x10
SELECTOR_CODE32 = 0x18
SELECTOR_TSS = 0x20


class Adjust(enum.IntEnum):
    """How a set-up value is adjusted to the CPU: index into the capability table."""

    NONE = 0
    PIN_BASED = 1
    PROC_BASED = 2
    PROC_BASED2 = 3
    EXIT = 4
    ENTRY = 5
    CR0 = 6
    CR4 = 7


class CapsStyle(enum.IntEnum):
    NONE = 0        # no constraint
    CONTROL = 1     # low dword: bits that must be 1, high dword: bits that may be 1
    FIXED = 2       # MSR: bits fixed to 1 (less `relax`), MSR+1: bits that may be 1
    TRUE_CONTROL = 3  # as CONTROL, from the TRUE_* MSR where IA32_VMX_BASIC[55] says it
                      # exists, else from the older MSR TRUE_CONTROL_DISTANCE below it


@dataclass(frozen=True)
class CapsSource:
    style: CapsStyle
    msr: int = 0
    relax: int = 0


CAPS_SOURCES = {
    Adjust.NONE: CapsSource(CapsStyle.NONE),
    Adjust.PIN_BASED: CapsSource(CapsStyle.TRUE_CONTROL, hw.IA32_VMX_TRUE_PINBASED_CTLS),
    Adjust.PROC_BASED: CapsSource(CapsStyle.TRUE_CONTROL, hw.IA32_VMX_TRUE_PROCBASED_CTLS),
    Adjust.PROC_BASED2: CapsSource(CapsStyle.CONTROL, hw.IA32_VMX_PROCBASED_CTLS2),
    Adjust.EXIT: CapsSource(CapsStyle.TRUE_CONTROL, hw.IA32_VMX_TRUE_EXIT_CTLS),
    Adjust.ENTRY: CapsSource(CapsStyle.TRUE_CONTROL, hw.IA32_VMX_TRUE_ENTRY_CTLS),
    # Unrestricted guest lifts the PE and PG requirements (SDM Vol. 3C 26.3.1.1).
    Adjust.CR0: CapsSource(CapsStyle.FIXED, hw.IA32_VMX_CR0_FIXED0, hw.CR0_PE | hw.CR0_PG),
    Adjust.CR4: CapsSource(CapsStyle.FIXED, hw.IA32_VMX_CR4_FIXED0),
}

PIN_BASED_CONTROLS = (hw.PIN_EXTERNAL_INTERRUPT_EXITING | hw.PIN_ACTIVATE_PREEMPTION_TIMER
                      | hw.PIN_NMI_EXITING | hw.PIN_VIRTUAL_NMIS)
# MWAIT, MONITOR and RDPMC exit so that the guest gets their #UD or #GP
# (builder/cpuid.py hides them); CR8 accesses exit so that the guest's TPR
# never reaches the real APIC (builder/vcpu.py).
PROC_BASED_CONTROLS = (hw.PROC_HLT_EXITING | hw.PROC_MWAIT_EXITING | hw.PROC_RDPMC_EXITING
                       | hw.PROC_CR8_LOAD_EXITING | hw.PROC_CR8_STORE_EXITING
                       | hw.PROC_USE_IO_BITMAPS | hw.PROC_USE_MSR_BITMAPS | hw.PROC_MONITOR_EXITING
                       | hw.PROC_ACTIVATE_SECONDARY_CONTROLS)
PROC_BASED2_CONTROLS = (hw.PROC2_ENABLE_EPT | hw.PROC2_ENABLE_RDTSCP | hw.PROC2_ENABLE_VPID
                        | hw.PROC2_UNRESTRICTED_GUEST)
# The preemption timer is written at every VM entry from the slice's TSC
# deadline (hv/vmx/entry.s.j2), so its value need not be saved.
# DR7 and IA32_DEBUGCTL are the guest's own: saved at exit, loaded at entry.
EXIT_CONTROLS = (hw.EXIT_SAVE_DEBUG_CONTROLS | hw.EXIT_HOST_ADDRESS_SPACE_SIZE | hw.EXIT_ACK_INTERRUPT_ON_EXIT
                 | hw.EXIT_SAVE_IA32_PAT | hw.EXIT_LOAD_IA32_PAT
                 | hw.EXIT_SAVE_IA32_EFER | hw.EXIT_LOAD_IA32_EFER)
HOST_EFER = hw.EFER_LME | hw.EFER_LMA | hw.EFER_NXE
HOST_CR0 = hw.CR0_PE | hw.CR0_ET | hw.CR0_NE | hw.CR0_WP | hw.CR0_PG
# Bits the hypervisor owns in the guest's CR0/CR4: a guest write that changes
# them exits (SDM Vol. 3C 25.6.6); reads show the guest its own shadow value.
CR0_HOST_OWNED = hw.CR0_NE
CR4_HOST_OWNED = hw.CR4_VMXE

Entry = tuple[int, Adjust, int]     # (field, adjust, value)


def common_entries(layout: Layout, labels: dict[str, int]) -> list[Entry]:
    """Host state and controls, identical for every guest."""
    plain = Adjust.NONE
    return [
        (V.PIN_BASED_VM_EXEC_CONTROL, Adjust.PIN_BASED, PIN_BASED_CONTROLS),
        (V.CPU_BASED_VM_EXEC_CONTROL, Adjust.PROC_BASED, PROC_BASED_CONTROLS),
        (V.SECONDARY_VM_EXEC_CONTROL, Adjust.PROC_BASED2, PROC_BASED2_CONTROLS),
        (V.VM_EXIT_CONTROLS, Adjust.EXIT, EXIT_CONTROLS),
        (V.EXCEPTION_BITMAP, plain, 0),
        (V.IO_BITMAP_A, plain, layout.vmx["io_bitmap_a"]),
        (V.IO_BITMAP_B, plain, layout.vmx["io_bitmap_b"]),
        (V.MSR_BITMAP, plain, layout.vmx["msr_bitmap"]),
        (V.VMCS_LINK_POINTER, plain, hw.VMCS_LINK_POINTER_NONE),
        (V.CR0_GUEST_HOST_MASK, plain, CR0_HOST_OWNED),
        (V.CR4_GUEST_HOST_MASK, plain, CR4_HOST_OWNED),
        (V.HOST_CS_SELECTOR, plain, SELECTOR_CODE64),
        (V.HOST_SS_SELECTOR, plain, SELECTOR_DATA),
        (V.HOST_DS_SELECTOR, plain, SELECTOR_DATA),
        (V.HOST_ES_SELECTOR, plain, SELECTOR_DATA),
        (V.HOST_FS_SELECTOR, plain, SELECTOR_DATA),
        (V.HOST_GS_SELECTOR, plain, SELECTOR_DATA),
        (V.HOST_TR_SELECTOR, plain, SELECTOR_TSS),
        (V.HOST_FS_BASE, plain, 0),
        (V.HOST_GS_BASE, plain, 0),
        (V.HOST_TR_BASE, plain, layout.rwdata["tss"]),
        (V.HOST_GDTR_BASE, plain, layout.rwdata["gdt"]),
        (V.HOST_IDTR_BASE, plain, layout.rodata["idt"]),
        (V.HOST_IA32_EFER, plain, HOST_EFER),
        (V.HOST_IA32_PAT, plain, hw.PAT_POWER_ON),
        (V.GUEST_IA32_PAT, plain, hw.PAT_POWER_ON),
        (V.HOST_RIP, plain, labels.get("vmx_exit_entry", 0)),
        (V.GUEST_DR7, plain, hw.DR7_RESET),
        # Every guest-state and entry field a guest's run can leave behind
        # is written here: VMCLEAR does not reset a VMCS (Bochs keeps it in
        # memory), and a restart reuses it (hv/core/restart.s.j2).
        (V.GUEST_ACTIVITY_STATE, plain, hw.GUEST_ACTIVITY_ACTIVE),
        (V.GUEST_INTERRUPTIBILITY_INFO, plain, 0),
        (V.GUEST_PENDING_DBG_EXCEPTIONS, plain, 0),
        (V.GUEST_IA32_DEBUGCTL, plain, 0),
        (V.VM_ENTRY_INTR_INFO_FIELD, plain, 0),
        (V.GUEST_SYSENTER_CS, plain, 0),
        (V.GUEST_SYSENTER_ESP, plain, 0),
        (V.GUEST_SYSENTER_EIP, plain, 0),
    ]


def guest_entries(guest: GuestLayout, image: GuestImage) -> list[Entry]:
    """A guest's start state (builder/start_state.py) as VMCS fields."""
    plain = Adjust.NONE
    state = start_state(guest, image)
    entry_controls = hw.ENTRY_LOAD_DEBUG_CONTROLS | hw.ENTRY_LOAD_IA32_EFER | hw.ENTRY_LOAD_IA32_PAT
    if state.mode is StartMode.LONG:
        entry_controls |= hw.ENTRY_IA32E_MODE_GUEST
    entries: list[Entry] = [
        (V.VIRTUAL_PROCESSOR_ID, plain, guest.vpid),
        (V.EPT_POINTER, plain, guest.ept.ept_pointer),
        (V.HOST_RSP, plain, guest.record + GUEST.offsets["rax"] + 8 * len(SAVED_REGISTERS)),
        (V.VM_ENTRY_CONTROLS, Adjust.ENTRY, entry_controls),
        (V.GUEST_CR0, Adjust.CR0, state.cr0),
        (V.CR0_READ_SHADOW, plain, state.cr0),
        (V.GUEST_CR3, plain, state.cr3),
        (V.GUEST_CR4, Adjust.CR4, state.cr4),
        (V.CR4_READ_SHADOW, plain, state.cr4),
        (V.GUEST_IA32_EFER, plain, state.efer),
        (V.GUEST_RIP, plain, state.rip),
        (V.GUEST_RFLAGS, plain, state.rflags),
        (V.GUEST_RSP, plain, state.rsp),
        (V.GUEST_GDTR_BASE, plain, state.gdtr[0]),
        (V.GUEST_GDTR_LIMIT, plain, state.gdtr[1]),
        (V.GUEST_IDTR_BASE, plain, state.idtr[0]),
        (V.GUEST_IDTR_LIMIT, plain, state.idtr[1]),
    ]
    for name, segment in state.segments.items():
        entries += [
            (V[f"GUEST_{name}_SELECTOR"], plain, segment.selector),
            (V[f"GUEST_{name}_BASE"], plain, segment.base),
            (V[f"GUEST_{name}_LIMIT"], plain, segment.limit),
            (V[f"GUEST_{name}_AR_BYTES"], plain, segment.access),
        ]
    return entries


def pack(entries: list[Entry]) -> bytes:
    """Each entry is two quadwords: adjust << 32 | field, then the value."""
    out = bytearray()
    for field, adjust, value in entries:
        out += (int(adjust) << 32 | int(field)).to_bytes(8, "little")
        out += (value & (1 << 64) - 1).to_bytes(8, "little")
    return bytes(out)


def pack_caps_sources() -> bytes:
    """One entry per adjust kind: msr (4), style (4), relax (8)."""
    out = b"".join(struct.pack("<IIQ", CAPS_SOURCES[kind].msr, CAPS_SOURCES[kind].style,
                               CAPS_SOURCES[kind].relax) for kind in Adjust)
    assert len(out) == len(Adjust) * CAPS_SOURCE_SIZE
    return out
