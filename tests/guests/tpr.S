# A long-mode guest for the task priority register as CR8 (SDM Vol. 3A
# 11.8.3.1, 11.8.6): a self-IPI of vector 0x40 (priority class 4) is held
# back while CR8 is 15, still at 4, and taken as soon as a MOV CR8 lowers
# it to 3, before the guest's next exiting instruction; CR8 and the APIC
# page's TPR are one register; a reserved CR8 bit is #GP even while the
# hypervisor intercepts the write; and a prefixed MOV CR8 is done whole.  It maps the local APIC itself (its
# start-up tables cover its memory only).  Prints "ok N <what>" or
# "FAIL N <what>" per check and ends through port 0xF4 with 0x31 (all
# passed) or 0x40 + the first failed check.
    .intel_syntax noprefix
    .include "guest.inc"
    .code64
    .text
    .globl _start

.set DEBUG_EXIT_PORT, 0xF4
.set SUCCESS, 0x31
.set FAILURE, 0x40
.set UNEXPECTED, 0x7F
.set LAPIC, 0xFEE00000
.set LAPIC_TPR, 0x80
.set LAPIC_EOI, 0xB0
.set LAPIC_SVR, 0xF0
.set LAPIC_ICR_LOW, 0x300
.set SVR_ENABLED, 0x1FF                   # software enabled, spurious vector 0xFF
.set ICR_TO_SELF, 1 << 18                 # destination shorthand 01: self; fixed delivery
.set VECTOR, 0x40
.set VECTOR_GP, 13
.set MOV_CR8_LENGTH, 4                    # 44 0F 22 C0: MOV CR8, RAX
.set IDT_VECTORS, VECTOR + 1
.set IDT_GATE_SIZE, 16
.set INTERRUPT_GATE_64, 0x8E00
.set PAGE_PRESENT_WRITABLE, 0x3
.set PAGE_LARGE_UNCACHED, 0x80 | 0x10 | 0x08   # 2 MiB page, PCD, PWT
.set PDPT_INDEX_LAPIC, 3                  # 0xC0000000-0xFFFFFFFF
.set PD_INDEX_LAPIC, (LAPIC >> 21) & 511
.set PAGE_ADDRESS, 0x000FFFFFFFFFF000

# check N, condition, "what": "ok N what" if the flags say `condition`,
# else "FAIL N what" and the end with FAILURE + N.
.macro check number, condition, text
    lea rsi, [rip + .Lcheck\@]
    mov ebx, \number
    j\condition 1f
    jmp check_failed
1:  call check_passed
    .section .rodata
.Lcheck\@: .asciz "\text"
    .text
.endm

_start:
    lea rsp, [rip + stack_top]
    call idt_install
    call map_lapic
    mov edi, LAPIC
    mov dword ptr [rdi + LAPIC_SVR], SVR_ENABLED

    # 1-2: CR8 = 15 holds the self-IPI back, and is the APIC's TPR
    mov eax, 15
    mov cr8, rax
    mov dword ptr [rdi + LAPIC_ICR_LOW], ICR_TO_SELF | VECTOR
    sti
    call no_exits
    cli
    cmp qword ptr [rip + taken], 0
    check 1, e, "CR8 15 holds vector 0x40 back"
    mov eax, dword ptr [rdi + LAPIC_TPR]
    cmp eax, 0xF0
    check 2, e, "the APIC page's TPR reads 0xf0: CR8 << 4"

    # 3-4: with interrupts enabled throughout, CR8 = 4 still holds it
    # back (class 4 is not above 4); CR8 = 3 lets it in at once
    sti
    mov eax, 4
    mov cr8, rax
    call no_exits
    mov r8, qword ptr [rip + taken]
    mov eax, 3
    mov cr8, rax
    nop
    nop
    mov r9, qword ptr [rip + taken]
    cli
    cmp r8, 0
    check 3, e, "CR8 4 still holds class 4 back"
    cmp r9, 1
    check 4, e, "MOV CR8 3 lets it in at once, before any exit of the guest's own"

    # 5: a TPR written through the APIC page is what CR8 reads
    mov dword ptr [rdi + LAPIC_TPR], 0xA0
    mov rax, cr8
    cmp rax, 0xA
    check 5, e, "CR8 reads 0xa after the APIC page's TPR is set to 0xa0"

    # 6-8: a reserved bit while an interrupt is held (on SVM the write is
    # intercepted then): #GP, CR8 unchanged; then a write that lets it in
    mov eax, 15
    mov cr8, rax
    mov dword ptr [rdi + LAPIC_ICR_LOW], ICR_TO_SELF | VECTOR
    sti
    mov eax, 0x1F
    mov cr8, rax                              # 4 bytes: the #GP handler steps over them
    mov r8, cr8
    xor eax, eax
    mov cr8, rax
    nop
    mov r9, qword ptr [rip + taken]
    cli
    cmp qword ptr [rip + general_protection], 1
    check 6, e, "MOV CR8 with bit 4 set, an interrupt held: #GP"
    cmp r8, 15
    check 7, e, "and CR8 still 15"
    cmp r9, 2
    check 8, e, "MOV CR8 0 then lets the held interrupt in at once"

    # 9: the same with prefixes in front (CS override, operand size, then
    # REX.R: on SVM the hypervisor decodes the intercepted write)
    mov eax, 15
    mov cr8, rax
    mov dword ptr [rdi + LAPIC_ICR_LOW], ICR_TO_SELF | VECTOR
    sti
    xor eax, eax
    .byte 0x2E, 0x66, 0x44, 0x0F, 0x22, 0xC0  # cs: o16 mov cr8, rax
    nop
    mov r9, qword ptr [rip + taken]
    cli
    cmp r9, 3
    check 9, e, "a MOV CR8 behind CS and 66 prefixes is done whole, and lets it in"
    mov al, SUCCESS
    out DEBUG_EXIT_PORT, al
1:  hlt
    jmp 1b

# no_exits: a few hundred instructions that do not exit.  Clobbers: RCX.
no_exits:
    mov ecx, 200
1:  dec ecx
    jnz 1b
    ret

# map_lapic: the local APIC's 2 MiB page, uncached, in the guest's own
# tables: a page directory of ours for the fourth GiB.  Clobbers: RAX, RCX.
map_lapic:
    mov rax, cr3
    mov rcx, PAGE_ADDRESS
    and rax, rcx
    mov rax, [rax]                            # PML4[0]: the PDPT
    and rax, rcx
    lea rcx, [rip + lapic_directory]
    or rcx, PAGE_PRESENT_WRITABLE
    mov [rax + PDPT_INDEX_LAPIC * 8], rcx
    lea rax, [rip + lapic_directory]
    mov ecx, LAPIC | PAGE_PRESENT_WRITABLE | PAGE_LARGE_UNCACHED
    mov [rax + PD_INDEX_LAPIC * 8], rcx
    mov rax, cr3
    mov cr3, rax
    ret

# The self-IPI's handler: count it, end it.
interrupt:
    inc qword ptr [rip + taken]
    push rdi
    mov edi, LAPIC
    mov dword ptr [rdi + LAPIC_EOI], 0
    pop rdi
    iretq

# #GP: counted, and the MOV CR8 that raised it stepped over.
general_protection_fault:
    add rsp, 8                                # the error code
    add qword ptr [rsp], MOV_CR8_LENGTH
    inc qword ptr [rip + general_protection]
    iretq

unexpected:
    mov al, UNEXPECTED
    out DEBUG_EXIT_PORT, al
    jmp unexpected

# idt_install: every vector to `unexpected` but VECTOR and #GP.
# Clobbers: RAX, RCX, RDX.
idt_install:
    lea rdx, [rip + idt]
    xor ecx, ecx
1:  lea rax, [rip + unexpected]
    cmp ecx, VECTOR_GP
    jne 3f
    lea rax, [rip + general_protection_fault]
3:  cmp ecx, VECTOR
    jne 2f
    lea rax, [rip + interrupt]
2:  mov word ptr [rdx], ax
    mov word ptr [rdx + 2], cs
    mov word ptr [rdx + 4], INTERRUPT_GATE_64
    shr rax, 16
    mov word ptr [rdx + 6], ax
    shr rax, 16
    mov dword ptr [rdx + 8], eax
    mov dword ptr [rdx + 12], 0
    add rdx, IDT_GATE_SIZE
    inc ecx
    cmp ecx, IDT_VECTORS
    jb 1b
    lidt [rip + idt_pointer]
    ret

# check_passed / check_failed: IN: EBX = number, RSI = text.
check_passed:
    push rsi
    lea rsi, [rip + text_ok]
    call puts
    call put_number
    pop rsi
    call puts
    mov al, 10
    putc_al
    ret
check_failed:
    push rsi
    lea rsi, [rip + text_fail]
    call puts
    call put_number
    pop rsi
    call puts
    mov al, 10
    putc_al
    lea eax, [rbx + FAILURE]
    out DEBUG_EXIT_PORT, al
    jmp check_failed

# put_number: EBX (below 10) and a space.  Clobbers: RAX, RDX.
put_number:
    lea eax, [rbx + '0']
    putc_al
    mov al, ' '
    putc_al
    ret

# puts: the string at RSI.  Clobbers: RAX, RDX, RSI.
puts:
    print_string
    ret

    .section .rodata
text_ok:   .asciz "ok "
text_fail: .asciz "FAIL "

    .data
    .balign 16
idt_pointer:
    .word IDT_VECTORS * IDT_GATE_SIZE - 1
    .quad idt
taken: .quad 0
general_protection: .quad 0

    .bss
    .balign 4096
lapic_directory: .space 4096
idt: .space IDT_VECTORS * IDT_GATE_SIZE
    .space 4096
stack_top:
