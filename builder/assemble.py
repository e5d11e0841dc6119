"""Stage 4: assemble rendered source with keystone, in a child process.

keystone-engine can crash or hang on some inputs and reports some errors
only on stderr (see the platform notes), so it never runs inside the
builder's own process: a crash, a hang or an empty result becomes one clear
`BuildError`.  keystone has no symbol-table output, so the address of every
label is recovered by appending `.quad <label>` for each label to the source
and reading those words back from the end of the output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass

from builder.errors import BuildError

ASSEMBLER_TIMEOUT_S = 60
LABEL_DEFINITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*):", re.MULTILINE)
REGISTERS = frozenset(
    [f"r{n}{s}" for n in range(8, 16) for s in ("", "d", "w", "b")]
    + [p + r for p in ("r", "e", "") for r in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp")]
    + ["rip", "al", "bl", "cl", "dl", "ah", "bh", "ch", "dh", "sil", "dil", "spl", "bpl"])
MEMORY_OPERAND = re.compile(r"\[([^\]]*)\]")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SET_DEFINITION = re.compile(r"^\s*\.set\s+([A-Za-z_][A-Za-z0-9_]*)\s*,", re.MULTILINE)
ABSOLUTE_LOAD = re.compile(r"^\s*mov\s+(?P<register>r\w+)\s*,\s*qword ptr\s*"
                           r"\[\s*(?P<symbol>[A-Za-z_]\w*)\s*(?:[+-]\s*(?:0x[0-9a-f]+|\d+)\s*)?\]",
                           re.IGNORECASE)


@dataclass(frozen=True)
class Assembly:
    code: bytes
    labels: dict[str, int]      # label -> absolute address


SCALED_SYMBOL = re.compile(r"\b(?!(?:[re]?[abcd]x|[re]?[sd]i|[re]?[sb]p|r\d+[dwb]?)\b)[A-Za-z_]\w*\s*\*\s*\d")


def check_keystone_pitfalls(source: str, what: str) -> None:
    """Refuse the constructs keystone 0.9.2 silently mis-assembles.

    - a memory operand naming two symbols: `[A + B]` and `[rbx + A + B]`
      keep only the last one (a symbol plus a number is fine);
    - `~` in an operand: `and ecx, ~BIT` becomes a memory operand;
    - a 64-bit load of any register but RAX from an absolute address named
      by a `.set` constant: `mov rbx, qword ptr [ADDR]` becomes
      RIP-relative with ADDR as the displacement (load into RAX instead,
      which keystone encodes as MOVABS);
    - a symbol multiplied inside a memory operand: `[rcx + SYM * 8]` drops
      the `* 8` (give the product a name of its own).
    """
    constants = set(SET_DEFINITION.findall(source))
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if ".asci" in code:
            continue
        if "~" in code:
            raise BuildError(what, f"line {number}: keystone mis-assembles '~': {line.strip()!r}")
        load = ABSOLUTE_LOAD.match(code)
        if load and load["register"].lower() != "rax" and load["symbol"] in constants:
            raise BuildError(what, f"line {number}: keystone mis-assembles a 64-bit load from an "
                             f"absolute address into {load['register']}: {line.strip()!r}")
        for operand in MEMORY_OPERAND.findall(code):
            names = [n for n in IDENTIFIER.findall(operand)
                     if n.lower() not in REGISTERS and n not in ("ptr",)]
            if len(names) > 1:
                raise BuildError(what, f"line {number}: keystone keeps only one of the symbols "
                                 f"in [{operand}]: {line.strip()!r}")
            if names and SCALED_SYMBOL.search(operand):
                raise BuildError(what, f"line {number}: keystone drops a symbol's scale in "
                                 f"[{operand}]: {line.strip()!r}")


_assembled: dict[tuple[str, int], Assembly] = {}


def assemble(source: str, base: int, what: str) -> Assembly:
    """Assemble 64-bit-mode `source` (it may switch with .code16/.code32) at
    `base`.  The same source is assembled once per process: guests built
    from one template with the same parameters share the child process."""
    key = (source, base)
    if key not in _assembled:
        _assembled[key] = _assemble(source, base, what)
    return _assembled[key]


def _assemble(source: str, base: int, what: str) -> Assembly:
    check_keystone_pitfalls(source, what)
    labels = list(dict.fromkeys(LABEL_DEFINITION.findall(source)))
    dump = "".join(f".quad {label}\n" for label in labels)
    request = json.dumps({"source": source + "\n" + dump, "base": base})
    try:
        done = subprocess.run([sys.executable, "-m", "builder._keystone_worker"], input=request,
                              capture_output=True, text=True, timeout=ASSEMBLER_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(what, f"keystone did not finish within {ASSEMBLER_TIMEOUT_S} s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise BuildError(what, f"keystone failed: {detail}")
    reply = json.loads(done.stdout)
    if "error" in reply:
        raise BuildError(what, reply["error"])
    output = bytes.fromhex(reply["code"])
    code_size = len(output) - 8 * len(labels)
    if code_size <= 0:
        raise BuildError(what, "keystone returned no code (see its message above)")
    table = output[code_size:]
    addresses = {label: int.from_bytes(table[8 * i:8 * i + 8], "little")
                 for i, label in enumerate(labels)}
    return Assembly(output[:code_size], addresses)
