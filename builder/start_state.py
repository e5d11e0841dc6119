"""A guest's register state at its first instruction, independent of the
backend: the VMX backend writes it into the VMCS (builder/vmcs.py), the SVM
backend into the VMCB (builder/svm.py).  The README's "guest's view"
documents it.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import hw
from builder.config import StartMode
from builder.guest_images import GUEST_CODE_SELECTOR, GuestImage
from builder.layout import GuestLayout

GUEST_SELECTOR_CODE32 = GUEST_CODE_SELECTOR
GUEST_SELECTOR_DATA = 0x10
GUEST_SELECTOR_CODE64 = 0x18
GUEST_GDT_LIMIT = 4 * 8 - 1
REAL_MODE_IVT_LIMIT = 0x3FF
REAL_MODE_SEGMENT_LIMIT = 0xFFFF
REAL_MODE_STACK_LIMIT = 0x10000
FLAT_LIMIT = 0xFFFFFFFF


@dataclass(frozen=True)
class Segment:
    selector: int
    base: int
    limit: int
    access: int         # descriptor attributes in the VMX access-rights layout (SDM Vol. 3C 25.4.1)


@dataclass(frozen=True)
class StartState:
    mode: StartMode
    segments: dict[str, Segment]    # CS SS DS ES FS GS TR LDTR
    cr0: int
    cr3: int
    cr4: int
    efer: int
    rip: int
    rsp: int
    rflags: int
    gdtr: tuple[int, int]           # (base, limit)
    idtr: tuple[int, int]


def _code_and_data(mode: StartMode, entry: int) -> tuple[Segment, Segment, int]:
    if mode is StartMode.REAL:
        code_base = entry & ~0xFFFF
        code = Segment(code_base >> 4, code_base, REAL_MODE_SEGMENT_LIMIT,
                       hw.AR_P | hw.AR_S | hw.AR_TYPE_CODE_RX_ACCESSED)
        data = Segment(0, 0, REAL_MODE_SEGMENT_LIMIT, hw.AR_P | hw.AR_S | hw.AR_TYPE_DATA_RW_ACCESSED)
        return code, data, entry - code_base
    data = Segment(GUEST_SELECTOR_DATA, 0, FLAT_LIMIT, hw.FLAT_DATA)
    if mode is StartMode.PROTECTED:
        code = Segment(GUEST_SELECTOR_CODE32, 0, FLAT_LIMIT, hw.FLAT_CODE32)
    else:
        code = Segment(GUEST_SELECTOR_CODE64, 0, FLAT_LIMIT, hw.FLAT_CODE64)
    return code, data, entry


def start_state(guest: GuestLayout, image: GuestImage) -> StartState:
    mode = image.mode
    code, data, rip = _code_and_data(mode, image.entry)
    cr0, cr3, cr4, efer = hw.CR0_ET | hw.CR0_NE, 0, 0, 0
    if mode is not StartMode.REAL:
        cr0 |= hw.CR0_PE
    if mode is StartMode.LONG:
        cr0 |= hw.CR0_PG | hw.CR0_WP
        cr4 |= hw.CR4_PAE
        cr3 = guest.startup.pml4
        efer = hw.EFER_LME | hw.EFER_LMA
    if mode is StartMode.REAL:
        rsp = min(guest.usable_top, REAL_MODE_STACK_LIMIT) - 16
        gdtr, idtr = (0, REAL_MODE_SEGMENT_LIMIT), (0, REAL_MODE_IVT_LIMIT)
    else:
        rsp = guest.usable_top
        gdtr, idtr = (guest.startup.gdt, GUEST_GDT_LIMIT), (0, 0)
    segments = {"CS": code, "SS": data, "DS": data, "ES": data, "FS": data, "GS": data,
                # TR must be a usable busy TSS (SDM Vol. 3C 26.3.1.2); LDTR may be unusable.
                "TR": Segment(0, 0, REAL_MODE_SEGMENT_LIMIT, hw.AR_P | hw.AR_TYPE_TSS_BUSY_32),
                "LDTR": Segment(0, 0, 0, hw.AR_UNUSABLE)}
    return StartState(mode, segments, cr0, cr3, cr4, efer, rip, rsp, hw.RFLAGS_RESERVED_1, gdtr, idtr)
