# A protected-mode guest as a GNU ELF32 executable: prints a line, checks
# that it really runs in 32-bit protected mode, and exits with code 7.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .text
    .globl _start
_start:
    lea esi, [message]
    print_string
    mov eax, cr0
    and eax, 1                      # CR0.PE
    lea ebx, [eax + 6]              # exit code 7 only in protected mode
    exit_with_ebx
    hlt

    .section .rodata
message:
    .asciz "hello from an ELF32 guest\n"
