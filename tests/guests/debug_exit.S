# A protected-mode guest that ends itself through the debug-exit port, as
# test kernels end QEMU: a byte write of 42 to port 0xF4, or with
# --defsym WORD=1 a word write of 0x1234, or with --defsym DWORD=1 a
# dword write of 0x12345678.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .set DEBUG_EXIT_PORT, 0xF4
    .text
    .globl _start
_start:
    lea esi, [message]
    print_string
.ifdef DWORD
    mov eax, 0x12345678
    out DEBUG_EXIT_PORT, eax
.else
.ifdef WORD
    mov ax, 0x1234
    out DEBUG_EXIT_PORT, ax
.else
    mov al, 42
    out DEBUG_EXIT_PORT, al
.endif
.endif
    lea esi, [survived]
    print_string
    mov ebx, 1
    exit_with_ebx
    hlt

    .section .rodata
message:
    .asciz "ending through port 0xf4\n"
survived:
    .asciz "STILL RUNNING AFTER THE DEBUG EXIT\n"
