# A protected-mode guest that computes with interrupts enabled (IF = 1),
# so that a host interrupt let through reaches its external-interrupt exit
# whatever the emulator's reading of that control; it prints one line and
# exits with code 0.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .text
    .globl _start
_start:
    sti
    mov ecx, 20000000
spin:
    dec ecx
    jnz spin
    cli
    lea esi, [message]
    print_string
    xor ebx, ebx
    exit_with_ebx
    hlt

    .section .rodata
message:
    .asciz "computed with interrupts on\n"
