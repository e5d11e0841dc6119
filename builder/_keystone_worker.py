"""Child process of `builder.assemble`: one keystone run, JSON in, JSON out.

keystone names no line in its errors; on a failure other than an undefined
symbol, the worker finds the first failing line by assembling ever longer
prefixes of the source (a binary search), and reports that line.  Undefined
symbols are named by a second run with a symbol resolver; the real run must
not have one, because with a resolver set keystone 0.9.2 reads every bare
number as hexadecimal ("mov ecx, 60" becomes 0x60).
"""

import json
import sys

from keystone import KS_ARCH_X86, KS_ERR_ASM_SYMBOL_MISSING, KS_MODE_64, Ks, KsError


def _assemble(source: str, base: int) -> bytes:
    encoding, _count = Ks(KS_ARCH_X86, KS_MODE_64).asm(source, base)
    return bytes(encoding or b"")


def _missing_symbols(source: str, base: int) -> list[str]:
    engine = Ks(KS_ARCH_X86, KS_MODE_64)
    missing: list[str] = []

    def record_missing(name: bytes, _value: int) -> bool:
        missing.append(name.decode(errors="replace"))
        return False

    engine.sym_resolver = record_missing
    try:
        engine.asm(source, base)
    except KsError:
        pass
    return sorted(set(missing))


def _failing_line(lines: list[str], base: int, errno: int) -> int:
    """Index of the first line whose prefix fails with `errno`."""
    low, high = 1, len(lines)
    while low < high:
        middle = (low + high) // 2
        try:
            _assemble("\n".join(lines[:middle]), base)
            failed = False
        except KsError as error:
            failed = error.errno == errno
        if failed:
            high = middle
        else:
            low = middle + 1
    return low - 1


def main() -> None:
    request = json.load(sys.stdin)
    source, base = request["source"], request["base"]
    try:
        code = _assemble(source, base)
    except KsError as error:
        message = f"keystone: {error}"
        if error.errno == KS_ERR_ASM_SYMBOL_MISSING:
            message += f" (undefined: {', '.join(_missing_symbols(source, base))})"
        else:
            lines = source.splitlines()
            index = _failing_line(lines, base, error.errno)
            message += f" at rendered line {index + 1}: {lines[index].strip()!r}"
        json.dump({"error": message}, sys.stdout)
        return
    json.dump({"code": code.hex()}, sys.stdout)


if __name__ == "__main__":
    main()
