"""The MMIO decoder, assembled on its own.

hv/core/decode.s.j2 (mmio_decode) keeps no global state, so it can run
outside the hypervisor: tests/unit/test_decode.py runs the bytes this
module assembles in a CPU emulator.  The hypervisor image does not include
it yet: the exit handlers that call it will add the template to
hv/hypervisor.s.j2 and `mmio_asm_constants()` to builder/build.py's
constants.
"""

from __future__ import annotations

from builder import hw
from builder.assemble import Assembly, assemble
from builder.render import render
from builder.structs import GUEST, mmio_asm_constants

TEMPLATES = ("hv/core/decode.s.j2",)


def asm_constants() -> dict[str, int]:
    """Every number the two templates use, by name."""
    return {**hw.asm_constants(), **GUEST.asm_constants(), **mmio_asm_constants()}


def standalone(base: int) -> Assembly:
    """The routines alone, assembled at `base`, labels included."""
    first, *rest = TEMPLATES
    source = render(first, asm_constants()) + "".join(render(template, {}) for template in rest)
    return assemble(source, base, "MMIO routines (" + ", ".join(TEMPLATES) + ")")
