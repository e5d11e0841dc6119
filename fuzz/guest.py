"""A fuzz guest: fuzz/runtime.S and a table of programs, as a long-mode
ELF64 built with GNU as and ld (the tools the tests' own guests use).

Each step is rendered between the catcher's arming (the address of its
landing label into `fuzz_resume`) and that landing label; a symbol
`fz_step_P_S` marks where its own code starts, so that tests can find
every step's bytes in the image.  The guest is linked at LINK_ADDRESS:
the low 128 KiB, where the witness keeps its code, data and stack in its
own memory, hold nothing of the attacker's, so that a debug breakpoint
planted on a witness address never fires inside the attacker's catcher.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from builder import hw
from builder.guest_images import HYPERCALLS, SECRET, SECRET_MASK
from builder.start_state import GUEST_SELECTOR_CODE64
from fuzz import templates
from fuzz.generator import Program

RUNTIME = Path(__file__).with_name("runtime.S")
MEMORY = 256 * 1024                 # each attacker's memory
LINK_ADDRESS = 0x20000
WITNESS_MEMORY = 128 * 1024
STUB_SIZE = 16
IDT_VECTORS = 256
INTERRUPT_GATE_64 = 0x8E00          # present, DPL 0, 64-bit interrupt gate (SDM Vol. 3A 6.14.1)
XSAVE_AREA_SIZE = 4096
SCRATCH_SIZE = 4096
STACK_SIZE = 16 * 1024
POKE_WINDOW_PDE = 1                 # the guest's PD entry fuzz_poke_gpa rewrites
CPUID_1_ECX_XSAVE = 1 << 26
HV_FEATURE_VMMCALL = 1              # CPUID 0x40000001 EAX bit 0 (README, "The guest's view")
WITNESS_OWNER = 0xFF
TAG_MASK = 0x5A3CA5C3               # the runtime compares tags only masked: its code never holds another's
ADDRESS_MASK = 0x000FFFFFFFFFF000


def _dword(data: bytes) -> int:
    return int.from_bytes(data[:4], "little")


def constants(attacker: int, attackers: int, programs: int, first_index: int) -> dict[str, int]:
    """Every name fuzz/runtime.S uses, with its value."""
    return {
        "ATTACKER": attacker, "ATTACKERS": attackers, "PROGRAMS": programs, "FIRST_INDEX": first_index,
        "MEMORY_SIZE": MEMORY, "IDT_VECTORS": IDT_VECTORS, "STUB_SIZE": STUB_SIZE,
        "GUEST_CODE64_SELECTOR": GUEST_SELECTOR_CODE64, "INTERRUPT_GATE_64": INTERRUPT_GATE_64,
        "XSAVE_AREA_SIZE": XSAVE_AREA_SIZE, "SCRATCH_SIZE": SCRATCH_SIZE, "STACK_SIZE": STACK_SIZE,
        "CPUID_HV_FEATURES": hw.CPUID_HV_FEATURES_LEAF, "HV_FEATURE_VMMCALL": HV_FEATURE_VMMCALL,
        "CPUID_FEATURES": 1, "CPUID_1_ECX_XSAVE": CPUID_1_ECX_XSAVE, "CPUID_XSAVE": hw.CPUID_XSAVE_LEAF,
        "CR4_OSFXSR": hw.CR4_OSFXSR, "CR4_OSXMMEXCPT": hw.CR4_OSXMMEXCPT, "CR4_OSXSAVE": hw.CR4_OSXSAVE,
        "XCR0_FUZZ": hw.XFEATURE_X87 | hw.XFEATURE_SSE | hw.XFEATURE_AVX,
        "HYPERCALL_EXIT": HYPERCALLS["EXIT"],
        "COM1_BASE": hw.COM1_BASE, "UART_THR": hw.UART_THR, "UART_IER": hw.UART_IER,
        "UART_LCR": hw.UART_LCR, "UART_MCR": hw.UART_MCR, "UART_LSR": hw.UART_LSR,
        "UART_LCR_DLAB": hw.UART_LCR_DLAB, "UART_LCR_8N1": hw.UART_LCR_8N1,
        "UART_LSR_THRE": hw.UART_LSR_THRE, "UART_DIVISOR_115200": hw.UART_DIVISOR_115200,
        "UART_MCR_DTR_RTS_OUT2": hw.UART_MCR_DTR_RTS_OUT2,
        "POKE_WINDOW_PDE": POKE_WINDOW_PDE, "POKE_WINDOW": POKE_WINDOW_PDE * hw.LARGE_PAGE_SIZE,
        "LARGE_PAGE_FLAGS": hw.PTE_PRESENT | hw.PTE_WRITABLE | hw.PTE_LARGE, "ADDRESS_MASK": ADDRESS_MASK,
        "MSR_TABLE_COUNT": len(templates.PLANT_MSRS),
        "TAG_MASK": TAG_MASK, "TAG_OWNER_MASK": templates.TAG_OWNER_MASK,
        "TAG_BASE_MASKED": (templates.TAG_BASE ^ TAG_MASK) & templates.TAG_OWNER_MASK,
        "SECRET_MASK": _dword(SECRET_MASK), "SECRET_MASKED": _dword(SECRET) ^ _dword(SECRET_MASK),
        "WITNESS_OWNER": WITNESS_OWNER,
    }


def step_lines(program: int, step: int, lines: list[str]) -> list[str]:
    landing = f"fz_land_{program}_{step}"
    return [f"    mov qword ptr [rip + fuzz_resume], OFFSET {landing}", f"fz_step_{program}_{step}:",
            *(f"    {line}" for line in lines), f"{landing}:"]


def source(programs: list[Program], attacker: int, attackers: int, skip: frozenset[str] = frozenset()) -> str:
    """The guest's whole assembly source: constants, runtime, programs.
    Steps of a kind in `skip` keep their place but run nothing."""
    first = programs[0].index
    if [p.index for p in programs] != list(range(first, first + len(programs))):
        raise ValueError("a guest's programs must be consecutive")
    out = [f".set {name}, {value:#x}" for name, value in constants(attacker, attackers, len(programs),
                                                                      first).items()]
    out.append(RUNTIME.read_text())
    out += ["    .text"]
    for number, program in enumerate(programs):
        out.append(f"fz_program_{number}:")
        for index, step in enumerate(program.steps):
            rendered = [] if step.kind in skip else templates.TEMPLATES[step.kind].render(step.args, attacker)
            out += step_lines(number, index, rendered)
        out.append("    jmp program_end")
    out += ["    .section .rodata", "    .balign 8", "program_table:"]
    out += [f"    .quad fz_program_{number}" for number in range(len(programs))]
    out += ["msr_table:"] + [f"    .long {msr:#x}" for msr in templates.PLANT_MSRS]
    return "\n".join(out) + "\n"


class GuestBuildError(Exception):
    """GNU as or ld refused a generated guest (a bug of the generator)."""


def build(directory: Path, programs: list[Program], attacker: int, attackers: int,
          skip: frozenset[str] = frozenset()) -> Path:
    """Assemble and link the attacker's guest into `directory`; its ELF's path."""
    for tool in ("as", "ld"):
        if shutil.which(tool) is None:
            raise GuestBuildError(f"GNU binutils' {tool} is missing: run `make setup`")
    stem = directory / f"fuzz{attacker}"
    asm, obj, elf = stem.with_suffix(".S"), stem.with_suffix(".o"), stem.with_suffix(".elf")
    asm.write_text(source(programs, attacker, attackers, skip))
    for command in (["as", "--64", "-o", str(obj), str(asm)],
                    ["ld", "-m", "elf_x86_64", "-N", "-e", "_start", f"-Ttext={LINK_ADDRESS:#x}",
                     "-o", str(elf), str(obj)]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise GuestBuildError(f"{command[0]} failed on {asm}: {done.stderr.strip()[:2000]}")
    return elf
