"""The control console's commands (hv/core/control.s.j2): one table for
the hypervisor's parser, its `help`, and hvctl."""

from __future__ import annotations

from builder.config import MIB, POOL_SIZE_MAX, SHARE_MAX, SHARE_MIN

# Each command's words, as `help` and the usage errors give them.
COMMANDS = {
    "list": "list",
    "pause": "pause NAME",
    "resume": "resume NAME",
    "stop": "stop NAME",
    "restart": "restart NAME",
    "share": "share NAME N",
    "memory": "memory NAME SIZE",
    "disk": "disk NAME DISK grow SIZE",
    "stats": "stats NAME",
    "check": "check",
    "quit": "quit",
    "help": "help",
}
SOCKET_NAME = "control.sock"    # hvrun's socket for hvctl, beside the image
LINE_SIZE = 96                  # a command, its NUL included (HV.control_line)
ARGS_MAX = max(len(usage.split()) for usage in COMMANDS.values())
NUMBER_DIGITS_MAX = 10
REFUSED_LENGTH = 1              # HV.control_overflow: why a line is refused at its end
REFUSED_BYTE = 2
SHARE_RANGE = f"a share is a whole number from {SHARE_MIN} to {SHARE_MAX}"


def asm_constants() -> dict[str, int]:
    return {"CONTROL_LINE_SIZE": LINE_SIZE, "CONTROL_ARGS_MAX": ARGS_MAX,
            "CONTROL_NUMBER_DIGITS_MAX": NUMBER_DIGITS_MAX,
            "CONTROL_REFUSED_LENGTH": REFUSED_LENGTH, "CONTROL_REFUSED_BYTE": REFUSED_BYTE,
            "SHARE_MIN": SHARE_MIN, "SHARE_MAX": SHARE_MAX, "CONTROL_SIZE_MAX_MIB": POOL_SIZE_MAX // MIB}


def parse_list(answer: str) -> list[dict[str, str | int]]:
    """The guests in `list`'s answer ("ok NAME STATE key=N ...; ..."), each
    a dict of name, state and the numbers by key."""
    if not answer.startswith("ok"):
        raise ValueError(f"not an ok answer: {answer!r}")
    guests: list[dict[str, str | int]] = []
    for entry in filter(None, (part.strip() for part in answer[2:].split(";"))):
        name, state, *pairs = entry.split()
        guest: dict[str, str | int] = {"name": name, "state": state}
        for pair in pairs:
            key, _, value = pair.partition("=")
            guest[key] = int(value)
        guests.append(guest)
    return guests
