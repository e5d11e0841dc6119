"""Command-line entry points: `hvbuild` (build an image) and `hvrun` (boot it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builder import build, config, resources
from builder.errors import BuildError

EXIT_USER_ERROR = 2


def hvbuild(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hvbuild", description="Build a bootable VMX hypervisor image from a guest config.")
    parser.add_argument("config", nargs="?", type=Path,
                        help="TOML config (default: the embedded two-guest demo)")
    parser.add_argument("-o", "--output", type=Path, default=Path("build"),
                        help="output directory (default: build/)")
    parser.add_argument("--no-iso", action="store_true",
                        help="write only hv.elf and the report, not the GRUB ISO")
    parser.add_argument("--release", action="append", default=[], metavar="GUEST/DISK",
                        help="free a disk the config no longer has in the storage pool (its data is lost)")
    parser.add_argument("--version", action="version", version=f"hvbuild {resources.version()}")
    args = parser.parse_args(argv)
    try:
        result = build.build(config.load(args.config), release=tuple(args.release))
        written = build.write_outputs(result, args.output, iso=not args.no_iso)
    except BuildError as error:
        print(f"hvbuild: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    layout = result.layout
    print(f"hvbuild: {len(layout.guests)} guests, hypervisor code {result.code_size} bytes, "
          f"machine memory {layout.machine_memory >> 20} MiB")
    for path in written:
        print(f"  {path}")
    if result.pool is not None:
        print("\n".join(build.pool_report(result.pool)))
    return 0


def hvrun(argv: list[str] | None = None) -> int:
    from builder import run  # the runner needs pexpect, a test/run dependency
    return run.main(argv)


def main_hvbuild() -> None:
    sys.exit(hvbuild())


def main_hvrun() -> None:
    sys.exit(hvrun())


if __name__ == "__main__":
    main_hvbuild()
