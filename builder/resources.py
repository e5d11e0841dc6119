"""Where hvbuild's own files are: the assembly templates (boot/, hv/,
guests/) and the emulator definitions (qemu/).

In a checkout they are the top-level folders beside builder/, where the
design keeps them.  A wheel carries them inside the package, as
builder/resources/<folder> (setup.py copies them there when it builds),
found beside this module, so an installed hvbuild needs no checkout.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

FOLDERS = ("boot", "hv", "guests", "qemu")
PACKAGED = "resources"                  # the folder inside the installed package


def root() -> Path:
    """The folder that holds FOLDERS: the package's resources once
    installed from a wheel, else the checkout."""
    package = Path(__file__).resolve().parent
    packaged = package / PACKAGED
    return packaged if packaged.is_dir() else package.parent


def version() -> str:
    """hvbuild's version, from the one place it is written (pyproject.toml)."""
    try:
        return importlib.metadata.version("hvbuild")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: run `make setup`)"
