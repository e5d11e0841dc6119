# A long-mode guest that uses the MSRs a kernel touches at boot as Linux
# 6.1 does, with plain RDMSR/WRMSR, and reports each access (the catcher,
# catcher.inc, turns a fault into a report instead of an oops):
#   vendor intel|amd|other
#   cpuid <feature>: 0|1          (MTRR, MCE, MCA, PAT, xTPR, TSC_ADJUST, IRPERF)
#   maxphyaddr: N                 (CPUID 0x80000008 EAX[7:0])
#   read <msr>: 0x<value>         or  read <msr>: vector V
#   write-back <msr>: ok, reads 0x<value>   (the value just read, written back)
#   <probe>: ok, reads 0x<value>  or  <probe>: vector V   (a write, then a read)
# in this order: the microcode signature (Intel: write 0, CPUID.1, read),
# IA32_MISC_ENABLE, the MTRRs (capabilities, default type, the eight
# variable ranges, the eleven fixed ranges), machine check, TSC_ADJUST,
# AMD's HWCR, DE_CFG, C1E status and legacy performance counters (Linux's
# PMU probe: write a counter, read it back); then every one written back;
# then writes with reserved bits, reserved memory types, addresses at and
# below MAXPHYADDR, read-only bits, each valid write undone after.  Run on
# either vendor: an MSR the other vendor has must raise #GP.  Exits with
# code 0.
    .include "catcher.inc"
    .globl _start

.set CPUID_VENDOR_LEAF, 0
.set VENDOR_INTEL_EBX, 0x756E6547         # "Genu"
.set VENDOR_AMD_EBX, 0x68747541           # "Auth"
.set CPUID_FEATURES, 1
.set CPUID_EXTENDED_FEATURES, 7
.set CPUID_ADDRESS_SIZES, 0x80000008
.set IA32_BIOS_SIGN_ID, 0x8B              # AMD: the patch level
.set IA32_MTRRCAP, 0xFE
.set IA32_MCG_CAP, 0x179
.set IA32_MCG_STATUS, 0x17A
.set IA32_MISC_ENABLE, 0x1A0
.set IA32_TSC_ADJUST, 0x3B
.set IA32_MTRR_PHYSBASE0, 0x200
.set IA32_MTRR_PHYSMASK0, 0x201
.set IA32_MTRR_PHYSBASE1, 0x202
.set IA32_MTRR_PHYSMASK1, 0x203
.set IA32_MTRR_FIX64K_00000, 0x250
.set IA32_MTRR_FIX16K_80000, 0x258
.set IA32_MTRR_FIX16K_A0000, 0x259
.set IA32_MTRR_FIX4K_C0000, 0x268
.set IA32_MTRR_DEF_TYPE, 0x2FF
.set AMD_PERF_EVTSEL0, 0xC0010000
.set AMD_PERF_CTR0, 0xC0010004
.set AMD_HWCR, 0xC0010015
.set AMD_INT_PENDING_MSG, 0xC0010055
.set AMD_DE_CFG, 0xC0011029
.set MTRR_WB, 6
.set MTRR_PHYSMASK_VALID, 0x800
.set ONE_GIB_MASK_LOW, 0xC0000000         # bits 31:30 of a 1 GiB range's mask
.set ONE_GIB_MASK_ABOVE_29, 0xFFFFFFFFC0000000   # every mask bit of a 1 GiB range (63:30)
.set LINUX_PMU_PROBE, 0xFFFF              # Linux flips a counter's low 16 bits

# read NAME, MSR / write_back NAME, MSR / write NAME, MSR, VALUE: one
# access, reported (probe_read, probe_write_back, probe_write).
.macro read name:req, msr:req
    mov ecx, \msr
    lea rsi, [rip + 8f]
    call probe_read
    .pushsection .rodata
8:  .asciz "read \name"
    .popsection
.endm
.macro write_back name:req, msr:req
    mov ecx, \msr
    lea rsi, [rip + 8f]
    call probe_write_back
    .pushsection .rodata
8:  .asciz "write-back \name"
    .popsection
.endm
.macro write name:req, msr:req, value:req
    mov ecx, \msr
    movabs rax, \value
    lea rsi, [rip + 8f]
    call probe_write
    .pushsection .rodata
8:  .asciz "\name"
    .popsection
.endm
# write_rax NAME, MSR: as write, of the value in RAX.
.macro write_rax name:req, msr:req
    mov ecx, \msr
    lea rsi, [rip + 8f]
    call probe_write
    .pushsection .rodata
8:  .asciz "\name"
    .popsection
.endm
# feature NAME, LEAF, REGISTER, BIT: "cpuid NAME: 0|1".
.macro feature name:req, leaf:req, register:req, bit:req
    mov eax, \leaf
    xor ecx, ecx
    cpuid
    say "cpuid \name: "
    bt \register, \bit
    setc al
    movzx eax, al
    say_dec rax
    say "\n"
.endm
# every MACRO: MACRO NAME, MSR for each MSR the program uses.
.macro every action:req
    \action bios-sign-id, IA32_BIOS_SIGN_ID
    \action misc-enable, IA32_MISC_ENABLE
    \action mtrrcap, IA32_MTRRCAP
    \action mtrr-def-type, IA32_MTRR_DEF_TYPE
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    \action mtrr-physbase\n, (IA32_MTRR_PHYSBASE0+2*\n)
    \action mtrr-physmask\n, (IA32_MTRR_PHYSMASK0+2*\n)
    .endr
    \action mtrr-fix64k-00000, IA32_MTRR_FIX64K_00000
    \action mtrr-fix16k-80000, IA32_MTRR_FIX16K_80000
    \action mtrr-fix16k-a0000, IA32_MTRR_FIX16K_A0000
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    \action mtrr-fix4k-\n, (IA32_MTRR_FIX4K_C0000+\n)
    .endr
    \action mcg-cap, IA32_MCG_CAP
    \action mcg-status, IA32_MCG_STATUS
    \action tsc-adjust, IA32_TSC_ADJUST
    \action hwcr, AMD_HWCR
    \action de-cfg, AMD_DE_CFG
    \action int-pending-msg, AMD_INT_PENDING_MSG
    .irp n, 0, 1, 2, 3
    \action perf-evtsel\n, (AMD_PERF_EVTSEL0+\n)
    \action perf-ctr\n, (AMD_PERF_CTR0+\n)
    .endr
.endm

_start:
    lea rsp, [rip + stack_top]
    call idt_install
    call report_cpu

    # Linux's intel_get_microcode_revision: write 0, CPUID.1, read.
    write bios-sign-id-zero, IA32_BIOS_SIGN_ID, 0
    mov eax, CPUID_FEATURES
    cpuid
    every read
    # Linux's PMU probe (check_hw_exists): a counter takes a new value, or
    # there is no PMU to use.
    write perf-ctr0-probe, AMD_PERF_CTR0, LINUX_PMU_PROBE
    every write_back

    # MTRRs (SDM Vol. 3A 12.11.2): reserved bits and memory types 2, 3, 7, 8
    write mtrr-def-type-bit-8, IA32_MTRR_DEF_TYPE, 0xD06
    write mtrr-def-type-bit-12, IA32_MTRR_DEF_TYPE, 0x1C06
    write mtrr-def-type-type-2, IA32_MTRR_DEF_TYPE, 0xC02
    write mtrr-def-type-type-3, IA32_MTRR_DEF_TYPE, 0xC03
    write mtrr-def-type-type-7, IA32_MTRR_DEF_TYPE, 0xC07
    write mtrr-def-type-type-8, IA32_MTRR_DEF_TYPE, 0xC08
    write mtrr-def-type-disabled-uc, IA32_MTRR_DEF_TYPE, 0
    write mtrr-def-type-wt, IA32_MTRR_DEF_TYPE, 0xC04
    write mtrr-def-type-restore, IA32_MTRR_DEF_TYPE, 0xC06
    write mtrr-physbase1-bit-8, IA32_MTRR_PHYSBASE1, 0x10000106
    write mtrr-physbase1-type-3, IA32_MTRR_PHYSBASE1, 0x10000003
    write mtrr-physbase1-type-7, IA32_MTRR_PHYSBASE1, 0x10000007
    write mtrr-physbase1-wb, IA32_MTRR_PHYSBASE1, 0x10000006
    mov ecx, [rip + maxphyaddr]
    dec ecx
    mov eax, 1
    shl rax, cl
    or rax, MTRR_WB
    write_rax mtrr-physbase1-below-maxphyaddr, IA32_MTRR_PHYSBASE1
    mov ecx, [rip + maxphyaddr]
    mov eax, 1
    shl rax, cl
    or rax, MTRR_WB
    write_rax mtrr-physbase1-at-maxphyaddr, IA32_MTRR_PHYSBASE1
    write mtrr-physmask1-bit-10, IA32_MTRR_PHYSMASK1, 0xC0000C00
    mov ecx, [rip + maxphyaddr]
    mov eax, 1
    shl rax, cl
    mov edx, ONE_GIB_MASK_LOW | MTRR_PHYSMASK_VALID
    or rax, rdx
    write_rax mtrr-physmask1-at-maxphyaddr, IA32_MTRR_PHYSMASK1
    mov ecx, [rip + maxphyaddr]
    mov eax, 1
    shl rax, cl
    sub rax, 1                                # every address bit below MAXPHYADDR
    movabs rdx, ONE_GIB_MASK_ABOVE_29 | MTRR_PHYSMASK_VALID
    and rax, rdx
    write_rax mtrr-physmask1-one-gib, IA32_MTRR_PHYSMASK1
    write mtrr-physmask1-restore, IA32_MTRR_PHYSMASK1, 0
    write mtrr-physbase1-restore, IA32_MTRR_PHYSBASE1, 0
    write mtrr-fix4k-type-7-in-byte-5, IA32_MTRR_FIX4K_C0000, 0x0505070505050505
    write mtrr-fix4k-bit-4-in-byte-0, IA32_MTRR_FIX4K_C0000, 0x0505050505050515
    write mtrr-fix4k-mixed, IA32_MTRR_FIX4K_C0000, 0x0001040506060504
    write mtrr-fix4k-restore, IA32_MTRR_FIX4K_C0000, 0x0505050505050505
    write mtrrcap-write, IA32_MTRRCAP, 0x508

    # IA32_MISC_ENABLE (Intel; SDM Vol. 4 table 2-2)
    write misc-enable-fast-strings-off, IA32_MISC_ENABLE, 0x1800
    write misc-enable-tcc-on, IA32_MISC_ENABLE, 0x1809
    write misc-enable-perfmon-available, IA32_MISC_ENABLE, 0x1881
    write misc-enable-bts-available, IA32_MISC_ENABLE, 0x1001
    write misc-enable-monitor, IA32_MISC_ENABLE, 0x41801
    write misc-enable-limit-cpuid, IA32_MISC_ENABLE, 0x401801
    write misc-enable-xtpr-disable, IA32_MISC_ENABLE, 0x801801
    write misc-enable-xd-disable, IA32_MISC_ENABLE, 0x400001801
    write misc-enable-restore, IA32_MISC_ENABLE, 0x1801
    write bios-sign-id-signature, IA32_BIOS_SIGN_ID, 0x1200000000
    write bios-sign-id-low-bits, IA32_BIOS_SIGN_ID, 1

    # Machine check (SDM Vol. 3B 16.3.1): no banks
    write mcg-cap-write, IA32_MCG_CAP, 0
    write mcg-status-mcip, IA32_MCG_STATUS, 4
    write mcg-status-ripv-eipv, IA32_MCG_STATUS, 3
    write mcg-status-bit-3, IA32_MCG_STATUS, 8
    write mcg-status-clear, IA32_MCG_STATUS, 0

    # AMD
    write hwcr-tlb-cache-dis, AMD_HWCR, 0x1000018
    write hwcr-mc-status-wr-en, AMD_HWCR, 0x1040010
    write hwcr-clear-tsc-freq-sel, AMD_HWCR, 0x10
    write hwcr-irperf-en, AMD_HWCR, 0x41000010
    write hwcr-restore, AMD_HWCR, 0x1000010
    write de-cfg-clear-lfence-serialize, AMD_DE_CFG, 0
    write de-cfg-bit-0, AMD_DE_CFG, 3
    write de-cfg-restore, AMD_DE_CFG, 2
    write int-pending-msg-c1e, AMD_INT_PENDING_MSG, 0x18000000
    write perf-evtsel0-enable, AMD_PERF_EVTSEL0, 0x530076
    write perf-evtsel0-bit-21, AMD_PERF_EVTSEL0, 0x200000
    write perf-ctr0-bit-48, AMD_PERF_CTR0, 0x1000000000000
    xor ebx, ebx
    jmp exit_with

# report_cpu: the vendor, the features the MSRs go with, MAXPHYADDR (kept
# in `maxphyaddr`).  Clobbers: RAX, RBX, RCX, RDX.
report_cpu:
    mov eax, CPUID_VENDOR_LEAF
    cpuid
    say "vendor "
    cmp ebx, VENDOR_INTEL_EBX
    je report_cpu_intel
    cmp ebx, VENDOR_AMD_EBX
    je report_cpu_amd
    say "other\n"
    jmp report_cpu_features
report_cpu_intel:
    say "intel\n"
    jmp report_cpu_features
report_cpu_amd:
    say "amd\n"
report_cpu_features:
    feature mce, CPUID_FEATURES, edx, 7
    feature mtrr, CPUID_FEATURES, edx, 12
    feature mca, CPUID_FEATURES, edx, 14
    feature pat, CPUID_FEATURES, edx, 16
    feature xtpr, CPUID_FEATURES, ecx, 14
    feature tsc-adjust, CPUID_EXTENDED_FEATURES, ebx, 1
    feature irperf, CPUID_ADDRESS_SIZES, ebx, 1
    mov eax, CPUID_ADDRESS_SIZES
    cpuid
    movzx eax, al
    mov [rip + maxphyaddr], eax
    say "maxphyaddr: "
    say_dec rax
    say "\n"
    ret

# probe_read: RDMSR of ECX, reported as "<RSI>: 0x<value>" or "<RSI>:
# vector V".  OUT: RAX = the value.  Clobbers: RCX, RDX.
probe_read:
    arm probe_faulted
    rdmsr
    shl rdx, 32
    or rax, rdx
    call puts
    say ": "
    say_hex rax
    say "\n"
    ret

# probe_write_back: RDMSR of ECX, then probe_write of what it read; a
# faulting read is reported as "<RSI>: vector V".  Clobbers: RAX, RCX, RDX.
probe_write_back:
    arm probe_faulted
    rdmsr
    shl rdx, 32
    or rax, rdx
    # fall through
# probe_write: WRMSR of RAX to ECX, then RDMSR, reported as "<RSI>: ok,
# reads 0x<value>", or "<RSI>: vector V" for a fault.  Clobbers: RAX,
# RCX, RDX, R8.
probe_write:
    mov r8, rax
    arm probe_faulted
    mov rax, r8
    mov rdx, r8
    shr rdx, 32
    wrmsr
    rdmsr
    shl rdx, 32
    or rax, rdx
    call puts
    say ": ok, reads "
    say_hex rax
    say "\n"
    ret
probe_faulted:
    jmp report

    .data
    .balign 4
maxphyaddr:
    .long 0
