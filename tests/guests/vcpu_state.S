# A long-mode guest that checks no CPU state crosses between guests.  Two
# copies run side by side, one assembled with --defsym SEED_A=1, the other
# with --defsym SEED_B=1; the seed picks the values this copy plants.  For
# every item of the table `items` (MM0, x87 control word, XMM1, MXCSR,
# XCR0, YMM1's upper half, CR2, DR0-DR3, DR6, DR7, the MSRs STAR, LSTAR,
# CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX (also as RDTSCP returns it), PAT,
# and those the hypervisor keeps in the guest's record: the MTRRs' default
# type, a variable range and a fixed range, MCG_STATUS, and the vendor's
# own, MISC_ENABLE (Intel) or HWCR (AMD)) it
#   1. records the value it finds: a fresh guest must find the reset value,
#   2. plants its own value,
#   3. yields three times, so that the other guest runs (and plants) meanwhile,
#   4. records the value again: it must still be its own,
# and only then prints, per item, in the table's order:
#   initial <name> 0x<value>
#   planted <name> 0x<value>
#   after <name> 0x<value>
# Steps 1-2 and 4 print nothing (each console byte is a VM exit) so that
# each runs within one time slice; the TSC read before steps 1 and 4 and
# after step 2 is printed as "tsc initial|planted|after 0x<value>", so that
# a test can check that the guests' steps really interleaved.  An item the
# CPU lacks is skipped with "xsave absent", "avx absent" or "rdtscp absent",
# and the other vendor's MSR with "intel absent" or "amd absent".
#
# Then a SYSCALL round trip through its own STAR, LSTAR and SFMASK: SYSCALL
# from ring 0 enters the stub named by this copy's LSTAR, which prints
#   syscall reached my handler          (or: ... the other guest's handler)
#   syscall entered with cs 0x<CS>
#   syscall masked rflags with my SFMASK   (or: ... did not mask ...)
# and returns with SYSRET, to ring 3 (the program first opens its identity
# map to ring 3 and points TSS.RSP0 at a stack, so that an exception there
# is reported too); a second SYSCALL from there comes back to ring 0, which
# prints "sysret returned with cs 0x<CS>" and exits with code 0.  Any
# unexpected exception prints
#   unexpected exception vector 0x<V> error 0x<E> rip 0x<R> during <step> [<item>]
# and exits with code 99.
    .intel_syntax noprefix
    .include "guest.inc"
    .include "vcpu.inc"
    .code64

# Architectural constants (SDM Vol. 3A 2.5, 4.5, 6.14, 17.2; Vol. 2B CPUID).
.set CR4_OSFXSR, 1 << 9
.set CR4_OSXMMEXCPT, 1 << 10
.set CR4_OSXSAVE, 1 << 18
.set CPUID1_ECX_XSAVE, 1 << 26
.set CPUID1_ECX_AVX, 1 << 28
.set CPUID_LEAF_XSTATE, 0xD
.set CPUID_EXT_FEATURES, 0x80000001
.set CPUIDX_EDX_RDTSCP, 1 << 27
.set XCR0_X87_SSE_AVX, 0x7
.set XCR0_AVX, 0x4
.set IA32_PAT, 0x277
.set IA32_MCG_STATUS, 0x17A
.set IA32_MISC_ENABLE, 0x1A0
.set IA32_MTRR_PHYSBASE1, 0x202
.set IA32_MTRR_PHYSMASK1, 0x203
.set IA32_MTRR_FIX4K_C8000, 0x269
.set IA32_MTRR_DEF_TYPE, 0x2FF
.set AMD_HWCR, 0xC0010015
.set CPUID_VENDOR_EBX_INTEL, 0x756E6547   # "Genu"
.set CPUID_VENDOR_EBX_AMD, 0x68747541     # "Auth"
.set IA32_EFER, 0xC0000080
.set IA32_STAR, 0xC0000081
.set IA32_LSTAR, 0xC0000082
.set IA32_CSTAR, 0xC0000083
.set IA32_FMASK, 0xC0000084
.set IA32_KERNEL_GS_BASE, 0xC0000102
.set IA32_TSC_AUX, 0xC0000103
.set EFER_SCE, 1 << 0
.set RFLAGS_RESERVED, 1 << 1
.set RFLAGS_TF, 1 << 8
.set RFLAGS_IF, 1 << 9
.set RFLAGS_DF, 1 << 10
.set RFLAGS_NT, 1 << 14
.set RFLAGS_AC, 1 << 18
.set DR7_RESET, 0x400
.set DR7_L0, 1 << 0
.set DR7_G0, 1 << 1
.set PTE_USER, 1 << 2
.set PTE_ADDRESS, 0x000FFFFFFFFFF000
.set CODE64_SELECTOR, 0x18              # README, "Start state": the guest's GDT
.set DATA_SELECTOR, 0x10
.set TSS_RSP0, 4                        # TR is a TSS at guest-physical 0 (builder/start_state.py)
.set GATE_INTERRUPT, 0x8E00             # present, DPL 0, 64-bit interrupt gate, IST 0
.set EXCEPTION_VECTORS, 32
.set ERROR_CODE_VECTORS, (1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17) | (1 << 21) | (1 << 29) | (1 << 30)
.set STUB_SIZE, 16
.set EXIT_UNEXPECTED, 99
.set YIELDS, 3
.set CHAR_SPACE, 0x20
.set CHAR_NEWLINE, 0x0A

# Features, as bits of `features`; an item names those it needs.
.set HAS_XSAVE, 1 << 0
.set HAS_AVX, 1 << 1
.set HAS_RDTSCP, 1 << 2
.set HAS_INTEL, 1 << 3
.set HAS_AMD, 1 << 4

# What this copy plants.  Every value differs from the reset value and, but
# for XCR0 (7, or 3 without AVX, for both), from the other copy's.  DR7
# enables an instruction breakpoint at DR0, which is never executed; a data
# breakpoint would do as well on a CPU, but QEMU 7.2's TCG dies of SIGSEGV
# when an SVM guest runs with one enabled.
.ifdef SEED_A
    .set SEED, 0xA
    .set PLANT_MXCSR, 0x3F80            # reset 0x1F80, rounding down
    .set PLANT_FCW, 0x077F              # reset 0x037F, rounding down
    .set PLANT_DR6, 0xFFFF0FFA          # B1 and B3
    .set PLANT_DR7, DR7_RESET | DR7_L0  # L0: local enable of DR0
    .set PLANT_SFMASK, RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_AC
    .set PLANT_PAT, 0x0001050400070406  # PAT4-7: WT WP WC UC (the page tables use PAT0 only)
    .set PLANT_LSTAR, syscall_entry_a
    .set PLANT_MTRR_DEF_TYPE, 0x804     # reset 0xC06: WT, fixed ranges off
    .set PLANT_MTRR_PHYSBASE, 0x0A000006    # 160 MiB, WB
    .set PLANT_MTRR_PHYSMASK, 0xFF000800    # 16 MiB, valid
    .set PLANT_MTRR_FIXED, 0x0606060606060606   # reset WP: WB
    .set PLANT_MCG_STATUS, 0x4          # MCIP
    .set PLANT_MISC_ENABLE, 0x1800      # reset 0x1801: fast strings off
    .set PLANT_HWCR, 0x1000018          # reset 0x1000010: TlbCacheDis
.endif
.ifdef SEED_B
    .ifdef SEED
        .error "SEED_A and SEED_B are exclusive"
    .endif
    .set SEED, 0xB
    .set PLANT_MXCSR, 0x5F80            # rounding up
    .set PLANT_FCW, 0x0B7F              # rounding up
    .set PLANT_DR6, 0xFFFF0FFB          # B0, B1 and B3
    .set PLANT_DR7, DR7_RESET | DR7_G0  # G0: global enable of DR0
    .set PLANT_SFMASK, RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_NT
    .set PLANT_PAT, 0x0405010600070406  # PAT4-7: WB WC WP WT
    .set PLANT_LSTAR, syscall_entry_b
    .set PLANT_MTRR_DEF_TYPE, 0xC01     # WC
    .set PLANT_MTRR_PHYSBASE, 0x0B000001    # 176 MiB, WC
    .set PLANT_MTRR_PHYSMASK, 0xFE000800    # 32 MiB, valid
    .set PLANT_MTRR_FIXED, 0x0404040404040404   # WT
    .set PLANT_MCG_STATUS, 0x1          # RIPV
    .set PLANT_MISC_ENABLE, 0x1809      # automatic thermal control on
    .set PLANT_HWCR, 0x1040010          # McStatusWrEn
.endif
.ifndef SEED
    .error "assemble with --defsym SEED_A=1 or --defsym SEED_B=1"
.endif
.set SEED16, SEED * 0x1111                  # 0xaaaa or 0xbbbb
.set WIDE, SEED16 << 48                     # a 64-bit pattern
.set UNTOUCHED, SEED << 40                  # canonical, far past any guest's memory: never accessed
.set STAR_SELECTORS, (0x08 << 48) | (CODE64_SELECTOR << 32)  # SYSRET: CS 0x08+16, SS 0x08+8; SYSCALL: CS 0x18
.set TEST_FLAGS, RFLAGS_AC | RFLAGS_NT | RFLAGS_DF   # set before SYSCALL; SFMASK clears some

# An item of state: its name, how to read it (OUT: RAX), how to plant it
# (IN: RAX, OUT: RAX = the value planted); both get RBX = the item and may
# clobber RCX, RDX.  `arg` is the MSR number for msr_read/msr_write.
.set ITEM_NAME, 0
.set ITEM_READ, 8
.set ITEM_WRITE, 16
.set ITEM_ARG, 24
.set ITEM_PLANT, 32
.set ITEM_NEEDS, 40
.set ITEM_INITIAL, 48
.set ITEM_AFTER, 56
.set ITEM_SIZE, 64
.macro item name, read, write, plant, arg=0, needs=0
    .pushsection .rodata
item_name\@: .asciz "\name"
    .popsection
    .quad item_name\@, \read, \write, \arg, \plant, \needs, 0, 0
.endm

# step: name what the program does now, for the report of an unexpected
# exception.  Clobbers: RAX.
.macro step name
    .pushsection .rodata
step_name\@: .asciz "\name"
    .popsection
    lea rax, [rip + step_name\@]
    mov [rip + step_phase], rax
    lea rax, [rip + no_item]
    mov [rip + step_item], rax
.endm

    .data
    .balign 8
items:
    item MM0, mm0_read, mm0_write, WIDE | 0x1
    item FCW, fcw_read, fcw_write, PLANT_FCW
    item XMM1, xmm1_read, xmm1_write, WIDE | 0x2
    item MXCSR, mxcsr_read, mxcsr_write, PLANT_MXCSR
    item XCR0, xcr0_read, xcr0_write, XCR0_X87_SSE_AVX, needs=HAS_XSAVE      # read before YMM1 sets it
    item YMM1_UPPER, ymm1_upper_read, ymm1_upper_write, WIDE | 0x3, needs=HAS_AVX
    item CR2, cr2_read, cr2_write, UNTOUCHED | 0x2000
    item DR0, dr0_read, dr0_write, UNTOUCHED | 0xD00    # DR7's breakpoint: never executed
    item DR1, dr1_read, dr1_write, UNTOUCHED | 0xD08
    item DR2, dr2_read, dr2_write, UNTOUCHED | 0xD10
    item DR3, dr3_read, dr3_write, UNTOUCHED | 0xD18
    item DR6, dr6_read, dr6_write, PLANT_DR6
    item DR7, dr7_read, dr7_write, PLANT_DR7
    item STAR, msr_read, msr_write, STAR_SELECTORS | (SEED16 << 16), IA32_STAR
    item LSTAR, msr_read, msr_write, PLANT_LSTAR, IA32_LSTAR
    item CSTAR, msr_read, msr_write, UNTOUCHED | 0xC000, IA32_CSTAR
    item SFMASK, msr_read, msr_write, PLANT_SFMASK, IA32_FMASK
    item KERNEL_GS_BASE, msr_read, msr_write, UNTOUCHED | 0x6000, IA32_KERNEL_GS_BASE
    item TSC_AUX, msr_read, msr_write, SEED16, IA32_TSC_AUX
    item TSC_AUX_RDTSCP, rdtscp_read, planted_elsewhere, SEED16, needs=HAS_RDTSCP  # planted as TSC_AUX
    item PAT, msr_read, msr_write, PLANT_PAT, IA32_PAT
    item MTRR_DEF_TYPE, msr_read, msr_write, PLANT_MTRR_DEF_TYPE, IA32_MTRR_DEF_TYPE
    item MTRR_PHYSBASE1, msr_read, msr_write, PLANT_MTRR_PHYSBASE, IA32_MTRR_PHYSBASE1
    item MTRR_PHYSMASK1, msr_read, msr_write, PLANT_MTRR_PHYSMASK, IA32_MTRR_PHYSMASK1
    item MTRR_FIX4K_C8000, msr_read, msr_write, PLANT_MTRR_FIXED, IA32_MTRR_FIX4K_C8000
    item MCG_STATUS, msr_read, msr_write, PLANT_MCG_STATUS, IA32_MCG_STATUS
    item MISC_ENABLE, msr_read, msr_write, PLANT_MISC_ENABLE, IA32_MISC_ENABLE, needs=HAS_INTEL
    item HWCR, msr_read, msr_write, PLANT_HWCR, AMD_HWCR, needs=HAS_AMD
items_end:
features:       .quad 0
xcr0_supported: .quad 0
tsc_initial:    .quad 0
tsc_planted:    .quad 0
tsc_after:      .quad 0
step_phase:     .quad 0
step_item:      .quad 0
syscall_entries: .quad 0
sysret_cs:      .quad 0
scratch:        .quad 0
idtr:
    .word EXCEPTION_VECTORS * 16 - 1
    .quad idt

    .bss
    .balign 16
idt:            .skip EXCEPTION_VECTORS * 16
    .balign 16
    .skip 4096                      # the stack for an exception in ring 3 (TSS.RSP0)
ring0_stack_top:

    .text
    .globl _start
_start:
    jmp main

# The two copies' SYSCALL entry points, at the same addresses in both (only
# `jmp main` comes before them): each copy's LSTAR names its own, so a
# SYSCALL through the other copy's LSTAR ends in the other stub.
    .balign 64
syscall_entry_a:
    mov r8d, 0xA
    jmp syscall_handler
    .balign 64
syscall_entry_b:
    mov r8d, 0xB
    jmp syscall_handler

main:
    step setup
    call setup_idt
    call detect_features
    lea rax, [rip + ring0_stack_top]
    mov [TSS_RSP0], rax

    step initial
    call read_tsc
    mov [rip + tsc_initial], rax
    lea r12, [rip + record_initial]
    call walk_items
    step plant
    lea r12, [rip + plant]
    call walk_items
    call read_tsc
    mov [rip + tsc_planted], rax

    step yield
    mov r12d, YIELDS
1:  yield_slice
    dec r12d
    jnz 1b

    step after
    call read_tsc
    mov [rip + tsc_after], rax
    lea r12, [rip + record_after]
    call walk_items

    step print
    call print_report
    step syscall
    call syscall_round_trip
    xor ebx, ebx
    exit_with_ebx
    hlt

# setup_idt: an IDT whose every exception vector reports and exits.
# Clobbers: RAX, RCX, RDX, RDI.
setup_idt:
    lea rdi, [rip + idt]
    lea rax, [rip + exception_stubs]
    mov ecx, EXCEPTION_VECTORS
1:  mov [rdi], ax                               # offset 15:0
    mov word ptr [rdi + 2], CODE64_SELECTOR
    mov word ptr [rdi + 4], GATE_INTERRUPT
    mov rdx, rax
    shr rdx, 16
    mov [rdi + 6], dx                           # offset 31:16
    shr rdx, 16
    mov [rdi + 8], edx                          # offset 63:32
    mov dword ptr [rdi + 12], 0
    add rax, STUB_SIZE
    add rdi, 16
    loop 1b
    lidt [rip + idtr]
    ret

# detect_features: fill `features` and `xcr0_supported`; enable SSE (and
# XSAVE where the CPU has it) in CR4.  Clobbers: RAX, RBX, RCX, RDX, RDI, R8.
detect_features:
    xor edi, edi
    mov eax, 1
    cpuid
    mov r8d, ecx
    mov rax, cr4
    or rax, CR4_OSFXSR | CR4_OSXMMEXCPT
    test r8d, CPUID1_ECX_XSAVE
    jz 1f
    or rax, CR4_OSXSAVE
    or edi, HAS_XSAVE
1:  mov cr4, rax
    test edi, HAS_XSAVE
    jz 2f
    mov eax, CPUID_LEAF_XSTATE
    xor ecx, ecx
    cpuid
    mov [rip + xcr0_supported], rax
    test eax, XCR0_AVX
    jz 2f
    test r8d, CPUID1_ECX_AVX
    jz 2f
    or edi, HAS_AVX
2:  mov eax, CPUID_EXT_FEATURES
    cpuid
    test edx, CPUIDX_EDX_RDTSCP
    jz 3f
    or edi, HAS_RDTSCP
3:  xor eax, eax
    cpuid
    cmp ebx, CPUID_VENDOR_EBX_INTEL
    jne 4f
    or edi, HAS_INTEL
4:  cmp ebx, CPUID_VENDOR_EBX_AMD
    jne 5f
    or edi, HAS_AMD
5:  mov [rip + features], rdi
    ret

# read_tsc: OUT: RAX = the TSC.  Clobbers: RDX.
read_tsc:
    rdtsc
    shl rdx, 32
    or rax, rdx
    ret

# walk_items: call R12 with RBX = each item the CPU has, naming the item
# for an exception report.  Clobbers: RBX, and what R12 clobbers.
walk_items:
    lea rbx, [rip + items]
1:  mov rax, [rip + features]
    not rax
    test [rbx + ITEM_NEEDS], rax
    jnz 2f
    mov rax, [rbx + ITEM_NAME]
    mov [rip + step_item], rax
    call r12
2:  add rbx, ITEM_SIZE
    lea rax, [rip + items_end]
    cmp rbx, rax
    jb 1b
    lea rax, [rip + no_item]
    mov [rip + step_item], rax
    ret

# The steps, per item (IN: RBX = the item; clobber RAX, RCX, RDX).
record_initial:
    call [rbx + ITEM_READ]
    mov [rbx + ITEM_INITIAL], rax
    ret
plant:
    mov rax, [rbx + ITEM_PLANT]
    call [rbx + ITEM_WRITE]
    mov [rbx + ITEM_PLANT], rax
    ret
record_after:
    call [rbx + ITEM_READ]
    mov [rbx + ITEM_AFTER], rax
    ret

# The items' read and write routines (see ITEM_*).
mm0_read:
    movq rax, mm0
    ret
mm0_write:
    movq mm0, rax
    ret
fcw_read:
    fnstcw [rip + scratch]
    movzx eax, word ptr [rip + scratch]
    ret
fcw_write:
    mov [rip + scratch], ax
    fldcw [rip + scratch]
    ret
xmm1_read:
    movq rax, xmm1
    ret
xmm1_write:
    movq xmm1, rax                  # legacy SSE: YMM1's upper half stays
    ret
mxcsr_read:
    stmxcsr [rip + scratch]
    mov eax, [rip + scratch]
    ret
mxcsr_write:
    mov [rip + scratch], eax
    ldmxcsr [rip + scratch]
    ret
xcr0_read:
    xor ecx, ecx
    xgetbv
    shl rdx, 32
    or rax, rdx
    ret
xcr0_write:                         # plants 7 & what the CPU supports: 7, or 3 without AVX
    and rax, [rip + xcr0_supported]
    mov rdx, rax
    shr rdx, 32
    xor ecx, ecx
    xsetbv
    ret
ymm1_upper_read:                    # YMM1 bits 191:128; enables AVX state in XCR0 first
    call xcr0_read
    test eax, XCR0_AVX
    jnz 1f
    mov eax, XCR0_X87_SSE_AVX
    call xcr0_write
1:  vextractf128 xmm0, ymm1, 1
    vmovq rax, xmm0
    ret
ymm1_upper_write:
    vmovq xmm0, rax
    vinsertf128 ymm1, ymm1, xmm0, 1
    ret
cr2_read:
    mov rax, cr2
    ret
cr2_write:
    mov cr2, rax
    ret
.irp n, 0, 1, 2, 3, 6, 7
dr\n\()_read:
    mov rax, dr\n
    ret
dr\n\()_write:
    mov dr\n, rax
    ret
.endr
msr_read:
    mov ecx, [rbx + ITEM_ARG]
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret
msr_write:
    mov ecx, [rbx + ITEM_ARG]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    ret
rdtscp_read:                        # TSC_AUX as RDTSCP returns it, in ECX
    rdtscp
    mov eax, ecx
    ret
planted_elsewhere:
    ret

# print_report: the absent features, the TSC lines, then three lines per
# item.  Clobbers: RAX, RBX, RCX, RDX, RSI, R12.
print_report:
    lea rsi, [rip + no_xsave]
    mov eax, HAS_XSAVE
    call print_if_absent
    lea rsi, [rip + no_avx]
    mov eax, HAS_AVX
    call print_if_absent
    lea rsi, [rip + no_rdtscp]
    mov eax, HAS_RDTSCP
    call print_if_absent
    lea rsi, [rip + no_intel]
    mov eax, HAS_INTEL
    call print_if_absent
    lea rsi, [rip + no_amd]
    mov eax, HAS_AMD
    call print_if_absent
    lea rsi, [rip + tsc_initial_label]
    mov rax, [rip + tsc_initial]
    call put_line
    lea rsi, [rip + tsc_planted_label]
    mov rax, [rip + tsc_planted]
    call put_line
    lea rsi, [rip + tsc_after_label]
    mov rax, [rip + tsc_after]
    call put_line
    lea r12, [rip + print_item]
    jmp walk_items

# print_if_absent: print the line at RSI unless `features` has a bit of
# EAX.  Clobbers: RAX, RDX, RSI.
print_if_absent:
    test [rip + features], eax
    jnz 1f
    call puts
1:  ret

# print_item: the item's initial, planted and after lines.  IN: RBX = the
# item.  Clobbers: RAX, RCX, RDX, RSI.
print_item:
    lea rsi, [rip + initial_word]
    mov rax, [rbx + ITEM_INITIAL]
    call put_item_line
    lea rsi, [rip + planted_word]
    mov rax, [rbx + ITEM_PLANT]
    call put_item_line
    lea rsi, [rip + after_word]
    mov rax, [rbx + ITEM_AFTER]
    # fall through
# put_item_line: "<RSI> <the item's name> 0x<RAX>".  IN: RBX = the item.
# Clobbers: RAX, RCX, RDX, RSI.
put_item_line:
    push rax
    call puts
    mov al, CHAR_SPACE
    call putc
    mov rsi, [rbx + ITEM_NAME]
    pop rax
    # fall through
# put_line: "<RSI> 0x<RAX>" and a newline.  Clobbers: RAX, RCX, RDX, RSI.
put_line:
    call put_field
    mov al, CHAR_NEWLINE
    jmp putc

# put_field: "<RSI> 0x<RAX>", the value without leading zeros.
# Clobbers: RAX, RCX, RDX, RSI.
put_field:
    push rbx
    mov rbx, rax
    call puts
    lea rsi, [rip + hex_prefix]
    call puts
    mov ecx, 64
1:  sub ecx, 4                      # skip leading zero digits; the last one always prints
    jz 2f
    mov rax, rbx
    shr rax, cl
    jz 1b
2:  mov rax, rbx
    shr rax, cl
    and eax, 0xF
    lea rsi, [rip + hex_digits]
    mov al, [rsi + rax]
    call putc
    sub ecx, 4
    jns 2b
    pop rbx
    ret

# puts: send the NUL-terminated string at RSI.  Clobbers: AX, DX, RSI.
puts:
    print_string
    ret

# putc: send AL.  Clobbers: AX, DX.
putc:
    putc_al
    ret

# syscall_round_trip: SYSCALL from ring 0 to this copy's LSTAR, whose
# handler returns with SYSRET to ring 3 (just below), from where a second
# SYSCALL comes back to ring 0 at syscall_done.  Clobbers: RAX, RCX, RDX,
# RSI, R8, R9, R11.
syscall_round_trip:
    call allow_ring3
    mov ecx, IA32_EFER
    rdmsr
    or eax, EFER_SCE
    wrmsr
    pushfq
    or qword ptr [rsp], TEST_FLAGS
    popfq
    syscall
    # ring 3, after SYSRET
    mov eax, cs
    mov [rip + sysret_cs], rax
    syscall
    # not reached: the handler's second entry goes on at syscall_done

# syscall_handler: the LSTAR stubs come here.  IN: R8 = the seed of the
# stub, RCX and R11 as SYSCALL leaves them.  Ring 0, SS = STAR[47:32] + 8.
syscall_handler:
    pushfq
    pop r9
    inc qword ptr [rip + syscall_entries]
    cmp qword ptr [rip + syscall_entries], 1
    jne syscall_done                # the second entry, from ring 3
    push rcx
    push r11
    lea rsi, [rip + reached_mine]
    cmp r8d, SEED
    je 1f
    lea rsi, [rip + reached_other]
1:  call puts
    lea rsi, [rip + entered_cs]
    mov eax, cs
    call put_line
    lea rsi, [rip + masked_mine]
    and r9, TEST_FLAGS
    cmp r9, TEST_FLAGS & ~PLANT_SFMASK
    je 2f
    lea rsi, [rip + masked_not]
2:  call puts
    pop r11
    pop rcx
    sysretq

syscall_done:                       # ring 0 again, on the stack of syscall_round_trip
    mov eax, DATA_SELECTOR
    mov ss, ax
    push RFLAGS_RESERVED
    popfq
    lea rsi, [rip + returned_cs]
    mov rax, [rip + sysret_cs]
    jmp put_line                    # returns from syscall_round_trip

# allow_ring3: set the user bit along the identity map's path to the 2 MiB
# page that holds this program and its stack, so that ring 3 may run here.
# Clobbers: RAX, RCX.
allow_ring3:
    mov rax, cr3
    mov rcx, PTE_ADDRESS
.rept 3                             # PML4[0], PDPT[0], PD[0]
    and rax, rcx
    or qword ptr [rax], PTE_USER
    mov rax, [rax]
.endr
    mov rax, cr3
    mov cr3, rax
    ret

# An exception stub per vector, STUB_SIZE bytes apart: push a zero error
# code where the CPU pushes none, then the vector.
    .balign STUB_SIZE
exception_stubs:
.set vector, 0
.rept EXCEPTION_VECTORS
    .balign STUB_SIZE
.if ((ERROR_CODE_VECTORS >> vector) & 1) == 0
    push 0
.endif
    push vector
    jmp unexpected_exception
.set vector, vector + 1
.endr

# unexpected_exception: report the vector, error code, RIP and step, and
# exit with code 99.  IN: the stack as the stubs leave it.
unexpected_exception:
    lea rsi, [rip + unexpected_vector]
    mov rax, [rsp]
    call put_field
    lea rsi, [rip + unexpected_error]
    mov rax, [rsp + 8]
    call put_field
    lea rsi, [rip + unexpected_rip]
    mov rax, [rsp + 16]
    call put_field
    lea rsi, [rip + during]
    call puts
    mov rsi, [rip + step_phase]
    call puts
    mov rsi, [rip + step_item]
    cmp byte ptr [rsi], 0
    je 1f
    mov al, CHAR_SPACE
    call putc
    mov rsi, [rip + step_item]
    call puts
1:  mov al, CHAR_NEWLINE
    call putc
    mov ebx, EXIT_UNEXPECTED
    exit_with_ebx
    hlt

    .section .rodata
no_item:            .asciz ""
initial_word:       .asciz "initial"
planted_word:       .asciz "planted"
after_word:         .asciz "after"
tsc_initial_label:  .asciz "tsc initial"
tsc_planted_label:  .asciz "tsc planted"
tsc_after_label:    .asciz "tsc after"
no_xsave:           .asciz "xsave absent\n"
no_avx:             .asciz "avx absent\n"
no_rdtscp:          .asciz "rdtscp absent\n"
no_intel:           .asciz "intel absent\n"
no_amd:             .asciz "amd absent\n"
hex_prefix:         .asciz " 0x"
hex_digits:         .ascii "0123456789abcdef"
reached_mine:       .asciz "syscall reached my handler\n"
reached_other:      .asciz "syscall reached the other guest's handler\n"
entered_cs:         .asciz "syscall entered with cs"
masked_mine:        .asciz "syscall masked rflags with my SFMASK\n"
masked_not:         .asciz "syscall did not mask rflags with my SFMASK\n"
returned_cs:        .asciz "sysret returned with cs"
unexpected_vector:  .asciz "unexpected exception vector"
unexpected_error:   .asciz " error"
unexpected_rip:     .asciz " rip"
during:             .asciz " during "
