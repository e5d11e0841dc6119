# A real-mode guest with 64 KiB of memory that reaches for the byte just
# past it, at 0x1000:0x0000 = guest-physical 0x10000.  The hypervisor must
# stop it there; if the read returns, it says so and exits with code 1.
    .intel_syntax noprefix
    .include "guest.inc"
    .code16
    .text
    .globl _start
_start:
    mov si, offset message
    print_string
    mov ax, 0x1000
    mov es, ax
    mov al, es:[0]
    mov si, offset escaped
    print_string
    mov ebx, 1
    exit_with_ebx

message:
    .asciz "real mode: reading guest-physical 0x10000\n"
escaped:
    .asciz "ISOLATION BROKEN: a read beyond my memory returned\n"
