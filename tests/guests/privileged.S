# A long-mode guest that tries privileged instructions and control-register
# writes a real CPU either runs or faults, and prints what happened to each:
# "<probe>: ok" or "<probe>: vector N", and for some the value read back.
# Its own IDT (catcher.inc) catches every exception and resumes after the
# probe.  --defsym NO_REFUSED_CR_WRITES=1 leaves out the CR0/CR4 values a
# CPU refuses.
    .include "catcher.inc"
    .globl _start

.set CR0_NE, 0x20
.set CR0_NW, 0x20000000
.set CR4_OSFXSR_OSXMMEXCPT, 0x600
.set CR4_OSXSAVE, 0x40000
.set CR4_VMXE, 0x2000
.set IA32_EFER, 0xC0000080
.set EFER_LME, 0x100
.set IA32_LSTAR, 0xC0000082
.set RFLAGS_TF, 0x100

# try ... tried NAME: run the instructions between them with the exception
# catcher armed, then print NAME and the outcome.
.macro try
    arm 9f
.endm
.macro tried name:req
9:  lea rsi, [rip + 8f]
    call report
    .section .rodata
8:  .asciz "\name"
    .text
.endm

_start:
    lea rsp, [rip + stack_top]
    call idt_install
    mov rax, cr4
    or eax, CR4_OSFXSR_OSXMMEXCPT | CR4_OSXSAVE
    mov cr4, rax

    try
    invd
    tried invd
    try
    wbinvd
    tried wbinvd
    try
    xor ecx, ecx
    xor edx, edx
    mov eax, 2
    xsetbv
    tried xsetbv-no-x87
    try
    mov ecx, 1
    xor edx, edx
    mov eax, 1
    xsetbv
    tried xsetbv-xcr1
    try
    xor ecx, ecx
    xor edx, edx
    mov eax, 5
    xsetbv
    tried xsetbv-avx-without-sse
    try
    xor ecx, ecx
    mov edx, 0x40000000
    mov eax, 3
    xsetbv
    tried xsetbv-unknown-component
    try
    xor ecx, ecx
    xor edx, edx
    mov eax, 3
    xsetbv
    tried xsetbv-x87-sse
    xor ecx, ecx
    xgetbv
    lea rsi, [rip + text_xcr0]
    call print_value
.ifndef NO_REFUSED_CR_WRITES
# Control-register values the CPU refuses: QEMU's software SVM makes them
# fail the next VMRUN instead of raising #GP (tests/harness.py EMULATOR_GAPS).
    try
    mov rax, cr4
    or eax, CR4_VMXE
refused_cr4:
    mov cr4, rax
    tried cr4-vmxe
    try
    mov rax, cr0
    and eax, ~CR0_NE
    or eax, CR0_NW
    mov cr0, rax
    tried cr0-nw-without-cd
    try
    mov rax, cr0
    bts rax, 40
    mov cr0, rax
    tried cr0-high-bits
.endif
    try
    mov rax, cr0
    and eax, ~CR0_NE
    mov cr0, rax
    tried cr0-clear-ne
    mov rax, cr0
    and eax, CR0_NE
    lea rsi, [rip + text_cr0_ne]
    call print_value
    try
    mov rax, cr0
    or eax, CR0_NE
    mov cr0, rax
    tried cr0-set-ne
    try
    mov eax, 0x10
    mov cr8, rax
    tried cr8-reserved
    try
    mov eax, 5
    mov cr8, rax
    tried cr8-write
    mov rax, cr8
    lea rsi, [rip + text_cr8]
    call print_value
    try
    lea rax, [rip + vector]
    xor ecx, ecx
    xor edx, edx
    monitor
    tried monitor
    try
    xor eax, eax
    xor ecx, ecx
    mwait
    tried mwait
    try
    xor ecx, ecx
    rdpmc
    tried rdpmc
    try
    rdtscp
    tried rdtscp
    try
    pushfq
    or qword ptr [rsp], RFLAGS_TF
    popfq                           # the trap comes after the next instruction
    cpuid                           # exits: the hypervisor completes it, the trap is owed
after_cpuid:
    nop
    tried single-step-over-cpuid
    mov rax, [rip + fault_rip]
    lea rcx, [rip + after_cpuid]
    sub rax, rcx
    lea rsi, [rip + text_trap_offset]
    call print_value
    try
    mov ecx, IA32_PAT
    xor edx, edx
    mov eax, 2
    wrmsr
    tried pat-reserved-type
    try
    mov ecx, IA32_EFER
    rdmsr
    and eax, ~EFER_LME
    wrmsr
    tried efer-clear-lme-while-paging
    try
    mov ecx, IA32_LSTAR
    mov edx, 0x00008000
    xor eax, eax
    wrmsr
    tried lstar-non-canonical
    try
    mov ecx, IA32_TSC_AUX
    mov edx, 1
    xor eax, eax
    wrmsr
    tried tsc-aux-high-bits
    mov ecx, IA32_PAT
    rdmsr
    shl rdx, 32
    or rax, rdx
    lea rsi, [rip + text_pat]
    call print_value
    mov eax, 1
    cpuid
    mov eax, ecx
    lea rsi, [rip + text_cpuid1_ecx]
    call print_value
    mov eax, 1
    cpuid
    mov eax, edx
    lea rsi, [rip + text_cpuid1_edx]
    call print_value
    mov eax, 0xA
    cpuid
    lea rsi, [rip + text_cpuid_a]
    call print_value

    xor ebx, ebx
    exit_with_ebx
    hlt

# print_value: print "<RSI> 0x<RAX>".  Preserves all registers.
print_value:
    call puts
    call put_hex
    say "\n"
    ret

    .section .rodata
text_xcr0:          .asciz "xcr0 after xsetbv "
text_cr0_ne:        .asciz "cr0.ne after clearing it "
text_cr8:           .asciz "cr8 "
text_pat:           .asciz "pat "
text_cpuid1_ecx:    .asciz "cpuid 1 ecx "
text_cpuid1_edx:    .asciz "cpuid 1 edx "
text_cpuid_a:       .asciz "cpuid 0xa eax "
text_trap_offset:   .asciz "single-step trap rip past the cpuid "
