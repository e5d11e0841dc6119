"""Stage 3: render the jinja2 assembly templates.

Templates live in the top-level `boot/`, `hv/` and `guests/` folders (in
an installed wheel, inside the package: builder/resources.py).  Every
number they need arrives as a generated `.set NAME, value` line at the top
of the rendered source (hardware constants, record offsets, layout
addresses), so the templates contain names, never the numbers themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from builder import resources

PROJECT_ROOT = Path(__file__).resolve().parent.parent     # the checkout: bench/ and fuzz/ run from it

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(resources.root())),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def set_lines(constants: dict[str, int]) -> str:
    return "".join(f".set {name}, {value:#x}\n" for name, value in sorted(constants.items()))


def render(template: str, constants: dict[str, int], **context: Any) -> str:
    """Render `template` (a path below the resources' root, e.g. "hv/hypervisor.s.j2") after its constants."""
    body = _environment.get_template(template).render(**context)
    return f"# rendered from {template}\n" + set_lines(constants) + body
