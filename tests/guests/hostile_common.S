# Shared by the hostile guests (tests/guests/hostile_*.S, booted beside the
# witness by tests/boot/test_hostile.py): long-mode guests that attack the
# hypervisor.  Included first; the guest's own code follows.
#
# Each guest installs an IDT whose 32 gates catch every exception: the
# catcher counts the fault, records its vector, error code and RIP, and
# resumes where the attack last armed it (`arm`), on the stack it had then.
# The helpers print on COM1 (guest.inc) and preserve every register.
    .intel_syntax noprefix
    .include "guest.inc"
    .code64
    .text

.set STUB_SIZE, 16                        # bytes per exception stub (set before its first use)
.set IDT_VECTORS, 32
.set IDT_GATE_SIZE, 16
.set CODE64_SELECTOR, 0x18                # the start-up GDT's 64-bit code segment
.set INTERRUPT_GATE_64, 0x8E00            # present, DPL 0, 64-bit interrupt gate
.set VECTOR_BP, 3
.set VECTOR_UD, 6
.set VECTOR_GP, 13
.set VECTOR_PF, 14
.set NO_FAULT, -1
.set PAGE_SIZE, 0x1000
.set CR4_OSFXSR, 0x200
.set IA32_SYSENTER_ESP, 0x175
.set IA32_PAT, 0x277
.set IA32_TSC_AUX, 0xC0000103
.set SCRAMBLED, 0xBAD0BAD0
.set PAT_ALL_WRITE_BACK, 0x06060606

# arm RESUME: an exception from here on resumes at RESUME with RSP as now,
# and `vector` reads NO_FAULT until one comes.  Clobbers: RAX.
.macro arm resume:req
    lea rax, [rip + \resume]
    mov [rip + resume_at], rax
    mov [rip + saved_rsp], rsp
    mov qword ptr [rip + vector], NO_FAULT
.endm

# say "TEXT": print TEXT (escapes as in .asciz).  Preserves all registers.
.macro say text:req
    push rsi
    lea rsi, [rip + .Lsay\@]
    call puts
    pop rsi
    .section .rodata
.Lsay\@: .asciz "\text"
    .text
.endm

# say_dec / say_hex REG: print REG in decimal / as 0x and hex digits.
.macro say_dec register:req
    push rax
    mov rax, \register
    call put_dec
    pop rax
.endm
.macro say_hex register:req
    push rax
    mov rax, \register
    call put_hex
    pop rax
.endm

# hostile_start: the common start: a stack, the catcher IDT, and values of
# its own in the state the witness plants (XMM, DR0-DR3, SYSENTER_ESP,
# TSC_AUX, PAT), so that a world switch that leaks shows in the witness's
# state check.  Clobbers: RAX, RCX, RDX.
.macro hostile_start
    lea rsp, [rip + stack_top]
    call idt_install
    call scramble_state
.endm

# puts: print the NUL-terminated string at RSI.  Preserves all registers.
puts:
    push rax
    push rdx
    push rsi
    print_string
    pop rsi
    pop rdx
    pop rax
    ret

# put_dec: RAX as an unsigned decimal number.  Preserves all registers.
put_dec:
    push rax
    push rcx
    push rdx
    push rbx
    mov ebx, 10
    xor ecx, ecx                              # digits pushed
put_dec_divide:
    xor edx, edx
    div rbx
    push rdx
    inc ecx
    test rax, rax
    jnz put_dec_divide
put_dec_emit:
    pop rax
    add al, '0'
    push rcx
    putc_al
    pop rcx
    dec ecx
    jnz put_dec_emit
    pop rbx
    pop rdx
    pop rcx
    pop rax
    ret

# put_hex: RAX as 0x and its hex digits, without leading zeros (as Python's
# hex()).  Preserves all registers.
put_hex:
    push rax
    push rcx
    push rdx
    push rbx
    mov rbx, rax
    mov al, '0'
    putc_al
    mov al, 'x'
    putc_al
    mov ecx, 16
put_hex_skip:                                 # leading zeros, but the last digit
    cmp ecx, 1
    je put_hex_digit
    mov rax, rbx
    shr rax, 60
    jnz put_hex_digit
    shl rbx, 4
    dec ecx
    jmp put_hex_skip
put_hex_digit:
    rol rbx, 4
    mov eax, ebx
    and eax, 0xF
    cmp eax, 10
    jb put_hex_decimal
    add eax, 'a' - '0' - 10
put_hex_decimal:
    add eax, '0'
    push rcx
    putc_al
    pop rcx
    dec ecx
    jnz put_hex_digit
    pop rbx
    pop rdx
    pop rcx
    pop rax
    ret

# exit_with: the exit hypercall with code EBX (guest.inc).  Never returns.
exit_with:
    exit_with_ebx
    hlt

# scramble_state: see hostile_start.  Clobbers: RAX, RCX, RDX.
scramble_state:
    mov rax, cr4
    or eax, CR4_OSFXSR
    mov cr4, rax
.irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    pcmpeqd xmm\n, xmm\n                     # all ones
.endr
    mov rax, SCRAMBLED
.irp n, 0, 1, 2, 3
    mov dr\n, rax
    inc rax
.endr
    mov ecx, IA32_SYSENTER_ESP
    mov eax, SCRAMBLED
    xor edx, edx
    wrmsr
    mov ecx, IA32_TSC_AUX
    wrmsr
    mov ecx, IA32_PAT
    mov eax, PAT_ALL_WRITE_BACK
    mov edx, PAT_ALL_WRITE_BACK
    wrmsr
    ret

# idt_install: 32 interrupt gates, each to a stub that names its vector.
# Clobbers: RAX.
idt_install:
    push rcx
    push rsi
    push rdi
    lea rdi, [rip + idt]
    lea rsi, [rip + stubs]
    mov ecx, IDT_VECTORS
idt_install_gate:
    mov rax, rsi
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], CODE64_SELECTOR
    mov word ptr [rdi + 4], INTERRUPT_GATE_64
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    mov dword ptr [rdi + 12], 0
    add rdi, IDT_GATE_SIZE
    add rsi, STUB_SIZE
    dec ecx
    jnz idt_install_gate
    lidt [rip + idt_pointer]
    pop rdi
    pop rsi
    pop rcx
    ret

# The stubs: vectors with an error code (SDM Vol. 3A table 6-1) pop it.
    .balign STUB_SIZE
stubs:
.set vec, 0
.rept IDT_VECTORS
    .balign STUB_SIZE
    .byte 0xB8                                # mov eax, imm32: the vector
    .long vec
.if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30
    jmp caught_with_error_code
.else
    jmp caught
.endif
.set vec, vec + 1
.endr
    .balign STUB_SIZE
caught_with_error_code:
    pop qword ptr [rip + error_code]
caught:
    mov [rip + vector], rax
    mov rax, [rsp]                            # the RIP in the CPU's frame
    mov [rip + fault_rip], rax
    inc qword ptr [rip + faults]
    mov rsp, [rip + saved_rsp]
    jmp qword ptr [rip + resume_at]

    .section .rodata
idt_pointer:
    .word IDT_VECTORS * IDT_GATE_SIZE - 1
    .quad idt

    .data
    .balign 16
idt:        .fill IDT_VECTORS * IDT_GATE_SIZE, 1, 0
resume_at:  .quad 0
saved_rsp:  .quad 0
vector:     .quad NO_FAULT                    # the last exception's vector
error_code: .quad 0                           # the last error code pushed
fault_rip:  .quad 0                           # the RIP the last exception saved
faults:     .quad 0                           # exceptions caught so far
    .balign 16
stack:      .fill 4 * PAGE_SIZE, 1, 0
stack_top:
    .text
