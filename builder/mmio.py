"""The MMIO decoder and the guest page walk, assembled on their own.

hv/core/decode.s.j2 (mmio_decode) and hv/core/guest_paging.s.j2
(guest_linear_to_physical, guest_fetch_instruction) keep no global state,
so they can run outside the hypervisor: tests/unit/test_decode.py runs the
bytes this module assembles in a CPU emulator.  The hypervisor image does
not include them yet: the exit handlers that call them will add the two
templates to hv/hypervisor.s.j2 and `mmio_asm_constants()` to
builder/build.py's constants.
"""

from __future__ import annotations

from builder import hw
from builder.assemble import Assembly, assemble
from builder.render import render
from builder.structs import GUEST, mmio_asm_constants

TEMPLATES = ("hv/core/decode.s.j2", "hv/core/guest_paging.s.j2")


def asm_constants() -> dict[str, int]:
    """Every number the two templates use, by name."""
    return {**hw.asm_constants(), **GUEST.asm_constants(), **mmio_asm_constants()}


def standalone(base: int) -> Assembly:
    """The routines alone, assembled at `base`, labels included."""
    first, *rest = TEMPLATES
    source = render(first, asm_constants()) + "".join(render(template, {}) for template in rest)
    return assemble(source, base, "MMIO routines (" + ", ".join(TEMPLATES) + ")")
