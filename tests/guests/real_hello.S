# A real-mode guest as a flat binary loaded at 0x7C00, like a boot sector:
# prints a line in 16-bit real mode and exits with code 16.
    .intel_syntax noprefix
    .include "guest.inc"
    .code16
    .text
    .globl _start
_start:
    mov si, offset message
    print_string
    mov ebx, 16
    exit_with_ebx
    hlt
message:
    .asciz "hello from a real-mode guest\n"
