"""The image's sizes, from a BuildResult: what the hypervisor itself takes,
and what each guest adds, read off the layout's regions (builder/layout.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.build import BuildResult
from builder.structs import GUEST


@dataclass(frozen=True)
class Sizes:
    code: int               # machine code (BuildResult.code_size)
    text: int               # code and the symbol table the crash reporter reads
    rodata: int             # IDT, exit tables, strings, VMCS set-up: all but the per-guest parts
    rwdata: int             # GDT, TSS, state, VMXON region: all but the per-guest parts
    stacks: int
    tables: int             # the hypervisor's page tables and the exit bitmaps
    image: int              # bytes of hv.elf
    per_guest: int          # the first guest's VMCS, set-up table, EPT (...) and record
    reserved: int           # machine memory from the hypervisor's base to the first guest's memory

    @property
    def code_and_data(self) -> int:
        """What the hypervisor needs whatever the guests: code, rodata, rwdata."""
        return self.code + self.rodata + self.rwdata


def _owner(region: str, guests: set[str]) -> str | None:
    """The guest a region belongs to: regions are named after their guest."""
    return next((token for token in region.split() if token in guests), None)


def sizes(result: BuildResult) -> Sizes:
    layout = result.layout
    guests = {guest.name for guest in layout.guests}
    rwdata_start = min(layout.rwdata.values())
    stacks_start = min(start for name, start, _ in layout.regions if "stack" in name)
    totals = {"rodata": 0, "rwdata": 0, "stacks": 0, "tables": 0}
    per_guest = dict.fromkeys(guests, GUEST.size)
    for name, start, size in layout.regions:
        owner = _owner(name, guests)
        if name == "text" or "unmapped" in name or name.endswith(" memory"):
            continue
        if owner:
            per_guest[owner] += size
        elif "stack" in name:
            totals["stacks"] += size
        elif start < rwdata_start:
            totals["rodata"] += size
        elif start < stacks_start:
            totals["rwdata"] += size
        else:
            totals["tables"] += size
    totals["rwdata"] -= GUEST.size * len(guests)       # the records, counted per guest
    return Sizes(code=result.code_size, text=result.text_size, image=len(result.elf),
                 per_guest=per_guest[layout.guests[0].name],
                 reserved=layout.guests[0].memory_base - layout.text, **totals)


def source_lines(templates: list[Path]) -> int:
    """Lines of assembly in `templates`: neither blank nor only a comment."""
    return sum(1 for template in templates for line in template.read_text().splitlines()
               if line.strip() and not line.strip().startswith(("#", "{#")))
