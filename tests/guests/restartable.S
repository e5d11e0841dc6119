# A protected-mode guest that dirties its memory and CPU state, then reads
# past its memory, on every run.  Each run prints how often it has been
# restarted (CPUID 0x40000001 EBX), a counter kept in its memory, and
# whether XMM0 and DR0 are as a fresh CPU has them: a restart from the
# image as built shows "counter 1, fresh" every time.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .text
    .globl _start

.set CR4_OSFXSR, 0x200
.set DIRTY, 0x5eed5eed

_start:
    mov eax, cr4
    or eax, CR4_OSFXSR
    mov cr4, eax
    mov eax, CPUID_HV_FEATURES
    cpuid
    mov edi, ebx                    # restarts so far
    inc dword ptr [counter]
    lea esi, [text_run]
    print_string
    mov eax, edi
    call print_digit
    lea esi, [text_counter]
    print_string
    mov eax, [counter]
    call print_digit
    movd eax, xmm0
    mov ecx, dr0
    or eax, ecx
    lea esi, [text_fresh]
    jz report
    lea esi, [text_stale]
report:
    print_string
    mov eax, DIRTY                  # dirty the state a restart must reset
    movd xmm0, eax
    mov dr0, eax
    mov eax, [0x7ff00000]           # far past its memory: the hypervisor stops it
    lea esi, [text_survived]
    print_string
    mov ebx, 1
    exit_with_ebx
    hlt

# print_digit: AL (0-9) as one decimal digit.  Clobbers: AX, DX.
print_digit:
    add al, '0'
    putc_al
    ret

    .section .rodata
text_run:       .asciz "run after "
text_counter:   .asciz " restarts, counter "
text_fresh:     .asciz ", fresh state\n"
text_stale:     .asciz ", STALE state\n"
text_survived:  .asciz "READ PAST ITS MEMORY\n"

    .data
counter:        .long 0
