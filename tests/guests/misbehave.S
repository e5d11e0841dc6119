# A protected-mode guest that does something that ends it, chosen at build
# time with --defsym TRIPLE_FAULT=1:
#   TRIPLE_FAULT  an IDT of limit 0: the breakpoint faults, the #GP too
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .text
    .globl _start
_start:
    lea esi, [message]
    print_string
.ifdef TRIPLE_FAULT
    lidt [empty_idt]
    int3
.endif
    lea esi, [survived]
    print_string
    mov ebx, 1
    exit_with_ebx
    hlt

    .section .rodata
empty_idt:
    .word 0
    .long 0
message:
    .asciz "about to misbehave\n"
survived:
    .asciz "MISBEHAVIOUR WAS NOT STOPPED\n"
