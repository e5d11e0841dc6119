"""`hvrun --kernel FILE`: your own kernel in one line, as with
`qemu-system-x86_64 -kernel`: a one-guest config made on the fly (with a
heartbeat guest beside it if asked), built, and booted.

The kind of kernel is the file's: a Linux bzImage (its "HdrS" setup
header: builder/linux.py), an ELF with a multiboot header in its first
8 KiB (builder/multiboot.py), or another ELF (started in the mode its
class says).
"""

from __future__ import annotations

from pathlib import Path

from builder import build, config, linux, multiboot
from builder.errors import BuildError

GUEST_NAME = "kernel"
BESIDE_NAME = "beside"
BESIDE_MEMORY = "128K"
BESIDE_BEATS = 10
DEFAULT_MEMORY = "256M"
LINUX_CONSOLE = "console=ttyS0"         # the guest's console is COM1
ELF_MAGIC = b"\x7fELF"


def kind(path: Path) -> str:
    """"linux", "multiboot" or "elf"; a BuildError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BuildError(str(path), error.strerror) from None
    if data[linux.HEADER_MAGIC:linux.HEADER_MAGIC + 4] == linux.HEADER_MAGIC_VALUE:
        return "linux"
    if data[:4] != ELF_MAGIC:
        raise BuildError(str(path), "not a kernel hvrun can boot: neither a Linux bzImage (no \"HdrS\" "
                         "setup header) nor an ELF file")
    return "multiboot" if multiboot.find_header(data) is not None else "elf"


def config_text(kernel: Path, initrd: Path | None, append: str | None, memory: str | None,
                beside: str | None) -> str:
    """The TOML of the one-guest config (paths absolute)."""
    what = kind(kernel)
    if initrd is not None and what != "linux":
        raise BuildError("--initrd", f"{kernel}: only a Linux kernel takes an initrd (this is {what})")
    lines = ["[[guest]]", f'name = "{GUEST_NAME}"', f'memory = "{memory or DEFAULT_MEMORY}"',
             f"{what} = {str(kernel.resolve())!r}"]
    if what == "linux":
        lines.append(f"cmdline = {(append if append is not None else LINUX_CONSOLE)!r}")
        if initrd is not None:
            lines.append(f"initrd = {str(initrd.resolve())!r}")
    elif append is not None:
        if what != "multiboot":
            raise BuildError("--append", f"{kernel}: a plain ELF kernel takes no command line")
        lines.append(f"cmdline = {append!r}")
    text = "\n".join(lines) + "\n"
    if beside is not None:
        if beside not in config.BUILTIN_GUESTS:
            raise BuildError("--beside", f"unknown builtin guest {beside!r}; one of {', '.join(config.BUILTIN_GUESTS)}")
        text += (f'\n[[guest]]\nname = "{BESIDE_NAME}"\nmemory = "{BESIDE_MEMORY}"\nbuiltin = "{beside}"\n'
                 f"heartbeats = {BESIDE_BEATS}\n")
    return text


def build_kernel_image(out_dir: Path, kernel: Path, initrd: Path | None, append: str | None,
                       memory: str | None, beside: str | None, iso: bool) -> Path:
    """Write the config and its image into `out_dir`; return hv.elf's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    toml = out_dir / "hv.toml"
    toml.write_text(config_text(kernel, initrd, append, memory, beside))
    result = build.build(config.load(toml))
    build.write_outputs(result, out_dir, iso=iso)
    return out_dir / "hv.elf"
