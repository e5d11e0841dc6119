# fuzz/runtime.S - the fixed part of every fuzz guest (docs/FUZZING.md).
#
# Mode: 64-bit long mode, as the hypervisor starts a long-mode ELF guest
# (CS 0x18, identity paging over its memory, interrupts off).  Assembled
# with GNU as after the constants and before the program table that
# fuzz/guest.py generates (fuzz/templates.py renders each step).
#
# One incarnation of the guest runs one program: the hypervisor's restart
# count (CPUID 0x40000001 EBX) picks it from the table.  The runtime checks
# the state it was started with for planted values (a tag of another
# attacker or the witness's secret: a breach; its own tag: state a restart
# left stale), runs the program with an IDT that catches every vector and
# resumes at the next step, checks its registers again, and ends the
# incarnation by reading past its memory, so that the hypervisor stops it
# and restarts it with the next program.  Once every program has run it
# exits with code 0.
#
# Lines it prints (the oracle, fuzz/oracle.py, reads them):
#   program N start
#   program N end: faults V:C ... [tf-lost C]
#   breach: WHERE holds WHOSE: 0xVALUE      stale: WHERE holds WHOSE: 0xVALUE
#   all K programs ran
    .intel_syntax noprefix
    .code64
    .text
    .globl _start

# try LABEL: arm the catcher: a fault until LABEL resumes at LABEL with
# the stack as it is now.  Clobbers: RAX.
.macro try label:req
    lea rax, [rip + \label]
    mov [rip + fuzz_resume], rax
    mov [rip + fuzz_resume_rsp], rsp
.endm

# The entry: snapshot the registers the hypervisor started the guest
# with before any instruction changes them.
_start:
    mov [rip + entry_gprs + 0 * 8], rax
    mov [rip + entry_gprs + 1 * 8], rcx
    mov [rip + entry_gprs + 2 * 8], rdx
    mov [rip + entry_gprs + 3 * 8], rbx
    mov [rip + entry_gprs + 4 * 8], rsp
    mov [rip + entry_gprs + 5 * 8], rbp
    mov [rip + entry_gprs + 6 * 8], rsi
    mov [rip + entry_gprs + 7 * 8], rdi
    mov [rip + entry_gprs + 8 * 8], r8
    mov [rip + entry_gprs + 9 * 8], r9
    mov [rip + entry_gprs + 10 * 8], r10
    mov [rip + entry_gprs + 11 * 8], r11
    mov [rip + entry_gprs + 12 * 8], r12
    mov [rip + entry_gprs + 13 * 8], r13
    mov [rip + entry_gprs + 14 * 8], r14
    mov [rip + entry_gprs + 15 * 8], r15
    lea rsp, [rip + stack_top]
    cld
    call uart_init
    call idt_install
    mov eax, CPUID_HV_FEATURES
    cpuid
    mov [rip + hv_features], eax
    mov [rip + restarts], ebx
    cmp ebx, PROGRAMS
    jae all_done
    call enable_state
    mov byte ptr [rip + checking_entry], 1
    call check_registers
    call check_memory
    try program_stop
    lea rsi, [rip + text_program]
    call puts
    call put_index
    lea rsi, [rip + text_start]
    call puts
    mov eax, [rip + restarts]
    lea rcx, [rip + program_table]
    jmp qword ptr [rcx + rax * 8]

# program_end: every program jumps here after its last step.  Reports,
# then ends the incarnation.
program_end:
    lea rsp, [rip + stack_top]
    cld
    try program_stop
    call idt_install                  # a program may have loaded an IDT of its own
    call uart_init                    # ... or reprogrammed the UART
    mov byte ptr [rip + checking_entry], 0
    call check_registers
    try program_stop
    lea rsi, [rip + text_program]
    call puts
    call put_index
    lea rsi, [rip + text_end]
    call puts
    call put_fault_counts
    mov al, 10
    call putc
program_stop:
    lea rsp, [rip + stack_top]
    try triple_fault
    mov rax, MEMORY_SIZE
    mov al, byte ptr [rax]            # past the guest's memory: the hypervisor stops it
triple_fault:
    lidt [rip + no_idt]               # if that was not the end: no IDT, a fault is a triple fault
    ud2
    jmp triple_fault

# all_done: every program of the table ran: exit with code 0.
all_done:
    lea rsi, [rip + text_all]
    call puts
    mov eax, PROGRAMS
    call put_dec
    lea rsi, [rip + text_ran]
    call puts
    xor ebx, ebx
    mov eax, HYPERCALL_EXIT
    call fuzz_hypercall
    jmp triple_fault

# fuzz_hypercall: the hypercall EAX with the guest's RBX, RCX, RDX: VMCALL
# on Intel, VMMCALL on AMD, as CPUID 0x40000001 EAX bit 0 said at entry.
# OUT: what the hypervisor returns in RAX.  Preserves the other registers.
fuzz_hypercall:
    test dword ptr [rip + hv_features], HV_FEATURE_VMMCALL
    jnz fuzz_hypercall_amd
    vmcall
    ret
fuzz_hypercall_amd:
    .byte 0x0F, 0x01, 0xD9            # vmmcall
    ret

# fuzz_poke_gpa: map the 2 MiB of guest-physical memory at RDI (2 MiB
# aligned) at linear POKE_WINDOW through the guest's own page tables (CR3
# -> PML4[0] -> PDPT[0] -> PD[POKE_WINDOW / 2 MiB]), then write RAX at
# offset RSI of it (RDX = 0: read instead).  Faults resume at the step.
# Clobbers: RCX, R8, R9.
fuzz_poke_gpa:
    mov r9, ADDRESS_MASK
    mov r8, cr3
    and r8, r9
    mov r8, [r8]
    and r8, r9
    mov r8, [r8]
    and r8, r9
    mov rcx, rdi
    or rcx, LARGE_PAGE_FLAGS
    mov [r8 + POKE_WINDOW_PDE * 8], rcx
    mov rcx, POKE_WINDOW
    invlpg [rcx + rsi]
    test rdx, rdx
    jz fuzz_poke_gpa_read
    mov [rcx + rsi], rax
    ret
fuzz_poke_gpa_read:
    mov rax, [rcx + rsi]
    ret

# enable_state: let the programs reach the SSE and AVX state: CR4.OSFXSR,
# OSXMMEXCPT, and where CPUID has XSAVE, CR4.OSXSAVE and XCR0 with every
# component among x87, SSE and AVX the CPU reports.  Clobbers: RAX, RBX,
# RCX, RDX.
enable_state:
    mov eax, CPUID_FEATURES
    xor ecx, ecx
    cpuid
    mov rax, cr4
    or eax, CR4_OSFXSR | CR4_OSXMMEXCPT
    test ecx, CPUID_1_ECX_XSAVE
    jz enable_state_cr4
    or eax, CR4_OSXSAVE
enable_state_cr4:
    mov cr4, rax
    test ecx, CPUID_1_ECX_XSAVE
    jz enable_state_done
    mov eax, CPUID_XSAVE
    xor ecx, ecx
    cpuid
    and eax, XCR0_FUZZ
    xor edx, edx
    xor ecx, ecx
    xsetbv
enable_state_done:
    ret

# check_registers: look for planted values in the registers: the entry
# snapshot (entry checks only), DR0-DR3, CR2, the MSRs of msr_table and
# the x87/SSE/AVX state (XSAVE, or FXSAVE without it).  At entry every tag
# counts (its own: stale); at the end only another's.  Runs on the stack
# top, catching its own faults.  Clobbers: every general register.
check_registers:
    pop qword ptr [rip + check_return]
    cmp byte ptr [rip + checking_entry], 0
    je check_registers_drs
    lea rsi, [rip + entry_gprs]
    mov ecx, 16 * 2
    lea rdx, [rip + where_gprs]
    call scan_registers
check_registers_drs:
    lea rdi, [rip + check_buffer]
    try check_registers_dr1
    mov rax, dr0
    mov [rdi + 0 * 8], rax
check_registers_dr1:
    try check_registers_dr2
    mov rax, dr1
    mov [rdi + 1 * 8], rax
check_registers_dr2:
    try check_registers_dr3
    mov rax, dr2
    mov [rdi + 2 * 8], rax
check_registers_dr3:
    try check_registers_cr2
    mov rax, dr3
    mov [rdi + 3 * 8], rax
check_registers_cr2:
    try check_registers_msrs
    mov rax, cr2
    mov [rdi + 4 * 8], rax
check_registers_msrs:
    mov rsi, rdi
    mov ecx, 5 * 2
    lea rdx, [rip + where_debug]
    call scan_registers
    xor ebp, ebp
check_registers_msr:
    lea rdi, [rip + check_buffer]
    mov qword ptr [rdi + rbp * 8], 0
    try check_registers_msr_next
    lea rax, [rip + msr_table]
    mov ecx, [rax + rbp * 4]
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov [rdi + rbp * 8], rax
check_registers_msr_next:
    inc ebp
    cmp ebp, MSR_TABLE_COUNT
    jb check_registers_msr
    lea rsi, [rip + check_buffer]
    mov ecx, MSR_TABLE_COUNT * 2
    lea rdx, [rip + where_msrs]
    call scan_registers
    lea rdi, [rip + xsave_area]
    mov ecx, XSAVE_AREA_SIZE / 8
    xor eax, eax
    rep stosq
    try check_registers_fxsave
    mov rax, cr4
    test eax, CR4_OSXSAVE
    jz check_registers_fxsave
    mov eax, -1
    mov edx, -1
    xsave [rip + xsave_area]
    jmp check_registers_fpu
check_registers_fxsave:
    try check_registers_done
    fxsave [rip + xsave_area]
check_registers_fpu:
    lea rsi, [rip + xsave_area]
    mov ecx, XSAVE_AREA_SIZE / 4
    lea rdx, [rip + where_fpu]
    call scan_registers
check_registers_done:
    lea rsp, [rip + stack_top]
    jmp qword ptr [rip + check_return]

# scan_registers: report the first planted dword among RCX dwords at RSI.
# IN: RSI, RCX, RDX = where (a string).  Clobbers: RAX, RBX, RCX, RSI,
# R8, R9.
scan_registers:
    mov r9, rsi
scan_registers_dword:
    mov eax, [rsi]
    call tag_owner
    jnc scan_registers_next
    cmp byte ptr [rip + checking_entry], 0
    jne report_planted
    cmp ebx, ATTACKER
    jne report_planted                # its own tag is what this program planted
scan_registers_next:
    add rsi, 4
    dec ecx
    jnz scan_registers_dword
    ret

# check_memory: report the first planted dword of another in the guest's
# whole memory.  Its own tag is not looked for: its code holds it.
# Clobbers: RAX, RBX, RCX, RDX, RSI, R8, R9.
check_memory:
    xor esi, esi
    xor r9d, r9d
    mov ecx, MEMORY_SIZE / 4
    lea rdx, [rip + where_memory]
check_memory_dword:
    mov eax, [rsi]
    mov ebx, eax
    xor ebx, TAG_MASK
    and ebx, TAG_OWNER_MASK
    cmp ebx, TAG_BASE_MASKED
    je check_memory_candidate
    xor eax, SECRET_MASK
    cmp eax, SECRET_MASKED
    je check_memory_candidate
check_memory_next:
    add rsi, 4
    dec ecx
    jnz check_memory_dword
    ret
check_memory_candidate:
    mov eax, [rsi]
    call tag_owner
    jnc check_memory_next
    cmp ebx, ATTACKER
    je check_memory_next
    jmp report_planted

# tag_owner: whose planted dword is EAX?  OUT: CF set and EBX = the
# attacker's number, or WITNESS_OWNER for the witness's secret; CF clear
# if nobody's.  Clobbers: R8.
tag_owner:
    mov r8d, eax
    xor r8d, SECRET_MASK
    cmp r8d, SECRET_MASKED
    jne tag_owner_attacker
    mov ebx, WITNESS_OWNER
    stc
    ret
tag_owner_attacker:
    mov r8d, eax
    xor r8d, TAG_MASK
    and r8d, TAG_OWNER_MASK
    cmp r8d, TAG_BASE_MASKED
    jne tag_owner_none
    movzx ebx, al
    cmp ebx, ATTACKERS
    jae tag_owner_none
    stc
    ret
tag_owner_none:
    clc
    ret

# report_planted: print "breach: WHERE +0xOFFSET holds WHOSE: 0xVALUE"
# ("stale:" for its own tag at entry), then return to the scan's caller:
# one report per scan.  IN: RDX = where, R9 = the scanned buffer, RSI =
# the dword found, EBX = its owner.  Clobbers: RAX, RSI.
report_planted:
    lea rax, [rip + text_breach]
    cmp ebx, ATTACKER
    jne report_planted_kind
    lea rax, [rip + text_stale]
report_planted_kind:
    push rsi
    mov rsi, rax
    call puts
    mov rsi, rdx
    call puts
    lea rsi, [rip + text_at]
    call puts
    mov rax, [rsp]
    sub rax, r9
    call put_hex
    lea rsi, [rip + text_holds]
    call puts
    lea rsi, [rip + text_witness]
    cmp ebx, WITNESS_OWNER
    je report_planted_whose
    lea rsi, [rip + text_attacker]
    call puts
    mov eax, ebx
    call put_dec
    lea rsi, [rip + text_tag]
report_planted_whose:
    call puts
    lea rsi, [rip + text_colon]
    call puts
    pop rax
    and rax, -8
    mov rax, [rax]
    call put_hex
    mov al, 10
    call putc
    ret

# put_index: print this incarnation's program number (FIRST_INDEX plus the
# restart count).  Clobbers: RAX.
put_index:
    mov eax, [rip + restarts]
    add rax, FIRST_INDEX
    jmp put_dec

# put_fault_counts: print "faults V:C ..." for each vector caught, and
# "tf-lost C" where a single-step trap was lost.  Clobbers: RAX, RCX, RSI.
put_fault_counts:
    lea rsi, [rip + text_faults]
    call puts
    xor ecx, ecx
put_fault_counts_vector:
    lea rax, [rip + fault_counts]
    cmp dword ptr [rax + rcx * 4], 0
    je put_fault_counts_next
    mov al, ' '
    call putc
    mov eax, ecx
    call put_dec
    mov al, ':'
    call putc
    lea rax, [rip + fault_counts]
    mov eax, [rax + rcx * 4]
    call put_dec
put_fault_counts_next:
    inc ecx
    cmp ecx, IDT_VECTORS
    jb put_fault_counts_vector
    mov eax, [rip + tf_lost]
    test eax, eax
    jz put_fault_counts_done
    lea rsi, [rip + text_tf_lost]
    call puts
    call put_dec
put_fault_counts_done:
    ret

# uart_init: COM1 as a polling driver wants it: 115200 8N1, no
# interrupts, DTR/RTS/OUT2.  Clobbers: RAX, RDX.
uart_init:
    mov dx, COM1_BASE + UART_LCR
    mov al, UART_LCR_DLAB
    out dx, al
    mov dx, COM1_BASE + UART_THR
    mov al, UART_DIVISOR_115200
    out dx, al
    mov dx, COM1_BASE + UART_IER
    xor al, al
    out dx, al
    mov dx, COM1_BASE + UART_LCR
    mov al, UART_LCR_8N1
    out dx, al
    mov dx, COM1_BASE + UART_MCR
    mov al, UART_MCR_DTR_RTS_OUT2
    out dx, al
    ret

# putc: send AL once LSR.THRE is set.  Preserves all registers.
putc:
    push rdx
    push rax
    mov dx, COM1_BASE + UART_LSR
putc_wait:
    in al, dx
    test al, UART_LSR_THRE
    jz putc_wait
    pop rax
    mov dx, COM1_BASE + UART_THR
    out dx, al
    pop rdx
    ret

# puts: send the NUL-terminated string at RSI.  Preserves all registers.
puts:
    push rsi
    push rax
puts_next:
    lodsb
    test al, al
    jz puts_done
    call putc
    jmp puts_next
puts_done:
    pop rax
    pop rsi
    ret

# put_dec: RAX as an unsigned decimal.  Preserves all registers.
put_dec:
    push rax
    push rcx
    push rdx
    push rbx
    mov ecx, 10
    xor ebx, ebx
put_dec_divide:
    xor edx, edx
    div rcx
    push rdx
    inc ebx
    test rax, rax
    jnz put_dec_divide
put_dec_emit:
    pop rax
    add al, '0'
    call putc
    dec ebx
    jnz put_dec_emit
    pop rbx
    pop rdx
    pop rcx
    pop rax
    ret

# put_hex: RAX as 0x and 16 hex digits.  Preserves all registers.
put_hex:
    push rax
    push rcx
    push rdx
    mov rdx, rax
    mov al, '0'
    call putc
    mov al, 'x'
    call putc
    mov ecx, 16
put_hex_digit:
    rol rdx, 4
    mov al, dl
    and al, 0xF
    add al, '0'
    cmp al, '9'
    jbe put_hex_emit
    add al, 'a' - '0' - 10
put_hex_emit:
    call putc
    dec ecx
    jnz put_hex_digit
    pop rdx
    pop rcx
    pop rax
    ret

# idt_install: IDT_VECTORS interrupt gates, each to a stub that counts its
# vector and resumes where the catcher is armed.  Clobbers: RAX, RCX,
# RSI, RDI.
idt_install:
    lea rdi, [rip + idt]
    lea rsi, [rip + stubs]
    mov ecx, IDT_VECTORS
idt_install_gate:
    mov rax, rsi
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], GUEST_CODE64_SELECTOR
    mov word ptr [rdi + 4], INTERRUPT_GATE_64
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    mov dword ptr [rdi + 12], 0
    add rdi, 16
    add rsi, STUB_SIZE
    dec ecx
    jnz idt_install_gate
    lidt [rip + idt_pointer]
    ret

# The stubs: one per vector, STUB_SIZE bytes each.  The CPU pushed a frame
# (with or without an error code) on whatever stack was current: dropped.
    .balign STUB_SIZE
stubs:
.set vector, 0
.rept IDT_VECTORS
    .balign STUB_SIZE
    .byte 0xB8                        # mov eax, imm32: the vector
    .long vector
    jmp caught
.set vector, vector + 1
.endr
    .balign STUB_SIZE
# caught: count the vector, then resume where the catcher is armed.
# IN: EAX = the vector.
caught:
    lea rcx, [rip + fault_counts]
    inc dword ptr [rcx + rax * 4]
    mov rsp, [rip + fuzz_resume_rsp]
    jmp qword ptr [rip + fuzz_resume]

    .section .rodata
text_program:   .asciz "program "
text_start:     .asciz " start\n"
text_end:       .asciz " end:"
text_faults:    .asciz " faults"
text_tf_lost:   .asciz " tf-lost "
text_all:       .asciz "all "
text_ran:       .asciz " programs ran\n"
text_breach:    .asciz "breach: "
text_stale:     .asciz "stale: "
text_at:        .asciz " +"
text_holds:     .asciz " holds "
text_witness:   .asciz "the witness's secret"
text_attacker:  .asciz "attacker "
text_tag:       .asciz "'s tag"
text_colon:     .asciz ": "
where_gprs:     .asciz "entry registers"
where_debug:    .asciz "dr0-dr3, cr2"
where_msrs:     .asciz "msrs"
where_fpu:      .asciz "x87/sse/avx state"
where_memory:   .asciz "memory"
idt_pointer:
    .word IDT_VECTORS * 16 - 1
    .quad idt
no_idt:
    .word 0
    .quad 0

    .data
    .balign 8
fuzz_resume:        .quad triple_fault
fuzz_resume_rsp:    .quad stack_top
check_return:       .quad 0
hv_features:        .long 0
restarts:           .long 0
tf_lost:            .long 0
checking_entry:     .byte 0
    .balign 8
entry_gprs:         .fill 16, 8, 0
check_buffer:       .fill 32, 8, 0
fault_counts:       .fill IDT_VECTORS, 4, 0
    .balign 64
xsave_area:         .fill XSAVE_AREA_SIZE, 1, 0
    .balign 4096
fuzz_scratch:       .fill SCRATCH_SIZE, 1, 0
idt:                .fill IDT_VECTORS * 16, 1, 0
stack:              .fill STACK_SIZE, 1, 0
stack_top:
