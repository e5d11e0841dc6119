# A hostile guest: every MSR of the four ranges CPUs define (0-0x1FFF,
# 0x40000000-0x40001FFF, 0xC0000000-0xC0001FFF, 0xC0010000-0xC0011FFF) read,
# then written back with what was read, or with 0 where the read faulted;
# then writes meant to break the machine: EFER's reserved bits and SVME,
# APIC_BASE, FEATURE_CONTROL, VM_HSAVE_PA, VM_CR, DEBUGCTL and the MTRRs
# (the guest's own, emulated: all ones in a variable range is reserved).
# It prints
#   msr 0xN read ok, write-back ok|write-back vector V    (each MSR that reads)
#   msr 0xN read vector V                                 (a read fault other than #GP)
#   msr 0xN read faulted, write of 0 ok                    (a write of 0 that took)
#   msr 0xN write of 0 vector V                            (a write fault other than #GP)
#   msrs: N swept, R read ok, G read #GP, B written back, Z zero writes #GP, O other faults
#   <name>: ok|vector V                                    (each hostile write)
# and last clears EFER.LME in 64-bit mode ("efer-clear-lme: ...", "efer
# reads ..."), then exits with code 0.
    .include "catcher.inc"
    .globl _start

.set MSR_RANGE_SIZE, 0x2000
.set IA32_APIC_BASE, 0x1B
.set IA32_FEATURE_CONTROL, 0x3A
.set IA32_DEBUGCTL, 0x1D9
.set IA32_MTRR_PHYSBASE0, 0x200
.set MTRR_VARIABLE_MSRS, 16                # PHYSBASE0/PHYSMASK0 ... PHYSBASE7/PHYSMASK7
.set IA32_MTRR_DEF_TYPE, 0x2FF
.set IA32_EFER, 0xC0000080
.set VM_CR, 0xC0010114
.set VM_HSAVE_PA, 0xC0010117
.set EFER_RESERVED_BIT1, 0x2
.set EFER_LME, 0x100
.set EFER_SVME, 0x1000
.set APIC_BASE_MOVED, 0xFEB00900           # another base, BSP, enabled
.set APIC_BASE_X2APIC, 0xFEE00D00          # x2APIC mode, enabled, BSP
.set FEATURE_CONTROL_LOCK_VMX, 0x5         # lock, VMX outside SMX
.set VM_CR_LOCK_SVMDIS, 0x18
.set HSAVE_AT_THE_HYPERVISOR, 0x100000
.set DEBUGCTL_LBR_BTF, 0x3
.set MTRR_TYPE_UC, 0                      # MTRRs off, everything uncached

# try ... tried NAME: as in privileged.S: print "NAME: ok" or "NAME: vector V".
.macro try
    arm 9f
.endm
.macro tried name:req
9:  lea rsi, [rip + .Ltried\@]
    call report
    .section .rodata
.Ltried\@: .asciz "\name"
    .text
.endm

# wrmsr_value MSR, HIGH, LOW: WRMSR of HIGH:LOW to MSR.
.macro wrmsr_value msr:req, high:req, low:req
    mov ecx, \msr
    mov edx, \high
    mov eax, \low
    wrmsr
.endm

_start:
    hostile_start
    xor r8d, r8d                              # MSRs swept
    xor r9d, r9d                              # read ok
    xor r10d, r10d                            # read #GP
    xor r11d, r11d                            # written back
    xor r13d, r13d                            # zero writes #GP
    xor r14d, r14d                            # other faults
    lea rbx, [rip + ranges]
sweep_range:
    mov r12d, dword ptr [rbx]                 # the MSR
    lea r15d, [r12 + MSR_RANGE_SIZE]
sweep_msr:
    inc r8
    arm sweep_read_faulted
    mov ecx, r12d
    rdmsr
    inc r9
    say "msr "
    say_hex r12
    say " read ok, write-back "
    mov rsi, rax                              # arm clobbers RAX
    arm sweep_write_back_faulted
    mov rax, rsi
    mov ecx, r12d
    wrmsr
    inc r11
    say "ok\n"
    jmp sweep_next
sweep_write_back_faulted:
    call count_if_not_gp
    say "vector "
    say_hex [rip + vector]
    say "\n"
    jmp sweep_next
sweep_read_faulted:
    cmp qword ptr [rip + vector], VECTOR_GP
    jne sweep_read_other
    inc r10
    jmp sweep_zero
sweep_read_other:
    inc r14
    call report_read_fault
sweep_zero:
    arm sweep_zero_faulted
    mov ecx, r12d
    xor eax, eax
    xor edx, edx
    wrmsr
    say "msr "
    say_hex r12
    say " read faulted, write of 0 ok\n"
    jmp sweep_next
sweep_zero_faulted:
    cmp qword ptr [rip + vector], VECTOR_GP
    jne sweep_zero_other
    inc r13
    jmp sweep_next
sweep_zero_other:
    inc r14
    say "msr "
    say_hex r12
    say " write of 0 vector "
    say_hex [rip + vector]
    say "\n"
sweep_next:
    inc r12d
    cmp r12d, r15d
    jb sweep_msr
    add rbx, 4
    cmp dword ptr [rbx], -1
    jne sweep_range
    say "msrs: "
    say_dec r8
    say " swept, "
    say_dec r9
    say " read ok, "
    say_dec r10
    say " read #GP, "
    say_dec r11
    say " written back, "
    say_dec r13
    say " zero writes #GP, "
    say_dec r14
    say " other faults\n"

# Hostile writes, one at a time.
    try
    mov ecx, IA32_EFER
    rdmsr
    or eax, EFER_RESERVED_BIT1
    wrmsr
    tried efer-reserved-bit-1
    try
    mov ecx, IA32_EFER
    rdmsr
    bts edx, 31
    wrmsr
    tried efer-reserved-bit-63
    try
    mov ecx, IA32_EFER
    rdmsr
    or eax, EFER_SVME
    wrmsr
    tried efer-svme
    mov ecx, IA32_EFER
    rdmsr
    say "efer reads "
    say_hex rax
    say "\n"
    try
    wrmsr_value IA32_APIC_BASE, 0, APIC_BASE_MOVED
    tried apic-base-moved
    try
    wrmsr_value IA32_APIC_BASE, 0, APIC_BASE_X2APIC
    tried apic-base-x2apic
    try
    wrmsr_value IA32_FEATURE_CONTROL, 0, FEATURE_CONTROL_LOCK_VMX
    tried feature-control-lock-vmx
    try
    wrmsr_value VM_HSAVE_PA, 0, HSAVE_AT_THE_HYPERVISOR
    tried vm-hsave-pa
    try
    wrmsr_value VM_CR, 0, VM_CR_LOCK_SVMDIS
    tried vm-cr-lock-svmdis
    try
    wrmsr_value IA32_DEBUGCTL, 0, DEBUGCTL_LBR_BTF
    tried debugctl-lbr-btf
    try
    wrmsr_value IA32_MTRR_DEF_TYPE, 0, MTRR_TYPE_UC
    tried mtrr-def-type-uc
    xor r12d, r12d                            # variable MTRRs that took the write
    xor r13d, r13d
mtrr_variable:
    arm mtrr_variable_next
    lea ecx, [r13 + IA32_MTRR_PHYSBASE0]
    mov edx, -1
    mov eax, -1
    wrmsr
    inc r12
mtrr_variable_next:
    inc r13d
    cmp r13d, MTRR_VARIABLE_MSRS
    jb mtrr_variable
    say "mtrr-variable: "
    say_dec r12
    say " of 16 writes ok\n"

# Last: a CPU raises #GP for a change of LME while paging is on (SDM Vol.
# 3A 10.8.5); before commit 39cf83b the hypervisor let it through, and the
# next VM entry failed (or, in QEMU's SVM, the guest ran on with LMA set and
# LME clear).
    try
    mov ecx, IA32_EFER
    rdmsr
    and eax, -1 - EFER_LME
    wrmsr
    tried efer-clear-lme
    mov ecx, IA32_EFER
    rdmsr
    say "efer reads "
    say_hex rax
    say "\n"
    xor ebx, ebx
    jmp exit_with

# count_if_not_gp: a write-back faulted: count it among the other faults
# unless it is #GP.  Clobbers: nothing.
count_if_not_gp:
    cmp qword ptr [rip + vector], VECTOR_GP
    je count_if_not_gp_done
    inc r14
count_if_not_gp_done:
    ret

# report_read_fault: "msr 0xN read vector V" for a read fault other than #GP.
report_read_fault:
    say "msr "
    say_hex r12
    say " read vector "
    say_hex [rip + vector]
    say "\n"
    ret

    .section .rodata
ranges:                                       # the first MSR of each range; -1 ends the list
    .long 0x00000000, 0x40000000, 0xC0000000, 0xC0010000, -1
