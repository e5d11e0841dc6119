# A hostile guest: floods of the instructions a guest must not use or that
# exit, each run COUNT times with the catcher armed; then an IDT of garbage
# and an exception, which must end it with a triple fault.  For each flood
# it prints one of
#   NAME: COUNT ok                   (nothing faulted)
#   NAME: COUNT x vector V           (every run faulted; V the last vector)
#   NAME: F of COUNT faulted, last vector V
# and, before the floods that depend on the CPU, "cpuid NAME present" or
# "cpuid NAME absent".  --defsym NO_REFUSED_CR_WRITES=1 leaves out the
# control-register values a CPU refuses: QEMU 7.2's software SVM takes them
# (CR3 with reserved bits too) and fails the next VMRUN instead
# (tests/harness.py EMULATOR_GAPS).
    .include "catcher.inc"
    .globl _start, garbage_ud2

.set VMX_SVM_COUNT, 100                   # each VMX and SVM instruction
.set CACHE_COUNT, 1000                    # INVD, WBINVD
.set EXIT_COUNT, 1000                     # MONITOR, MWAIT, XSETBV
.set STORM_COUNT, 20000                   # INT3, RDRAND, CPUID
.set HLT_COUNT, 50                        # each gives the rest of the slice away
.set CR4_OSXSAVE, 0x40000
.set CPUID_FEATURES, 1
.set CPUID_1_ECX_XSAVE_BIT, 26
.set CPUID_1_ECX_RDRAND_BIT, 30
.set XCR0_SSE_WITHOUT_X87, 2
.set CPUID_STRIDE, 0x9E3779B9             # leaves spread over the 32-bit space
.set HIGH_BITS, 32                        # CR0 and CR4 bits 63:32 are reserved
.set CR3_RESERVED_FIRST, 52               # above any MAXPHYADDR; bit 63 needs CR4.PCIDE
.set CR3_RESERVED_BITS, 11
.set GARBAGE_IDT_BASE, 0xFFFF800000000000  # canonical, mapped nowhere in the guest

# flood COUNT ... flooded NAME: run the instructions between them COUNT
# times (R12 counts down from COUNT to 1), each time with the catcher armed,
# then report.  The instructions may clobber all but R12-R15, RBX, RBP, RSP.
.macro flood count:req
    mov qword ptr [rip + faults], 0
    mov r13d, \count
    mov r12d, \count
7:  arm 8f
.endm
.macro flooded name:req
8:  dec r12d
    jnz 7b
    lea rsi, [rip + .Lflooded\@]
    call report_flood
    .section .rodata
.Lflooded\@: .asciz "\name"
    .text
.endm

# has_feature BIT, NAME: print "cpuid NAME present|absent" for CPUID.1:ECX.BIT.
.macro has_feature bit:req, name:req
    mov eax, CPUID_FEATURES
    cpuid
    say "cpuid \name "
    bt ecx, \bit
    jc 1f
    say "absent\n"
    jmp 2f
1:  say "present\n"
2:
.endm

_start:
    hostile_start

# VMX and SVM instructions: #UD for a guest, whichever the CPU.
    flood VMX_SVM_COUNT
    vmxon [rip + region]
    flooded vmxon
    flood VMX_SVM_COUNT
    vmxoff
    flooded vmxoff
    flood VMX_SVM_COUNT
    vmlaunch
    flooded vmlaunch
    flood VMX_SVM_COUNT
    vmresume
    flooded vmresume
    flood VMX_SVM_COUNT
    vmptrld [rip + region]
    flooded vmptrld
    flood VMX_SVM_COUNT
    vmptrst [rip + region]
    flooded vmptrst
    flood VMX_SVM_COUNT
    vmclear [rip + region]
    flooded vmclear
    flood VMX_SVM_COUNT
    xor eax, eax
    vmread rbx, rax
    flooded vmread
    flood VMX_SVM_COUNT
    xor eax, eax
    vmwrite rax, rax
    flooded vmwrite
    flood VMX_SVM_COUNT
    mov eax, 2
    invept rax, [rip + region]
    flooded invept
    flood VMX_SVM_COUNT
    mov eax, 2
    invvpid rax, [rip + region]
    flooded invvpid
    flood VMX_SVM_COUNT
    xor eax, eax
    vmfunc
    flooded vmfunc
    flood VMX_SVM_COUNT
    lea rax, [rip + region]
    vmrun
    flooded vmrun
    flood VMX_SVM_COUNT
    lea rax, [rip + region]
    vmload
    flooded vmload
    flood VMX_SVM_COUNT
    lea rax, [rip + region]
    vmsave
    flooded vmsave
    flood VMX_SVM_COUNT
    stgi
    flooded stgi
    flood VMX_SVM_COUNT
    clgi
    flooded clgi
    flood VMX_SVM_COUNT
    lea rax, [rip + region]
    skinit
    flooded skinit
    flood VMX_SVM_COUNT
    xor eax, eax
    xor ecx, ecx
    invlpga
    flooded invlpga

# Caches: the guest may not drop others' lines; both complete.
    flood CACHE_COUNT
    invd
    flooded invd
    flood CACHE_COUNT
    wbinvd
    flooded wbinvd

    flood EXIT_COUNT
    lea rax, [rip + region]
    xor ecx, ecx
    xor edx, edx
    monitor
    flooded monitor
    flood EXIT_COUNT
    xor eax, eax
    xor ecx, ecx
    mwait
    flooded mwait

    has_feature CPUID_1_ECX_XSAVE_BIT, xsave
    mov rax, cr4
    or eax, CR4_OSXSAVE
    mov cr4, rax
    flood EXIT_COUNT
    xor ecx, ecx
    xor edx, edx
    mov eax, XCR0_SSE_WITHOUT_X87
    xsetbv
    flooded xsetbv-invalid-xcr0

.ifndef NO_REFUSED_CR_WRITES
# Each reserved bit of CR0 and CR4 (63:32), and CR3 bits 62:52.
    flood HIGH_BITS
    mov rax, cr0
    lea ecx, [r12 + HIGH_BITS - 1]
    bts rax, rcx
    mov cr0, rax
    flooded cr0-reserved-bits
    flood HIGH_BITS
    mov rax, cr4
    lea ecx, [r12 + HIGH_BITS - 1]
    bts rax, rcx
    mov cr4, rax
    flooded cr4-reserved-bits
    flood CR3_RESERVED_BITS
    mov rax, cr3
    mov rdx, rax
    lea ecx, [r12 + CR3_RESERVED_FIRST - 1]
    bts rax, rcx
    mov cr3, rax
    mov cr3, rdx                              # reached only if the CPU took the value
    flooded cr3-reserved-bits
.endif

    flood STORM_COUNT
    int3
    flooded int3
    has_feature CPUID_1_ECX_RDRAND_BIT, rdrand
    flood STORM_COUNT
    rdrand rax
    flooded rdrand
    flood STORM_COUNT
    imul eax, r12d, CPUID_STRIDE
    mov ecx, r12d
    cpuid
    flooded cpuid
    flood HLT_COUNT
    cli
    hlt
    flooded hlt-interrupts-off

# An IDT nowhere in memory: the #UD's gate cannot be read, nor the #PF's,
# nor the #DF's.
    say "lidt garbage, then ud2\n"
    lidt [rip + garbage_idt]
garbage_ud2:
    ud2
    say "TRIPLE FAULT NOT STOPPED\n"
    mov ebx, 1
    jmp exit_with

# report_flood: RSI = the flood's name, R13 = its count, `faults` and
# `vector` as the catcher left them.  Preserves all registers.
report_flood:
    call puts
    say ": "
    mov rax, [rip + faults]
    test rax, rax
    jnz report_flood_faulted
    say_dec r13
    say " ok\n"
    ret
report_flood_faulted:
    cmp rax, r13
    jne report_flood_some
    say_dec r13
    say " x vector "
    say_hex [rip + vector]
    say "\n"
    ret
report_flood_some:
    say_dec rax
    say " of "
    say_dec r13
    say " faulted, last vector "
    say_hex [rip + vector]
    say "\n"
    ret

    .section .rodata
garbage_idt:
    .word IDT_VECTORS * IDT_GATE_SIZE - 1
    .quad GARBAGE_IDT_BASE

    .data
    .balign PAGE_SIZE
region:     .fill PAGE_SIZE, 1, 0             # an operand for the instructions that take one
