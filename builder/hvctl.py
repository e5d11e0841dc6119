"""`hvctl`: one command to a running hvrun's control console, for scripts
and tests (README, "The control console").

    hvctl [--socket PATH] COMMAND [WORD...]

prints the answer line; `list` prints a table of the guests instead
(--raw: the line as it came).  Exit status: 0 for an "ok" answer, 1 for
an error answer, 2 when no hvrun answers at the socket.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from builder import config, control

DEFAULT_SOCKET = Path("build") / control.SOCKET_NAME   # hvrun's, for the README's build/hv.elf
TIMEOUT_S = 90.0
EXIT_ERROR_ANSWER = 1
EXIT_NO_HVRUN = 2


def send(path: Path, line: str, timeout: float = TIMEOUT_S) -> str:
    """Send one command to the hvrun listening at `path`; return its answer.
    Raises OSError when nothing listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(path))
        connection.sendall(line.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            data = connection.recv(4096)
            if not data:
                break
            answer += data
    return answer.decode("ascii", "replace").rstrip("\r\n")


def list_table(answer: str) -> str:
    """`list`'s answer as a table, a row per guest (cpu: TSC cycles run)."""
    guests = control.parse_list(answer)
    columns = ("name", "state", "share", "memory", "disks", "exits", "cpu")
    rows = [columns] + [tuple(config.size_text(int(guest[column])) if column == "memory" else str(guest[column])
                              for column in columns) for guest in guests]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hvctl", description="Send one command to a running hvrun's control console.",
        epilog="commands: " + ", ".join(control.COMMANDS.values()))
    parser.add_argument("--socket", type=Path,
                        default=Path(os.environ.get("HVCTL_SOCKET", DEFAULT_SOCKET)),
                        help=f"hvrun's control socket (default: $HVCTL_SOCKET, else {DEFAULT_SOCKET})")
    parser.add_argument("--raw", action="store_true", help="print `list`'s answer line as it came")
    parser.add_argument("words", nargs="+", metavar="WORD", help="the command and its arguments")
    args = parser.parse_args(argv)
    line = " ".join(args.words)
    try:
        answer = send(args.socket, line)
    except OSError as error:
        print(f"hvctl: error: {args.socket}: no hvrun answers there ({error.strerror or error})",
              file=sys.stderr)
        return EXIT_NO_HVRUN
    if not answer:
        print(f"hvctl: error: {args.socket}: hvrun closed the connection without an answer",
              file=sys.stderr)
        return EXIT_NO_HVRUN
    if args.words[0] == "list" and answer.startswith("ok") and not args.raw:
        print(list_table(answer))
    else:
        print(answer)
    return 0 if answer.startswith("ok") else EXIT_ERROR_ANSWER


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
