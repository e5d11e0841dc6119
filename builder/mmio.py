"""The MMIO decoder and the guest page walk, assembled on their own.

hv/core/decode.s.j2 (mmio_decode) and hv/core/guest_paging.s.j2
(guest_linear_to_physical, guest_physical_to_host, guest_fetch_instruction)
read no global state but the two fields of the hypervisor's record that
say which second-level tables reach guest memory (HV.nested_root and
nested_present), so they can run outside the hypervisor:
tests/unit/test_decode.py runs the bytes this module assembles in a CPU
emulator, with a record and tables of its own.  The hypervisor image
includes the same templates (hv/hypervisor.s.j2).
"""

from __future__ import annotations

from builder import hw
from builder.assemble import Assembly, assemble
from builder.render import render
from builder.structs import GUEST, HV, mmio_asm_constants

TEMPLATES = ("hv/core/decode.s.j2", "hv/core/guest_paging.s.j2")


def asm_constants(hv_record: int) -> dict[str, int]:
    """Every number the two templates use, by name; the hypervisor's
    record (HV: which second-level tables guest memory is reached through)
    at `hv_record`."""
    return {**hw.asm_constants(), **GUEST.asm_constants(), **mmio_asm_constants(),
            **{f"HV_{name.upper()}_ADDR": hv_record + HV.offsets[name] for name in ("nested_root", "nested_present")}}


def standalone(base: int, hv_record: int) -> Assembly:
    """The routines alone, assembled at `base`, labels included."""
    first, *rest = TEMPLATES
    source = render(first, asm_constants(hv_record)) + "".join(render(template, {}) for template in rest)
    return assemble(source, base, "MMIO routines (" + ", ".join(TEMPLATES) + ")")
