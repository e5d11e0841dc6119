# A long-mode guest as a GNU ELF64 executable: prints a line, then a
# second line only if EFER.LMA says it really runs in 64-bit mode, and
# exits with code 0.
    .intel_syntax noprefix
    .include "guest.inc"
    .code64
    .text
    .globl _start
_start:
    lea rsi, [rip + message]
    print_string
    mov ecx, 0xC0000080             # IA32_EFER (an emulated MSR)
    rdmsr
    test eax, 0x400                 # LMA
    jz skip
    lea rsi, [rip + long_mode]
    print_string
skip:
    xor ebx, ebx
    exit_with_ebx
    hlt

    .section .rodata
message:
    .asciz "hello from an ELF64 guest\n"
long_mode:
    .asciz "EFER.LMA is set: 64-bit mode\n"
