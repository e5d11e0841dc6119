"""Hardware constants: the one place where an architectural number is written.

Every value here is named as in the Intel SDM (Vol. 3) or the relevant
device data sheet, grouped by the structure it belongs to, with the section
that defines it.  The builder uses these to compute tables; the assembly
templates receive them as generated `.set` lines (see `asm_constants`), so
no template ever spells a number that belongs here.
"""

from __future__ import annotations

import enum


def bit(n: int) -> int:
    return 1 << n


# --- CPUID (SDM Vol. 2A, CPUID instruction) -------------------------------
CPUID_FEATURES_LEAF = 0x1
CPUID_1_ECX_VMX_BIT = 5
CPUID_1_ECX_VMX = bit(CPUID_1_ECX_VMX_BIT)
CPUID_1_ECX_HYPERVISOR_BIT = 31           # reserved for hypervisors, reads 0 on bare metal
CPUID_1_ECX_HYPERVISOR = bit(CPUID_1_ECX_HYPERVISOR_BIT)
CPUID_EXT_FEATURES_LEAF = 0x80000001
CPUID_80000001_ECX_SVM_BIT = 2            # AMD APM Vol. 3, CPUID Fn8000_0001_ECX
CPUID_80000001_ECX_SVM = bit(CPUID_80000001_ECX_SVM_BIT)
CPUID_SVM_FEATURES_LEAF = 0x8000000A      # AMD APM Vol. 3, CPUID Fn8000_000A
CPUID_8000000A_EDX_NP = bit(0)
CPUID_8000000A_EDX_NRIPS = bit(3)
CPUID_8000000A_EDX_DECODE_ASSISTS = bit(7)  # the VMCB holds the faulting instruction's bytes
CPUID_80000001_EDX_NX = bit(20)
CPUID_80000001_EDX_LM = bit(29)
CPUID_HV_LEAF_BASE = 0x40000000           # hypervisor leaves 0x40000000-0x4FFFFFFF
CPUID_HV_LEAF_LAST = 0x4FFFFFFF
CPUID_HV_FEATURES_LEAF = 0x40000001       # ours: EAX = HV_FEATURE_* bits
HV_FEATURE_VMMCALL = bit(0)               # hypercalls use VMMCALL (AMD), not VMCALL (Intel)
CPUID_HV_SIGNATURE = b"HVBUILD  VMM"      # 12 bytes returned in EBX, ECX, EDX of 0x40000000
CPUID_1_ECX_XSAVE = bit(26)
CPUID_1_ECX_OSXSAVE_BIT = 27              # reflects CR4.OSXSAVE
CPUID_1_EDX_APIC = bit(9)
CPUID_MONITOR_LEAF = 0x5
CPUID_THERMAL_LEAF = 0x6
CPUID_TSC_LEAF = 0x15                     # TSC/crystal ratio and the crystal's rate (SDM Vol. 2A CPUID)
CPUID_FREQUENCY_LEAF = 0x16               # processor base, maximum and bus frequencies in MHz
CPUID_TSC_RATIO = 2                       # leaf 0x15 EBX/EAX: a crystal of half the TSC's rate fits
                                          # ECX's 32 bits for any TSC below 8.5 GHz
HZ_PER_MHZ = 1_000_000
CPUID_EXTENDED_FEATURES_LEAF = 0x7        # subleaf 0 in ECX
CPUID_7_ECX_OSPKE_BIT = 4                 # reflects CR4.PKE
CPUID_PMU_LEAF = 0xA                      # architectural performance monitoring
CPUID_XSAVE_LEAF = 0xD                    # SDM Vol. 1 13.2: subleaf 0 EAX/EDX = XCR0 bits supported,
                                          # EBX = XSAVE area size for those XCR0 enables
CPUID_XSAVE_FIRST_COMPONENT_SUBLEAF = 2   # subleaf i >= 2 describes state component i
CPUID_XSAVE_LAST_COMPONENT_SUBLEAF = 63
CPUID_RDT_ALLOCATION_LEAF = 0x10
CPUID_SGX_LEAF = 0x12
CPUID_PROCESSOR_TRACE_LEAF = 0x14
CPUID_ADDRESS_SIZES_LEAF = 0x80000008     # AMD: EBX holds the speculation-control features
CPUID_SEV_LEAF = 0x8000001F               # AMD APM Vol. 3: memory encryption

# --- Control registers (SDM Vol. 3A 2.5) ----------------------------------
CR0_PE = bit(0)
CR0_ET = bit(4)
CR0_NE = bit(5)
CR0_WP = bit(16)
CR0_NW = bit(29)
CR0_CD = bit(30)
CR0_PG = bit(31)
CR0_HIGH_RESERVED = 0xFFFFFFFF00000000    # MOV to CR0 with any of these set: #GP
CR4_PSE = bit(4)                          # 32-bit paging: 4 MiB pages (SDM Vol. 3A 4.3)
CR4_PAE = bit(5)
CR4_OSFXSR = bit(9)
CR4_LA57 = bit(12)                        # 5-level paging (SDM Vol. 3A 4.5)
CR4_OSXMMEXCPT = bit(10)
CR4_VMXE_BIT = 13
CR4_VMXE = bit(CR4_VMXE_BIT)
CR4_OSXSAVE_BIT = 18
CR4_OSXSAVE = bit(CR4_OSXSAVE_BIT)
CR4_PKE_BIT = 22
CR8_RESERVED = ~0xF & (1 << 64) - 1       # SDM Vol. 3A 10.8.6.1: CR8 holds TPR bits 7:4 in 3:0

# --- Debug registers (SDM Vol. 3B 17.2) --------------------------------------
DR6_RESET = 0xFFFF0FF0

# --- XSAVE-managed state (SDM Vol. 1 13.1-13.8) -------------------------------
XCR_XFEATURE_ENABLED_MASK = 0             # XCR0: the only XCR
XFEATURE_X87 = bit(0)
XFEATURE_SSE = bit(1)
XFEATURE_AVX = bit(2)
XFEATURE_OPMASK = bit(5)
XFEATURE_ZMM_HI256 = bit(6)
XFEATURE_HI16_ZMM = bit(7)
XFEATURE_PKRU = bit(9)
XFEATURE_AVX512 = XFEATURE_OPMASK | XFEATURE_ZMM_HI256 | XFEATURE_HI16_ZMM
XCR0_RESET = XFEATURE_X87                 # SDM Vol. 1 13.3: XCR0 after reset
XSAVE_ALIGNMENT = 64
XSAVE_LEGACY_FCW = 0                      # SDM Vol. 1 10.5.1, table 10-2: FXSAVE layout
XSAVE_LEGACY_MXCSR = 24
FCW_RESET = 0x037F                        # SDM Vol. 1 8.1.5: FINIT's control word
MXCSR_RESET = 0x1F80                      # SDM Vol. 1 10.2.3.1: all exceptions masked

# --- RFLAGS (SDM Vol. 1 3.4.3) ---------------------------------------------
RFLAGS_RESERVED_1 = bit(1)
RFLAGS_TF = bit(8)                        # single-step: a #DB trap after each instruction
RFLAGS_IF = bit(9)                        # maskable interrupts enabled
DR6_BS = bit(14)                          # SDM Vol. 3B 17.2.3: the #DB was a single step

# --- MSRs (SDM Vol. 4, chapter 2) -----------------------------------------
IA32_TSC = 0x10
IA32_APIC_BASE = 0x1B
IA32_PERF_STATUS = 0x198                  # not emulated: the prober's #GP
IA32_TSC_DEADLINE = 0x6E0
CPUID_1_ECX_TSC_DEADLINE_BIT = 24
CPUID_6_EAX_ARAT_BIT = 2
IA32_FEATURE_CONTROL = 0x3A
IA32_SYSENTER_CS = 0x174
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176
IA32_VMX_BASIC = 0x480
IA32_VMX_PINBASED_CTLS = 0x481            # without TRUE controls (SDM Vol. 3D A.3.1)
IA32_VMX_MISC = 0x485
IA32_VMX_CR0_FIXED0 = 0x486
IA32_VMX_CR0_FIXED1 = 0x487
IA32_VMX_CR4_FIXED0 = 0x488
IA32_VMX_CR4_FIXED1 = 0x489
IA32_VMX_PROCBASED_CTLS2 = 0x48B
IA32_VMX_EPT_VPID_CAP = 0x48C
IA32_VMX_TRUE_PINBASED_CTLS = 0x48D
IA32_VMX_TRUE_PROCBASED_CTLS = 0x48E
IA32_VMX_TRUE_EXIT_CTLS = 0x48F
IA32_VMX_TRUE_ENTRY_CTLS = 0x490
TRUE_CONTROL_DISTANCE = IA32_VMX_TRUE_PINBASED_CTLS - IA32_VMX_PINBASED_CTLS   # 0x48D-0x490 vs 0x481-0x484
IA32_EFER = 0xC0000080
IA32_PAT = 0x277
IA32_STAR = 0xC0000081                    # SDM Vol. 3A 5.8.8: SYSCALL/SYSRET
IA32_LSTAR = 0xC0000082
IA32_CSTAR = 0xC0000083
IA32_FMASK = 0xC0000084
IA32_FS_BASE = 0xC0000100
IA32_GS_BASE = 0xC0000101
IA32_KERNEL_GS_BASE = 0xC0000102          # swapped with GS_BASE by SWAPGS
IA32_TSC_AUX = 0xC0000103                 # read by RDTSCP and RDPID
PAT_POWER_ON = 0x0007040600070406         # SDM Vol. 3A 12.12.4: WB WT UC- UC WB WT UC- UC
PAT_VALID_TYPES = (0, 1, 4, 5, 6, 7)      # SDM Vol. 3A table 12-10: others are reserved (#GP)
PAT_VALID_TYPE_SET = sum(bit(t) for t in PAT_VALID_TYPES)   # bit t set: type t is valid
PAT_ENTRIES = 8                           # one memory type per byte

# --- Memory types and MTRRs (SDM Vol. 3A 12.11; AMD APM Vol. 2 7.7: the same MSRs) ---
MEMORY_TYPE_UC = 0                        # SDM Vol. 3A table 12-8 (MTRR encodings)
MEMORY_TYPE_WC = 1
MEMORY_TYPE_WT = 4
MEMORY_TYPE_WP = 5
MEMORY_TYPE_WB = 6
MEMORY_TYPE_RESERVED_BITS = 0xF8          # bits 7:3 of a type byte: set only in reserved types
MTRR_VALID_TYPES = (MEMORY_TYPE_UC, MEMORY_TYPE_WC, MEMORY_TYPE_WT, MEMORY_TYPE_WP, MEMORY_TYPE_WB)
MTRR_VALID_TYPE_SET = sum(bit(t) for t in MTRR_VALID_TYPES)   # 12.11.2.1: others in an MTRR: #GP
IA32_MTRRCAP = 0xFE                       # 12.11.1, read-only
MTRRCAP_VCNT = 0xFF                       # bits 7:0: the number of variable ranges
MTRRCAP_FIX = bit(8)                      # the fixed ranges exist
MTRRCAP_WC = bit(10)                      # write-combining may be used
IA32_MTRR_DEF_TYPE = 0x2FF                # 12.11.2.1: bits 7:0 type, 10 FE, 11 E; others #GP
MTRR_DEF_TYPE_TYPE = 0xFF
MTRR_DEF_TYPE_FE = bit(10)
MTRR_DEF_TYPE_E = bit(11)
IA32_MTRR_FIX64K_00000 = 0x250            # 12.11.2.2: eight types, one per byte, each register
IA32_MTRR_FIX16K_80000 = 0x258
IA32_MTRR_FIX16K_A0000 = 0x259
IA32_MTRR_FIX4K_C0000 = 0x268             # ... IA32_MTRR_FIX4K_F8000 = 0x26F, 32 KiB each
MTRR_FIX4K_MSRS = 8
MTRR_FIXED_RANGES_PER_MSR = 8
IA32_MTRR_PHYSBASE0 = 0x200               # 12.11.2.3: PHYSBASEn = 0x200 + 2n, PHYSMASKn = 0x201 + 2n
IA32_MTRR_PHYSMASK0 = 0x201
MTRR_PHYSBASE_TYPE = 0xFF                 # bits 11:8 reserved
MTRR_PHYSMASK_VALID = bit(11)             # bits 10:0 reserved
MTRR_ADDRESS = 0x000FFFFFFFFFF000         # base and mask: bits MAXPHYADDR-1:12 (at most 51:12)
CPUID_EXT_MAX_LEAF = 0x80000000           # EAX: the highest extended leaf
CPUID_80000008_EAX_MAXPHYADDR = 0xFF      # bits 7:0: physical-address width
MAXPHYADDR_WITHOUT_LEAF = 36              # SDM Vol. 3A 4.1.4: a CPU without leaf 0x80000008

# --- Machine-check architecture (SDM Vol. 3B 16.3.1) --------------------------
IA32_MCG_CAP = 0x179                      # bits 7:0 Count (banks), 8 MCG_CTL_P, ...; writes undefined
IA32_MCG_STATUS = 0x17A                   # 16.3.1.2: bits 63:3 reserved
MCG_STATUS_RIPV = bit(0)
MCG_STATUS_EIPV = bit(1)
MCG_STATUS_MCIP = bit(2)                  # "software can set or clear this flag"

# --- Other MSRs a kernel reads at boot (SDM Vol. 4 table 2-2) -----------------
IA32_BIOS_SIGN_ID = 0x8B                  # bits 63:32: the microcode signature CPUID.1 leaves; 31:0 reserved
BIOS_SIGN_ID_SIGNATURE = 0xFFFFFFFF00000000
IA32_MISC_ENABLE = 0x1A0
MISC_ENABLE_FAST_STRINGS = bit(0)         # R/W
MISC_ENABLE_AUTOMATIC_TCC = bit(3)        # R/W: the thermal control circuit
MISC_ENABLE_BTS_UNAVAILABLE = bit(11)     # RO
MISC_ENABLE_PEBS_UNAVAILABLE = bit(12)    # RO

# --- AMD MSRs kernels touch (APM Vol. 2 13.2.1; BKDG for AMD families 10h-16h) ---
AMD_PERF_EVTSEL0 = 0xC0010000             # PerfEvtSel0-3 at 0xC0010000-3, the legacy counters
AMD_PERF_CTR0 = 0xC0010004                # PerfCtr0-3 at 0xC0010004-7
AMD_LEGACY_PERF_COUNTERS = 4
# PerfEvtSel: EventSelect 7:0 and 35:32, UnitMask, USR, OS, Edge, INT, EN, INV, CntMask,
# HG_ONLY 41:40; bits 19, 21, 39:36 and 63:42 are reserved.
AMD_PERF_EVTSEL_DEFINED = ~(bit(19) | bit(21) | 0xF << 36) & (1 << 42) - 1
AMD_PERF_CTR_DEFINED = (1 << 48) - 1      # 48-bit counters
AMD_HWCR = 0xC0010015                     # hardware configuration
HWCR_TLB_CACHE_DIS = bit(3)
HWCR_INVD_WBINVD = bit(4)                 # INVD acts as WBINVD (a BIOS sets it)
HWCR_IGNNE_EM = bit(8)
HWCR_MC_STATUS_WR_EN = bit(18)
HWCR_TSC_FREQ_SEL = bit(24)               # the TSC counts at the P0 frequency (read-only 1)
AMD_INT_PENDING_MSG = 0xC0010055          # interrupt pending and C1E status (BKDG MSRC001_0055)
AMD_DE_CFG = 0xC0011029                   # decode configuration
DE_CFG_LFENCE_SERIALIZE = bit(1)          # LFENCE is dispatch serializing
AMD_PATCH_LEVEL = 0x8B                    # AMD's MSR 0x8B: the microcode patch level, read-only

FEATURE_CONTROL_LOCK = bit(0)             # SDM Vol. 3C 23.7
FEATURE_CONTROL_VMX_OUTSIDE_SMX = bit(2)
VMX_BASIC_REVISION_MASK = 0x7FFFFFFF      # SDM Vol. 3D A.1
VMX_MISC_PREEMPTION_RATE_MASK = 0x1F      # SDM Vol. 3D A.6: timer ticks every 2^rate TSC
VMX_PREEMPTION_TIMER_MAX = 0xFFFFFFFF      # the timer is a 32-bit VMCS field
EPT_VPID_CAP_INVEPT_ALL_CONTEXT = bit(26)  # SDM Vol. 3D A.10
EPT_VPID_CAP_INVVPID_ALL_CONTEXT = bit(42)
INVEPT_ALL_CONTEXT = 2                    # SDM Vol. 3C 30.3 INVEPT types
INVVPID_ALL_CONTEXT = 2

EFER_SCE = bit(0)                         # SDM Vol. 3A 2.2.1; AMD APM Vol. 2 3.1.7
EFER_LME = bit(8)
EFER_LMA_BIT = 10
EFER_LMA = bit(EFER_LMA_BIT)
EFER_NXE = bit(11)
EFER_SVME_BIT = 12
EFER_SVME = bit(EFER_SVME_BIT)
EFER_GUEST_WRITABLE = EFER_SCE | EFER_LME | EFER_NXE
EFER_GUEST_RESERVED = ~(EFER_GUEST_WRITABLE | EFER_LMA) & (1 << 64) - 1   # WRMSR: #GP if set

# --- Paging (SDM Vol. 3A 4.5, tables 4-14 ff.) ------------------------------
PAGE_SIZE = 0x1000
PTE_PWT = bit(3)
PTE_PCD = bit(4)
LARGE_PAGE_SIZE = 0x200000
PTE_PRESENT = bit(0)
PTE_WRITABLE = bit(1)
PTE_USER = bit(2)
PTE_LARGE = bit(7)
PTE_NX = bit(63)
ENTRIES_PER_TABLE = 512

# --- A guest's own paging, walked by software (SDM Vol. 3A 4.3-4.5) ----------
PAGE_SHIFT = 12
PAGE_OFFSET_MASK = PAGE_SIZE - 1
PAGING_LEVEL_BITS = 9                     # PAE and 4-level: 512 entries a table
PAGING_INDEX_MASK = ENTRIES_PER_TABLE - 1
PAGING_ENTRY_SIZE = 8                     # PAE and 4-level entries
PML4_SHIFT = 39                           # 4-level: PML4 index is linear bits 47:39 (SDM 4.5)
PML5_SHIFT = 48                           # 5-level (CR4.LA57): PML5 index is linear bits 56:48
CANONICAL_SHIFT_4_LEVEL = 64 - 48         # a canonical address: bits 63:47 equal (SDM Vol. 1 3.3.7.1)
CANONICAL_SHIFT_5_LEVEL = 64 - 57         # with 57-bit linear addresses: bits 63:56 equal
PDPT_SHIFT = 30                           # PDPTE index: linear bits 31:30 (PAE), 38:30 (4-level)
PTE_ADDRESS_MASK = 0x000FFFFFFFFFF000     # bits 51:12: MAXPHYADDR is at most 52 (SDM 4.1.4)
PAE_PDPT_MASK = 0xFFFFFFE0                # CR3 bits 31:5 locate the PDPT (SDM 4.4.1)
PAGING32_ENTRY_SIZE = 4                   # SDM 4.3: 1024 4-byte entries a table
PAGING32_PDE_SHIFT = 22                   # PDE index: linear bits 31:22
PAGING32_INDEX_MASK = 0x3FF
PAGING32_FRAME_MASK = 0xFFFFF000          # table 4-6: bits 31:12 of a PDE or PTE
PAGING32_LARGE_FRAME_MASK = 0xFFC00000    # table 4-4: a 4 MiB page's bits 31:22
PAGING32_LARGE_OFFSET_MASK = 0x3FFFFF
PSE36_SHIFT = 13                          # table 4-4: PDE bits 20:13 are address bits 39:32
PSE36_MASK = 0xFF
PSE36_ADDRESS_SHIFT = 32

# --- EPT (SDM Vol. 3C 29.3.2, 29.3.7) -------------------------------------
EPT_READ = bit(0)
EPT_WRITE = bit(1)
EPT_EXECUTE = bit(2)
EPT_RWX = EPT_READ | EPT_WRITE | EPT_EXECUTE
EPT_MEMTYPE_WB = 6
EPT_MEMTYPE_SHIFT = 3                     # leaf bits 5:3
EPTP_MEMTYPE_WB = 6                       # SDM Vol. 3C 25.6.11: EPTP bits 2:0
EPTP_WALK_LENGTH_4 = (4 - 1) << 3         # EPTP bits 5:3 = walk length - 1
EPT_QUAL_READ = bit(0)                    # SDM Vol. 3C table 28-7
EPT_QUAL_WRITE = bit(1)
EPT_QUAL_FETCH = bit(2)

# --- Segment descriptors and VMX access rights (SDM Vol. 3A 3.4.5, 3C 25.4.1)
AR_TYPE_DATA_RW_ACCESSED = 0x3
AR_TYPE_CODE_RX_ACCESSED = 0xB
AR_TYPE_TSS_BUSY_32 = 0xB
AR_TYPE_LDT = 0x2
AR_S = bit(4)                             # code/data (not system) descriptor
AR_P = bit(7)
AR_L = bit(13)                            # 64-bit code segment
AR_DB = bit(14)
AR_G = bit(15)
AR_UNUSABLE = bit(16)                     # VMX-only: "segment unusable"
AR_TYPE_TSS_AVAILABLE_64 = 0x9
# Flat descriptors in this layout: access byte in bits 7:0, flags in 15:12
FLAT_CODE32 = AR_G | AR_DB | AR_P | AR_S | AR_TYPE_CODE_RX_ACCESSED
FLAT_CODE64 = AR_G | AR_L | AR_P | AR_S | AR_TYPE_CODE_RX_ACCESSED
FLAT_DATA = AR_G | AR_DB | AR_P | AR_S | AR_TYPE_DATA_RW_ACCESSED
FLAT_LIMIT_PAGES = 0xFFFFF                # 4 GiB in 4 KiB units, with G set

DR7_RESET = 0x400                         # SDM Vol. 3B 17.2.4: DR7 after reset

# --- Instruction format (SDM Vol. 2A 2.1-2.2), for the MMIO decoder ----------
INSTRUCTION_MAX_LENGTH = 15               # SDM 2.3.11: at most 15 bytes, longer is #GP
BYTE_SIZE = 1                             # operand and address sizes, in bytes
WORD_SIZE = 2
DWORD_SIZE = 4
QWORD_SIZE = 8
CODE_SIZE_16 = 16                         # the default operand size CS.D/CS.L give, in bits
CODE_SIZE_32 = 32
CODE_SIZE_64 = 64
PREFIX_OPERAND_SIZE = 0x66                # SDM 2.1.1, group 3
PREFIX_ADDRESS_SIZE = 0x67                # group 4
PREFIX_ES = 0x26                          # group 2: segment overrides
PREFIX_CS = 0x2E
PREFIX_SS = 0x36
PREFIX_DS = 0x3E
PREFIX_FS = 0x64
PREFIX_GS = 0x65
REX_FIRST = 0x40                          # SDM 2.2.1.2, table 2-4: 0100WRXB, 64-bit mode only
REX_LAST = 0x4F
REX_W = bit(3)                            # 64-bit operand size
REX_R = bit(2)                            # ModRM reg field + 8
REGISTER_REX_BIT = 8                      # what REX.R adds to a register number
BYTE_REGISTER_HIGH_FIRST = 4              # SDM Vol. 1 3.4.1.1: without REX, byte registers 4-7 are AH, CH, DH, BH
MODRM_MOD_MASK = 0xC0                     # SDM Vol. 2A 2.1.5, tables 2-1 and 2-2: mod in bits 7:6
MODRM_MOD_DISP8 = 0x40                    # mod 01
MODRM_MOD_DISP_FULL = 0x80                # mod 10: disp16 or disp32 by address size
MODRM_MOD_REGISTER = 0xC0                 # mod 11: no memory operand
MODRM_REG_SHIFT = 3                       # reg (or opcode extension) in bits 5:3
MODRM_FIELD_MASK = 0x7                    # a 3-bit field: reg, rm, SIB base
MODRM_RM_SIB = 0x4                        # rm 100: a SIB byte follows (32/64-bit addressing)
MODRM_RM_DISP32 = 0x5                     # rm (or SIB base) 101 with mod 00: disp32 (RIP-relative in 64-bit mode)
MODRM_RM16_DISP16 = 0x6                   # table 2-1: rm 110 with mod 00 is disp16
IMMEDIATE_MAX_SIZE = 4                    # a 64-bit operand takes an imm32, sign-extended
OPCODE_TWO_BYTE = 0x0F                    # SDM 2.1.2: escape to the two-byte opcode map
OPCODE_MOV_RM8_R8 = 0x88                  # SDM Vol. 2B MOV
OPCODE_MOV_RM_R = 0x89
OPCODE_MOV_R8_RM8 = 0x8A
OPCODE_MOV_R_RM = 0x8B
OPCODE_MOV_AL_MOFFS = 0xA0
OPCODE_MOV_RAX_MOFFS = 0xA1
OPCODE_MOV_MOFFS_AL = 0xA2
OPCODE_MOV_MOFFS_RAX = 0xA3
OPCODE_MOV_RM8_IMM8 = 0xC6                # /0
OPCODE_MOV_RM_IMM = 0xC7                  # /0
OPCODE2_MOV_CR_R = 0x22                   # 0F 22 /r: SDM Vol. 2B MOV to a control register
PREFIX_LOCK = 0xF0                        # group 1; with MOV CR0: AMD's CR8 (CPUID AltMovCr8)
PREFIX_REPNE = 0xF2
PREFIX_REP = 0xF3
REX_B = bit(0)                            # ModRM rm field + 8
OPCODE2_MOVZX_R_RM8 = 0xB6                # 0F B6: SDM Vol. 2B MOVZX
OPCODE2_MOVZX_R_RM16 = 0xB7
OPCODE2_MOVSX_R_RM8 = 0xBE                # 0F BE: SDM Vol. 2B MOVSX
OPCODE2_MOVSX_R_RM16 = 0xBF

# --- Instruction encodings keystone gets wrong (platform notes) --------------
OPCODE_JMP_FAR = 0xEA                     # JMP ptr16:32 (SDM Vol. 2A, JMP)
OPCODE_HLT = 0xF4

# --- Legacy devices (PC/AT and 16550 data sheets) --------------------------
PORT_UNCLAIMED_VALUE = 0xFFFFFFFF         # what a read of a port nobody decodes returns
PORT_LAST = 0xFFFF                        # the I/O address space is 64 KiB (SDM Vol. 1 18.2)
COM1_BASE = 0x3F8
COM2_BASE = 0x2F8                         # the control console (hv/core/control.s.j2)
UART_PORT_COUNT = 8
UART_THR = 0          # transmit holding (write), receive buffer (read); DLL when DLAB=1
UART_IER = 1          # interrupt enable; DLM when DLAB=1
UART_IIR = 2          # interrupt identification (read), FIFO control (write)
UART_LCR = 3
UART_MCR = 4
UART_LSR = 5
UART_MSR = 6
UART_SCR = 7
UART_SCRATCH_PROBE = 0x5A                 # written to SCR and read back: a 16550 is there
UART_LCR_DLAB = bit(7)
UART_LCR_8N1 = 0x03
UART_LSR_DR = bit(0)                      # data ready: RBR (or the receive FIFO) holds a byte
UART_LSR_OE = bit(1)                      # overrun error: a byte came with no room for it
UART_LSR_THRE = bit(5)
UART_LSR_TEMT = bit(6)
UART_IIR_NO_INTERRUPT = bit(0)
UART_MSR_IDLE = 0xB0                      # DCD, DSR, CTS asserted: a cable is attached
UART_MCR_DTR_RTS_OUT2 = 0x0B
UART_DIVISOR_115200 = 1
# PC16550D interrupts ("Interrupt Enable Register", "Interrupt Identification
# Register", "FIFO Control Register", "Modem Control Register")
UART_FCR = UART_IIR                       # FCR is written where IIR is read
UART_IER_ERBFI = bit(0)                   # received data available
UART_IER_ETBEI = bit(1)                   # transmitter holding register empty
UART_IER_ELSI = bit(2)                    # receiver line status
UART_IER_EDSSI = bit(3)                   # modem status
UART_IER_ENABLES = UART_IER_ERBFI | UART_IER_ETBEI | UART_IER_ELSI | UART_IER_EDSSI   # bits 7:4 read 0
UART_IIR_RECEIVER_LINE_STATUS = 0x06     # IIR bits 3:0 = 0110: an error in LSR, priority 1
UART_IIR_RECEIVED_DATA = 0x04             # 0100: the FIFO reached its trigger level, priority 2
UART_IIR_CHARACTER_TIMEOUT = 0x0C         # 1100: bytes below the trigger level wait, priority 2
UART_IIR_THRE = 0x02                      # IIR bits 3:0 = 0010: THR empty, priority 3
UART_IIR_FIFOS_ENABLED = 0xC0             # IIR bits 7:6 = 11 while FCR bit 0 is set
UART_FCR_FIFO_ENABLE = bit(0)
UART_FCR_RECEIVE_FIFO_RESET = bit(1)
UART_FCR_TRIGGER = 0xC0                   # bits 7:6: receive trigger level 1, 4, 8 or 14 bytes
UART_FCR_KEPT = UART_FCR_FIFO_ENABLE | UART_FCR_TRIGGER   # what a later IIR or receive looks at
UART_FCR_TRIGGER_SHIFT = 6
UART_FIFO_SIZE = 16                       # bytes in each FIFO; without FIFOs, RBR holds one
UART_TRIGGER_LEVELS = 0x0E080401          # bytes 0-3: the levels FCR bits 7:6 select, 1, 4, 8, 14
UART_IIR_ID = 0x0F                        # IIR bits 3:0: which interrupt
UART_MCR_OUT2 = bit(3)                    # PC: gates INTRPT onto IRQ 4
PIC_MASTER_DATA = 0x21                    # 8259A interrupt mask registers
PIC_SLAVE_DATA = 0xA1
PIC_MASTER_CMD = 0x20
PIC_SLAVE_CMD = 0xA0
PIC_MASK_ALL = 0xFF
PIC_EOI = 0x20
PIC_ICW1_INIT = 0x11                      # 8259A data sheet: ICW1, edge, cascade, ICW4 follows
PIC_MASTER_VECTOR = 0x20                  # ICW2: IRQ 0-7 -> 0x20-0x27, clear of the exceptions
PIC_SLAVE_VECTOR = 0x28                   #       IRQ 8-15 -> 0x28-0x2F
PIC_VECTOR_END = PIC_SLAVE_VECTOR + 8
PIC_ICW3_MASTER = 1 << 2                  # ICW3: the slave on IRQ 2
PIC_ICW3_SLAVE = 2
PIC_ICW4_8086 = 0x01
PIC_MASTER_IRQ0_ONLY = 0xFE               # OCW1 of the test hook that lets the PIT through
# The guest's 8259A pair (8259A data sheet, "Programming the 8259A"):
# bit 4 of a command-port write tells ICW1 from an OCW; bit 3 tells OCW3
# from OCW2.
PIC_ICW1 = bit(4)
PIC_ICW1_IC4 = bit(0)                     # ICW4 follows
PIC_ICW1_SNGL = bit(1)                    # single: no ICW3
PIC_ICW2_VECTOR_MASK = 0xF8               # T7-T3; the IRQ fills bits 2:0
PIC_ICW4_AEOI = bit(1)
PIC_OCW3 = bit(3)
PIC_OCW3_READ_REGISTER = bit(1)           # RR: bit 0 (RIS) picks IRR or ISR
PIC_OCW3_READ_ISR = bit(0)
PIC_OCW3_POLL = bit(2)
PIC_OCW2_COMMAND_SHIFT = 5
PIC_OCW2_LEVEL_MASK = 7
PIC_OCW2_EOI = 1                          # R SL EOI = 001: non-specific EOI
PIC_OCW2_SPECIFIC_EOI = 3                 # 011
PIC_OCW2_ROTATE_EOI = 5                   # 101: rotate on non-specific EOI
PIC_OCW2_ROTATE_SPECIFIC_EOI = 7          # 111: rotate on specific EOI
PIC_POLL_INTERRUPT = bit(7)               # poll word: I, then the level in bits 2:0
PIC_CASCADE_IRQ = 2                       # the slave's INT drives the master's IR2
PIC_CASCADE_REQUEST = bit(PIC_CASCADE_IRQ)
PIC_IRQS = 8
PIC_SPURIOUS_IRQ = 7                      # INTA with no request: IR7's vector, no ISR bit
ELCR_MASTER = 0x4D0                       # edge/level control (PIIX/ICH ELCR1, ELCR2)
ELCR_MASTER_WRITABLE = 0xF8               # IRQ 0, 1, 2 are always edge (PIIX4 ELCR1)
ELCR_SLAVE_WRITABLE = 0xDE                # IRQ 8 and 13 are always edge (ELCR2)
ISA_IRQS = 16
# 8254 PIT (Intel 82C54 data sheet): channel 0 drives IRQ 0, channel 2 is
# gated and read back through port 0x61 (PC/AT system control port B).
PIT_FREQUENCY_HZ = 1193182
PIT_CHANNEL0 = 0x40
PIT_CHANNEL2 = 0x42
PIT_COMMAND = 0x43
PIT_CHANNEL2_ONE_SHOT = 0xB0              # channel 2, lobyte/hibyte, mode 0
PIT_COUNT_MAX = 0xFFFF
PIT_CALIBRATION_TICKS = 11932             # 10 ms of PIT time
PIT_CHANNEL0_ONE_SHOT = 0x30              # channel 0, lobyte/hibyte, mode 0 (the idle wake-up)
# The 8254's programming model (82C54 data sheet, "Control Word Format",
# "Read-Back Command", "Status Byte").
PIT_CHANNELS = 3
PIT_CONTROL_CHANNEL_SHIFT = 6
PIT_CONTROL_READ_BACK = 3                 # SC1:SC0 = 11
PIT_CONTROL_ACCESS_SHIFT = 4
PIT_CONTROL_ACCESS_MASK = 3
PIT_ACCESS_LATCH = 0                      # counter latch command
PIT_ACCESS_LOW = 1
PIT_ACCESS_HIGH = 2
PIT_ACCESS_WORD = 3                       # low byte, then high byte
PIT_CONTROL_MODE_SHIFT = 1
PIT_CONTROL_MODE_MASK = 7
PIT_CONTROL_BCD = bit(0)
PIT_MODE_INTERRUPT_ON_TERMINAL_COUNT = 0
PIT_MODE_ONE_SHOT = 1                     # hardware retriggerable one-shot
PIT_MODE_RATE_GENERATOR = 2
PIT_MODE_SQUARE_WAVE = 3
PIT_MODE_SOFTWARE_STROBE = 4
PIT_MODE_HARDWARE_STROBE = 5
PIT_MODE_ALIAS_MASK = 3                   # modes 6 and 7 are 2 and 3
PIT_READ_BACK_NO_COUNT = bit(5)           # read-back: 0 = latch the counts
PIT_READ_BACK_NO_STATUS = bit(4)          #            0 = latch the statuses
PIT_READ_BACK_CHANNELS_SHIFT = 1
PIT_STATUS_OUTPUT = bit(7)
PIT_STATUS_NULL_COUNT = bit(6)
PIT_COUNT_RANGE = 0x10000                 # a count of 0 counts 65,536
PIT_IRQ = 0                               # ISA IRQ of channel 0
PIT_COMMAND_OFFSET = PIT_COMMAND - PIT_CHANNEL0
PIT_STATUS_OUTPUT_BIT = 7
PIT_ROUND_UP = PIT_FREQUENCY_HZ - 1
HZ_PER_KHZ = 1000
SYSTEM_CONTROL_B = 0x61
SYSTEM_CONTROL_B_GATE2 = bit(0)
SYSTEM_CONTROL_B_SPEAKER = bit(1)
SYSTEM_CONTROL_B_REFRESH = bit(4)         # toggles with DRAM refresh: timing loops watch it
SYSTEM_CONTROL_B_OUT2_BIT = 5
SYSTEM_CONTROL_B_OUT2 = bit(SYSTEM_CONTROL_B_OUT2_BIT)
SYSTEM_CONTROL_B_WRITABLE = SYSTEM_CONTROL_B_GATE2 | SYSTEM_CONTROL_B_SPEAKER
SYSTEM_CONTROL_B_KEEP = ~(SYSTEM_CONTROL_B_GATE2 | SYSTEM_CONTROL_B_SPEAKER) & 0xFF
# I/O APIC (Intel 82093AA data sheet), at its usual address; the PC's ISA
# IRQ 0 (the PIT) arrives at its pin 2 (ACPI MADT interrupt source override).
IOAPIC_BASE = 0xFEC00000
# Local APIC (SDM Vol. 3A 11.4): its page at the default base, its EOI
# register, and x2APIC mode, where the EOI is an MSR (11.12.1).
LAPIC_BASE = 0xFEE00000
LAPIC_EOI = 0xB0
APIC_BASE_X2APIC_ENABLE_BIT = 10
APIC_BASE_ENABLE_BIT = 11
APIC_BASE_ADDRESS_LOW = 0xFFFFF000       # bits 31:12 of the base (its high bits are in EDX)
IA32_X2APIC_EOI = 0x80B
LAPIC_SPURIOUS_VECTOR = 0xFF              # the SVR's vector after reset (11.9): needs no EOI
LAPIC_MODE_NONE = 0                       # how boot found the local APIC (HV.lapic_mode)
LAPIC_MODE_XAPIC = 1
LAPIC_MODE_X2APIC = 2
IOAPIC_REGSEL = 0x00
IOAPIC_WINDOW = 0x10
IOAPIC_REDIRECTION_TABLE = 0x10           # register of pin n: 0x10 + 2n (low), + 1 (high)
IOAPIC_PIT_PIN = 2
IOAPIC_DELIVERY_NMI = 4 << 8
IOAPIC_PIT_ENTRY_LOW = IOAPIC_REDIRECTION_TABLE + 2 * IOAPIC_PIT_PIN
IOAPIC_PIT_ENTRY_HIGH = IOAPIC_PIT_ENTRY_LOW + 1
IOAPIC_COM1_PIN = 4                       # the real COM1's IRQ 4: wakes the idle CPU for input
IOAPIC_COM1_ENTRY_LOW = IOAPIC_REDIRECTION_TABLE + 2 * IOAPIC_COM1_PIN
IOAPIC_COM1_ENTRY_HIGH = IOAPIC_COM1_ENTRY_LOW + 1
IOAPIC_COM2_PIN = 3                       # the real COM2's IRQ 3: wakes it for the control console
IOAPIC_COM2_ENTRY_LOW = IOAPIC_REDIRECTION_TABLE + 2 * IOAPIC_COM2_PIN
IOAPIC_COM2_ENTRY_HIGH = IOAPIC_COM2_ENTRY_LOW + 1
VECTOR_NMI = 2
# ACPI 6.4 5.2.5.1: the RSDP lies on a 16-byte boundary in the BIOS area
# 0xE0000-0xFFFFF; its OEM ID names who built the tables.  The BIOSes of
# Bochs and of QEMU (SeaBIOS) both write "BOCHS ": where the firmware says
# so, the emulator's power-off ports below exist.
BIOS_AREA_START = 0xE0000
BIOS_AREA_END = 0x100000
BIOS_ROM_START = 0xF0000                  # MP spec 1.4 4: the floating pointer's ROM area, to BIOS_AREA_END
ACPI_RSDP_ALIGNMENT = 16
ACPI_RSDP_SIGNATURE_LOW = int.from_bytes(b"RSD ", "little")
ACPI_RSDP_SIGNATURE_HIGH = int.from_bytes(b"PTR ", "little")
ACPI_RSDP_OEMID = 9                       # offset of the 6-byte OEM ID
EMULATOR_OEMID_LOW = int.from_bytes(b"BOCH", "little")
EMULATOR_OEMID_HIGH = int.from_bytes(b"S ", "little")
BOCHS_SHUTDOWN_PORT = 0x8900              # Bochs: "Shutdown" written here ends the emulator
QEMU_DEBUG_EXIT_PORT = 0xF4               # QEMU isa-debug-exit, when configured
QEMU_DEBUG_EXIT_VALUE = 0x10              # QEMU exits with (0x10 << 1) | 1 = 33

# --- The guest's PC/AT platform devices (hv/devices/) -----------------------
# Motorola MC146818A real-time clock, on the PC/AT at index port 0x70 (bit 7:
# NMI disable) and data port 0x71; its 64 bytes extended to 128 by the PC's
# CMOS (the PC/AT Technical Reference's CMOS map).
RTC_INDEX_PORT = 0x70
RTC_PORT_COUNT = 2                        # 0x70 index, 0x71 data
RTC_DATA_PORT = 0x71
RTC_INDEX_OFFSET = 0
RTC_DATA_OFFSET = 1
RTC_INDEX_NMI_DISABLE = bit(7)
RTC_INDEX_REGISTER = 0x7F                 # registers 0x00-0x7F; bit 7 is not part of the index
RTC_SECONDS = 0x00                        # MC146818A "Address map": time, alarm and calendar bytes
RTC_SECONDS_ALARM = 0x01
RTC_MINUTES = 0x02
RTC_MINUTES_ALARM = 0x03
RTC_HOURS = 0x04
RTC_HOURS_ALARM = 0x05
RTC_DAY_OF_WEEK = 0x06                    # 1 = Sunday ... 7 = Saturday
RTC_DAY_OF_MONTH = 0x07
RTC_MONTH = 0x08
RTC_YEAR = 0x09
RTC_REGISTER_A = 0x0A
RTC_REGISTER_B = 0x0B
RTC_REGISTER_C = 0x0C
RTC_REGISTER_D = 0x0D
RTC_A_UIP = bit(7)                        # update in progress (read-only)
RTC_A_WRITABLE = 0x7F                     # DV2-DV0 (divider) and RS3-RS0 (rate)
RTC_A_POWER_ON = 0x26                     # DV = 010 (32.768 kHz time base), RS = 0110 (1024 Hz)
RTC_B_SET = bit(7)                        # updates inhibited while the clock is set
RTC_B_PIE = bit(6)                        # periodic, alarm, update-ended interrupt enables
RTC_B_AIE = bit(5)
RTC_B_UIE = bit(4)
RTC_B_SQWE = bit(3)
RTC_B_DM = bit(2)                         # data mode: 1 binary, 0 BCD
RTC_B_24_HOUR = bit(1)                    # 1: 24-hour mode, 0: 12-hour with bit 7 of the hour = PM
RTC_B_DSE = bit(0)                        # daylight saving enable
RTC_B_POWER_ON = RTC_B_24_HOUR            # what a PC's BIOS leaves: BCD, 24-hour
RTC_B_KEPT_WHEN_SET = 0xFF & ~RTC_B_UIE   # SET going high clears UIE
RTC_C_IRQF = bit(7)                       # read-only flags, cleared by the read
RTC_C_PF = bit(6)
RTC_C_AF = bit(5)
RTC_C_UF = bit(4)
RTC_D_VRT = bit(7)                        # valid RAM and time: the battery is good
RTC_HOURS_PM = bit(7)                     # 12-hour mode
RTC_HOURS_VALUE = 0x7F                    # the hour without the PM bit
RTC_BCD_BASE = 10                         # BCD: one decimal digit per nibble
RTC_BCD_DIGIT_BITS = 4
RTC_BCD_DIGIT_MASK = 0xF
RTC_UIP_MICROSECONDS = 244                # UIP rises this long before each update (t_BUC)
RTC_A_RATE_SELECT = 0x0F                  # RS3-RS0: the periodic interrupt's rate
RTC_TIME_BASE_HZ = 32768                  # the PC's crystal: DV = 010 (MC146818A "Divider Stages")
RTC_TIME_BASE_ROUND_UP = RTC_TIME_BASE_HZ - 1
RTC_B_INTERRUPT_ENABLES = RTC_B_PIE | RTC_B_AIE | RTC_B_UIE
RTC_C_SOURCES = RTC_C_PF | RTC_C_AF | RTC_C_UF    # each flag sits at its enable's bit in register B
RTC_B_KEPT_AT_RESET = 0xFF & ~(RTC_B_INTERRUPT_ENABLES | RTC_B_SQWE)   # what the RESET pin leaves
RTC_ALARM_DONT_CARE = 0xC0                # an alarm byte of 0xC0-0xFF matches every value
MICROSECONDS_PER_SECOND = 1_000_000
RTC_HOURS_PER_HALF_DAY = 12
CMOS_SIZE = 128                           # registers 0x00-0x7F
CMOS_CENTURY = 0x32                       # PC/AT CMOS map: the century, BCD like the year
CMOS_CHECKSUM_FIRST = 0x10                # PC/AT: 0x2E-0x2F (high byte first) hold the sum of
CMOS_CHECKSUM_LAST = 0x2D                 #        the bytes 0x10-0x2D
CMOS_CHECKSUM_HIGH = 0x2E
CMOS_CHECKSUM_LOW = 0x2F
CMOS_EQUIPMENT = 0x14                     # equipment byte
CMOS_EQUIPMENT_MATH_COPROCESSOR = bit(1)  # bits 7-6, 0: no diskette; bits 5-4 = 0: EGA/VGA
CMOS_BASE_MEMORY = 0x15                   # 0x15-0x16: base memory in KiB
CMOS_BASE_MEMORY_MAX_KIB = 640
CMOS_EXTENDED_MEMORY = 0x17               # 0x17-0x18: KiB above 1 MiB
CMOS_EXTENDED_MEMORY_POST = 0x30          # 0x30-0x31: the same, as found by the POST
CMOS_EXTENDED_MEMORY_MAX_KIB = 0xFFFF
CMOS_MEMORY_ABOVE_16M = 0x34              # 0x34-0x35: 64 KiB blocks above 16 MiB (BIOSes' use)
CMOS_MEMORY_ABOVE_16M_UNIT = 64 * 1024
CMOS_MEMORY_ABOVE_16M_MAX = 0xFFFF
CMOS_MEMORY_ABOVE_4G = 0x5B               # 0x5B-0x5D: 64 KiB blocks above 4 GiB (BIOSes' use)
CMOS_EXTENDED_MEMORY_START = 1024 * 1024
CMOS_MEMORY_16M = 16 * 1024 * 1024
# QEMU's firmware configuration device, traditional I/O interface (QEMU
# docs/specs/fw_cfg.rst): a 16-bit selector, a byte-wide data port.
FW_CFG_PORT_SELECTOR = 0x510
FW_CFG_PORT_COUNT = 2                     # 0x510 selector, 0x511 data
FW_CFG_SELECTOR_OFFSET = 0
FW_CFG_DATA_OFFSET = 1
FW_CFG_WRITE_CHANNEL = bit(14)            # selector bit 14: the item opened for writing
FW_CFG_SELECTOR_ITEM = 0xFFFF & ~FW_CFG_WRITE_CHANNEL   # the item a selector names
FW_CFG_SIGNATURE = 0x0000                 # "QEMU"
FW_CFG_ID = 0x0001                        # feature bitmap: bit 0 traditional interface, bit 1 DMA
FW_CFG_RAM_SIZE = 0x0003
FW_CFG_NB_CPUS = 0x0005
FW_CFG_MAX_CPUS = 0x000F
FW_CFG_FILE_DIR = 0x0019
FW_CFG_ID_TRADITIONAL = bit(0)
# Intel 8042 keyboard controller as a PC/AT wires it: data at 0x60, status
# (read) and command (write) at 0x64; output port bit 0 drives the CPU's
# reset line (PC/AT Technical Reference, "Keyboard controller").
I8042_DATA_PORT = 0x60
I8042_COMMAND_PORT = 0x64
I8042_STATUS_OBF = bit(0)                 # output buffer full: a byte waits at port 0x60
I8042_STATUS_SYS = bit(2)                 # system flag: the command byte's bit 2
I8042_CTR_SYS = bit(2)                    # command byte: system flag (POST passed)
I8042_CTR_XLATE = bit(6)                  # command byte: scan-code translation
I8042_CTR_POWER_ON = I8042_CTR_SYS | I8042_CTR_XLATE
I8042_CMD_READ_CTR = 0x20                 # read the command byte
I8042_CMD_WRITE_CTR = 0x60                # the next byte at port 0x60 is the command byte
I8042_CMD_SELF_TEST = 0xAA
I8042_CMD_INTERFACE_TEST = 0xAB
I8042_SELF_TEST_PASSED = 0x55
I8042_INTERFACE_TEST_PASSED = 0x00
I8042_CMD_PULSE = 0xF0                    # 0xF0-0xFF: pulse the output port bits whose bit is 0
I8042_CMD_PULSE_MASK = 0xF0
I8042_PULSE_RESET_LINE = bit(0)           # output port bit 0: the CPU's reset line
I8042_NO_COMMAND = 0                      # no command waits for its data byte
# PS/2 system control port A (IBM PS/2 Technical Reference): fast reset and
# the A20 gate.
SYSTEM_CONTROL_A = 0x92
SYSTEM_CONTROL_A_FAST_RESET = bit(0)      # a 0 -> 1 transition resets the CPU
SYSTEM_CONTROL_A_A20 = bit(1)
SYSTEM_CONTROL_A_POWER_ON = SYSTEM_CONTROL_A_A20
# Reset control register (Intel ICH9 datasheet 13.7.5 RST_CNT, PIIX3's RC).
RESET_CONTROL = 0xCF9
RESET_CONTROL_SYS_RST = bit(1)            # reset type: system (hard) reset
RESET_CONTROL_RST_CPU = bit(2)            # a write with this bit set resets
RESET_CONTROL_FULL_RST = bit(3)           # full reset (power cycle)
RESET_CONTROL_KEPT = RESET_CONTROL_SYS_RST | RESET_CONTROL_FULL_RST

# --- Text on the console (ASCII) -------------------------------------------
ASCII_NEWLINE = 0x0A
ASCII_CARRIAGE_RETURN = 0x0D
ASCII_PRINTABLE_FIRST = 0x20
ASCII_PRINTABLE_LAST = 0x7E
ASCII_REPLACEMENT = ord(".")              # shown for a guest's unprintable bytes
# Console input (README, "Console input"): Ctrl-A starts a command, as in
# QEMU's and screen's multiplexers; Ctrl-A n gives the input to the next
# guest, Ctrl-A Ctrl-A sends one Ctrl-A.
CONSOLE_INPUT_ESCAPE = 0x01
CONSOLE_INPUT_NEXT = ord("n")

# --- ATA (ATA/ATAPI-6, T13/1410D; PIO data-in protocol 9.7) ---------------
# The storage pool's disk is the secondary channel's master (the primary
# holds Bochs' CD-ROM): hvrun attaches it there.
ATA_BASE = 0x170                          # command block of the secondary channel
ATA_CONTROL = 0x376                       # its device control (write) / alternate status (read)
ATA_DATA = 0
ATA_SECTOR_COUNT = 2
ATA_LBA_LOW = 3
ATA_LBA_MID = 4
ATA_LBA_HIGH = 5
ATA_DEVICE = 6                            # bit 6: LBA, bit 4: device 1; LBA bits 27:24 in 3:0
ATA_STATUS = 7                            # read; ATA_COMMAND on write
ATA_COMMAND = 7
ATA_DEVICE_LBA_MASTER = 0xE0              # LBA addressing, device 0 (bits 7 and 5 obsolete, set)
ATA_LBA28_TOP_MASK = 0x0F                 # LBA bits 27:24, in the device register's low nibble
ATA_CONTROL_NIEN = 0x02                   # no INTRQ: the driver polls
ATA_STATUS_BSY = 0x80
ATA_STATUS_DRDY = 0x40
ATA_STATUS_DF = 0x20
ATA_STATUS_DRQ = 0x08
ATA_STATUS_ERR = 0x01
ATA_STATUS_FLOATING = 0xFF                # no device: the bus floats high
ATA_CMD_READ_SECTORS = 0x20
ATA_CMD_WRITE_SECTORS = 0x30              # PIO data-out (9.8)
ATA_CMD_FLUSH_CACHE = 0xE7                # the device's write cache to the medium (8.13)
ATA_CMD_IDENTIFY_DEVICE = 0xEC
ATA_COMMAND_SECTORS_MAX = 256             # READ/WRITE SECTORS' count: 0 means 256
ATA_IDENTIFY_LBA28_SECTORS = 60 * 2       # IDENTIFY DEVICE words 60-61: sectors by LBA28
ATA_SECTOR_WORDS = 256
ATA_SECTOR_SIZE = 2 * ATA_SECTOR_WORDS
ATA_WAIT_POLLS = 10_000_000               # status reads before a device is given up on
STORAGE_ABSENT = 0                        # HV.storage_state: no pool, or no disk
STORAGE_FOREIGN = 1                       # a disk whose header is not this image's pool's
STORAGE_READY = 2
ATA_LBA28_LIMIT = 1 << 28                 # sectors LBA28 commands reach (the pool's bound)

# --- virtio 1.x over MMIO (Virtual I/O Device Version 1.2, OASIS) ---------
# 4.2.2: the register window of a device, version 2 ("modern") layout.
VIRTIO_MMIO_MAGIC_VALUE = 0x000           # reads "virt"
VIRTIO_MMIO_VERSION = 0x004
VIRTIO_MMIO_DEVICE_ID = 0x008
VIRTIO_MMIO_VENDOR_ID = 0x00C
VIRTIO_MMIO_DEVICE_FEATURES = 0x010
VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014
VIRTIO_MMIO_DRIVER_FEATURES = 0x020
VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024
VIRTIO_MMIO_QUEUE_SEL = 0x030
VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034
VIRTIO_MMIO_QUEUE_NUM = 0x038
VIRTIO_MMIO_QUEUE_READY = 0x044
VIRTIO_MMIO_QUEUE_NOTIFY = 0x050
VIRTIO_MMIO_INTERRUPT_STATUS = 0x060
VIRTIO_MMIO_INTERRUPT_ACK = 0x064
VIRTIO_MMIO_STATUS = 0x070
VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080
VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084
VIRTIO_MMIO_QUEUE_DRIVER_LOW = 0x090      # the available ring
VIRTIO_MMIO_QUEUE_DRIVER_HIGH = 0x094
VIRTIO_MMIO_QUEUE_DEVICE_LOW = 0x0A0      # the used ring
VIRTIO_MMIO_QUEUE_DEVICE_HIGH = 0x0A4
VIRTIO_MMIO_CONFIG_GENERATION = 0x0FC
VIRTIO_MMIO_CONFIG = 0x100                # device-specific configuration from here
VIRTIO_MMIO_WINDOW_SIZE = 0x200           # what a driver maps (Linux: virtio_mmio.device=512@...)
VIRTIO_MMIO_MAGIC = 0x74726976            # "virt", little-endian
VIRTIO_MMIO_VERSION_MODERN = 2
VIRTIO_MMIO_REGISTER_SIZE = 4             # 4.2.2.2: registers are read and written as 32 bits
VIRTIO_MMIO_INT_VRING = 1 << 0            # 4.2.2 InterruptStatus: used buffers
VIRTIO_MMIO_INT_CONFIG = 1 << 1           # the configuration changed
# 2.1: device status bits
VIRTIO_STATUS_ACKNOWLEDGE = 1
VIRTIO_STATUS_DRIVER = 2
VIRTIO_STATUS_DRIVER_OK = 4
VIRTIO_STATUS_FEATURES_OK = 8
VIRTIO_STATUS_DEVICE_NEEDS_RESET = 64
VIRTIO_STATUS_FAILED = 128
# 6: reserved feature bits; 5.2.3: the block device's
VIRTIO_F_VERSION_1 = 1 << 32
VIRTIO_BLK_F_SIZE_MAX = 1 << 1
VIRTIO_BLK_F_SEG_MAX = 1 << 2
VIRTIO_BLK_F_FLUSH = 1 << 9
# 2.7.5: a split virtqueue's descriptor: addr (le64), len (le32), flags, next (le16)
VIRTQ_DESC_SIZE = 16
VIRTQ_DESC_ADDR = 0
VIRTQ_DESC_LEN = 8
VIRTQ_DESC_FLAGS = 12
VIRTQ_DESC_NEXT = 14
VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2                    # device-writable
VIRTQ_DESC_F_INDIRECT = 4                 # not offered (VIRTIO_F_INDIRECT_DESC): refused
# 2.7.6, 2.7.8: the rings: flags (le16), idx (le16), then the entries
VIRTQ_RING_IDX = 2
VIRTQ_RING_ENTRIES = 4
VIRTQ_AVAIL_ENTRY_SIZE = 2
VIRTQ_USED_ENTRY_SIZE = 8                 # id (le32), len (le32)
VIRTQ_RING_EXTRA = 6                      # flags, idx and the event word after the entries
VIRTQ_DESC_ALIGN = 16                     # 2.7: alignment of the three parts
VIRTQ_AVAIL_ALIGN = 2
VIRTQ_USED_ALIGN = 4
VIRTQ_SIZE_MAX = 32768
# 5.2: the block device
VIRTIO_ID_BLOCK = 2
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2
VIRTIO_BLK_ID_BYTES = 20                  # GET_ID's answer: the serial, NUL-padded
VIRTIO_BLK_OUTHDR_SIZE = 16               # type (le32), reserved (le32), sector (le64)
VIRTIO_BLK_OUTHDR_TYPE = 0
VIRTIO_BLK_OUTHDR_SECTOR = 8
VIRTIO_BLK_SECTOR_SIZE = 512              # 5.2.6: sectors are 512 bytes whatever blk_size says

# --- Multiboot v1 (Multiboot Specification 0.6.96, 3.1.1 and 3.3) ----------
MULTIBOOT_HEADER_MAGIC = 0x1BADB002
MULTIBOOT_BOOTLOADER_MAGIC = 0x2BADB002
MULTIBOOT_FLAG_PAGE_ALIGN = bit(0)
MULTIBOOT_FLAG_MEMORY_INFO = bit(1)
MULTIBOOT_INFO_MEM_VALID = bit(0)
MULTIBOOT_INFO_FLAGS_OFFSET = 0
MULTIBOOT_INFO_MEM_UPPER_OFFSET = 8       # KiB of memory from 1 MiB up to the first hole
MULTIBOOT_SEARCH_LIMIT = 8192             # header must lie in the first 8 KiB of the file

# --- The guests' virtual PC, as its boot tables describe it ------------------
# (builder/platform.py, acpi.py, mptable.py; README "Tables").  One CPU with
# an xAPIC at LAPIC_BASE, one I/O APIC at IOAPIC_BASE, the 8259A pair, the
# PIT on ISA IRQ 0 wired to I/O APIC pin IOAPIC_PIT_PIN, COM1, the RTC; no
# PCI, no HPET.
GUEST_LAPIC_ID = 0
GUEST_LAPIC_VERSION = 0x14                # SDM Vol. 3A 11.4.8: 0x1X, an integrated (xAPIC) local APIC
GUEST_IOAPIC_ID = 1                       # not the CPU's 0: one ID space on the APIC bus
GUEST_IOAPIC_VERSION = 0x20               # I/O APIC register 1 bits 7:0, as QEMU's model reads
GUEST_IOAPIC_PINS = 24                    # register 1 bits 23:16 hold this less one
GUEST_IOAPIC_GSI_BASE = 0
# The guest's local APIC registers (SDM Vol. 3A 11.4.1, table 11-1): offsets
# in its 4 KiB page.  Every register sits on a 16-byte boundary; the
# hypervisor keeps each as a dword at (offset >> 4) * 4 in GUEST.lapic.
LAPIC_REGISTER_SHIFT = 4                  # offset >> 4: the register's number
CR8_TPR_SHIFT = 4                         # CR8 = TPR[7:4]
LAPIC_REGISTERS = 64                      # 0x000-0x3F0
LAPIC_ID = 0x20
LAPIC_VERSION = 0x30
LAPIC_TPR = 0x80
LAPIC_APR = 0x90
LAPIC_PPR = 0xA0
LAPIC_RRD = 0xC0
LAPIC_LDR = 0xD0
LAPIC_DFR = 0xE0
LAPIC_SVR = 0xF0
LAPIC_ISR = 0x100                         # 8 registers of 32 vectors each
LAPIC_TMR = 0x180
LAPIC_IRR = 0x200
LAPIC_ESR = 0x280
LAPIC_LVT_CMCI = 0x2F0
LAPIC_ICR_LOW = 0x300
LAPIC_ICR_HIGH = 0x310
LAPIC_LVT_TIMER = 0x320
LAPIC_LVT_THERMAL = 0x330
LAPIC_LVT_PERFORMANCE = 0x340
LAPIC_LVT_LINT0 = 0x350
LAPIC_LVT_LINT1 = 0x360
LAPIC_LVT_ERROR = 0x370
LAPIC_TIMER_INITIAL_COUNT = 0x380
LAPIC_TIMER_CURRENT_COUNT = 0x390
LAPIC_TIMER_DIVIDE = 0x3E0
LAPIC_DFR_FLAT = 0xFFFFFFFF               # 11.6.2.2: the flat model (the reset value)
LAPIC_DFR_WRITABLE = 0xF0000000           # the model bits; 27:0 read as ones
LAPIC_DFR_RESERVED_ONES = 0x0FFFFFFF
LAPIC_ICR_DESTINATION_MASK = 0xFF000000
LAPIC_BROADCAST_ID = 0xFF
LAPIC_CLUSTER_MASK = 0xF0                 # cluster model: cluster in 7:4, members in 3:0
LAPIC_CLUSTER_MEMBERS = 0x0F
LAPIC_DELIVERY_LOWEST_PRIORITY = 1 << 8
LAPIC_DIVIDE_HIGH_BIT = 4                 # divide configuration bit 3, moved next to bits 1:0
LAPIC_DIVIDE_LOW_BITS = 3
LAPIC_DIVIDE_CODE_MASK = 7
LAPIC_TIMER_MODE_BITS = 3 << 17
LAPIC_LDR_WRITABLE = 0xFF000000
LAPIC_ID_WRITABLE = 0xFF000000
LAPIC_VERSION_MAX_LVT_SHIFT = 16
LAPIC_LVT_ENTRIES = 6                     # timer, thermal, performance, LINT0, LINT1, error
LAPIC_SVR_ENABLE_BIT = 8                  # APIC software enable (11.4.7.2)
LAPIC_SVR_ENABLE = bit(LAPIC_SVR_ENABLE_BIT)
LAPIC_SVR_WRITABLE = 0x3FF                # vector, enable, focus processor checking
LAPIC_LVT_MASKED_BIT = 16
LAPIC_LVT_MASKED = bit(LAPIC_LVT_MASKED_BIT)
LAPIC_LVT_VECTOR_MASK = 0xFF
LAPIC_DELIVERY_MASK = 7 << 8              # LVT and ICR delivery mode, 10:8
LAPIC_DELIVERY_FIXED = 0 << 8
LAPIC_DELIVERY_NMI = 4 << 8
LAPIC_DELIVERY_INIT = 5 << 8
LAPIC_DELIVERY_STARTUP = 6 << 8
LAPIC_DELIVERY_EXTINT = 7 << 8
LAPIC_LVT_TIMER_WRITABLE = 0x700FF        # vector, mask, timer mode 18:17 (11.5.1)
LAPIC_LVT_LINT_WRITABLE = 0x1A7FF         # vector, delivery mode, polarity, trigger mode, mask
LAPIC_LVT_ERROR_WRITABLE = 0x100FF        # vector, mask
LAPIC_LVT_OTHER_WRITABLE = 0x107FF        # vector, delivery mode, mask (thermal, performance)
LAPIC_TIMER_MODE_SHIFT = 17
LAPIC_TIMER_MODE_MASK = 3
LAPIC_TIMER_ONE_SHOT = 0
LAPIC_TIMER_PERIODIC = 1
LAPIC_TIMER_TSC_DEADLINE = 2
LAPIC_TIMER_DIVIDE_WRITABLE = 0xB         # bits 3, 1, 0 (11.5.4, figure 11-10)
LAPIC_ICR_DELIVERY_STATUS = bit(12)
LAPIC_ICR_LOW_WRITABLE = 0xCCFFF          # vector, delivery and destination mode, level, trigger, shorthand
LAPIC_ICR_DESTINATION_LOGICAL = bit(11)
LAPIC_ICR_SHORTHAND_SHIFT = 18
LAPIC_ICR_SHORTHAND_MASK = 3
LAPIC_ICR_NO_SHORTHAND = 0
LAPIC_ICR_SELF = 1
LAPIC_ICR_ALL_INCLUDING_SELF = 2
LAPIC_ICR_ALL_EXCLUDING_SELF = 3
LAPIC_ICR_DESTINATION_SHIFT = 24          # ICR high bits 31:24
LAPIC_ESR_SEND_ILLEGAL_VECTOR = bit(5)
LAPIC_ESR_RECEIVE_ILLEGAL_VECTOR = bit(6)
LAPIC_ESR_ILLEGAL_REGISTER = bit(7)
LAPIC_FIRST_LEGAL_VECTOR = 16             # vectors 0-15 are illegal (11.5.2)
LAPIC_PRIORITY_CLASS = 0xF0               # bits 7:4 of a vector or priority
LAPIC_PRIORITY_CLASS_SHIFT = 4
LAPIC_REGISTER_ALIGNMENT = 0xF            # registers are 16-byte aligned; other offsets reserved
LAPIC_VECTOR_BANKS = 8                    # ISR, TMR, IRR: 8 registers of 32 bits
LAPIC_VECTOR_BANK_SHIFT = 5               # 32 vectors a register
APIC_BASE_BSP = bit(8)                    # IA32_APIC_BASE (11.4.4)
APIC_BASE_ENABLE = bit(11)
APIC_BASE_GUEST_FIXED = LAPIC_BASE | APIC_BASE_BSP   # what a guest's write must keep
LAPIC_LDR_SHIFT = 24                      # logical APIC ID in bits 31:24
LAPIC_ID_SHIFT = 24
# The guest's I/O APIC (82093AA data sheet 3.1, 3.2): its MMIO window,
# its registers through IOREGSEL/IOWIN, and a redirection entry's fields.
IOAPIC_PAGE_SIZE = 0x1000
IOAPIC_EOI = 0x40                         # EOI register of version 0x20 I/O APICs (ICH)
IOAPIC_REGISTER_ID = 0x00
IOAPIC_REGISTER_VERSION = 0x01
IOAPIC_REGISTER_ARBITRATION = 0x02
IOAPIC_ENTRY_VECTOR_MASK = 0xFF
IOAPIC_ENTRY_DELIVERY_SHIFT = 8           # 000 fixed, 001 lowest priority, 100 NMI, 101 INIT, 111 ExtINT
IOAPIC_ENTRY_DESTINATION_LOGICAL = bit(11)
IOAPIC_ENTRY_DELIVERY_STATUS = bit(12)
IOAPIC_ENTRY_POLARITY_LOW = bit(13)
IOAPIC_ENTRY_REMOTE_IRR = bit(14)
IOAPIC_ENTRY_LEVEL = bit(15)
IOAPIC_ENTRY_MASKED = bit(16)
IOAPIC_ENTRY_DESTINATION_SHIFT = 56       # bits 63:56 of the 64-bit entry
# The I/O APIC model's registers and messages (hv/devices/ioapic.s.j2; 82093AA sections)
IOAPIC_REGISTER_SIZE = 4                  # 3.1: IOREGSEL, IOWIN (and EOI) answer dword accesses only
IOAPIC_REDIRECTION_REGISTERS = 2 * GUEST_IOAPIC_PINS   # 0x10-0x3F: a low and a high dword per pin
IOAPIC_ID_SHIFT = 24                      # 3.2.1, 3.2.3: ID and arbitration ID in bits 27:24
IOAPIC_ID_MASK = 0xF
IOAPIC_VERSION_ENTRIES_SHIFT = 16         # 3.2.2: bits 23:16, the highest entry's number
GUEST_IOAPIC_VERSION_REGISTER = (GUEST_IOAPIC_VERSION
                                 | (GUEST_IOAPIC_PINS - 1) << IOAPIC_VERSION_ENTRIES_SHIFT)
IOAPIC_ENTRY_DELIVERY_MODE = 7 << IOAPIC_ENTRY_DELIVERY_SHIFT
IOAPIC_DELIVERY_LOWEST_PRIORITY = 1 << IOAPIC_ENTRY_DELIVERY_SHIFT   # fixed is 0, NMI IOAPIC_DELIVERY_NMI
IOAPIC_ENTRY_LOW_WRITABLE = (IOAPIC_ENTRY_VECTOR_MASK | IOAPIC_ENTRY_DELIVERY_MODE
                             | IOAPIC_ENTRY_DESTINATION_LOGICAL | IOAPIC_ENTRY_POLARITY_LOW
                             | IOAPIC_ENTRY_LEVEL | IOAPIC_ENTRY_MASKED)   # bits 17-31 reserved
IOAPIC_ENTRY_READ_ONLY = IOAPIC_ENTRY_DELIVERY_STATUS | IOAPIC_ENTRY_REMOTE_IRR
IOAPIC_ENTRY_HIGH_WRITABLE = 0xFF << (IOAPIC_ENTRY_DESTINATION_SHIFT - 32)  # bits 55:32 reserved
IOAPIC_ENTRY_RESET = IOAPIC_ENTRY_MASKED  # 3.2.4: masked at reset (the other bits: 0 here)
# SDM Vol. 3A 11.6.2.2: a logical destination against DFR's model and LDR
LAPIC_DFR_MODEL_SHIFT = 28
LAPIC_DFR_MODEL_FLAT = 0xF
LAPIC_DFR_MODEL_CLUSTER = 0x0
LAPIC_CLUSTER_SHIFT = 4                   # cluster model: cluster in bits 7:4, members in 3:0
LAPIC_CLUSTER_ALL = 0xF                   # destination cluster 0xF: every cluster
GUEST_CPU_SIGNATURE = 0x600               # MP spec 1.4 4.3.1: family 6; the CPU itself is
                                          #   the host's, known only to CPUID
CPUID_1_EDX_FPU = bit(0)
GUEST_CPU_FEATURES = CPUID_1_EDX_FPU | CPUID_1_EDX_APIC   # the MP processor entry's CPUID.1:EDX
ISA_IRQ_COUNT = 16
ISA_IRQ_NO_PIN = 0xFF                     # an ISA IRQ no I/O APIC pin carries
ISA_IRQ_PIT = 0
ISA_IRQ_CASCADE = 2                       # the slave 8259A's input on the master: no device
ISA_IRQ_COM1 = 4
ISA_IRQ_RTC = 8
ISA_IRQ_SCI = 9                           # ACPI's system control interrupt, where PCs have it
# Interrupt input flags (polarity bits 1:0, trigger mode bits 3:2), one
# encoding in the MP table's interrupt entries (MP spec 1.4 4.3.4) and in
# ACPI's interrupt source overrides (ACPI 6.4 5.2.12.5, MPS INTI flags).
MPS_INTI_CONFORMS = 0                     # as the bus has it: ISA is edge-triggered, active high
MPS_INTI_POLARITY_ACTIVE_HIGH = 0b01
MPS_INTI_TRIGGER_LEVEL = 0b11 << 2
# ACPI fixed hardware (ACPI 6.4 4.8.3): the PM1a event block (PM1_STS, then
# PM1_EN) and right after it the PM1a control block (PM1_CNT), at QEMU
# ICH9's ports.  Each register is 16 bits wide, read and written by bytes
# or words (4.8.3.1, 4.8.3.2.1).  The PM timer follows them (4.8.3.3);
# there is no PM1b, PM2 or GPE block.
ACPI_PM1A_EVT_BLK = 0x600
ACPI_PM1_EVT_LEN = 4
ACPI_PM1A_CNT_BLK = ACPI_PM1A_EVT_BLK + ACPI_PM1_EVT_LEN
ACPI_PM1_CNT_LEN = 2
ACPI_PM_TMR_BLK = 0x608                   # 4.8.3.3: the PM timer, 32 bits wide (FADT TMR_VAL_EXT)
ACPI_PM_TMR_LEN = 4
ACPI_PM_TIMER_HZ = 3_579_545              # its fixed rate (4.8.3.3)
ACPI_PM1_REGISTER_BYTES = 2
ACPI_PM1_BYTE_ACCESS = 1                  # an IN or OUT of one byte
ACPI_PM1_HIGH_BYTE_BIT = 0                # of a port's offset: set for a register's high byte
ACPI_PM1_HIGH_BYTE = bit(ACPI_PM1_HIGH_BYTE_BIT)
ACPI_PM1_HIGH_BYTE_SHIFT = 8
ACPI_PM1_LOW_HALF = 0x00FF
ACPI_PM1_HIGH_HALF = 0xFF00
ACPI_PM1_EN_OFFSET = ACPI_PM1_EVT_LEN // 2 # from PM1a_EVT_BLK (4.8.3.1: status at 0, then enable)
ACPI_PM1_CNT_OFFSET = ACPI_PM1A_CNT_BLK - ACPI_PM1A_EVT_BLK
# 4.8.3.1.2: PM1_EN's bits; the others are reserved and read 0
ACPI_PM1_EN_TMR_EN = bit(0)
ACPI_PM1_EN_GBL_EN = bit(5)
ACPI_PM1_EN_PWRBTN_EN = bit(8)
ACPI_PM1_EN_SLPBTN_EN = bit(9)
ACPI_PM1_EN_RTC_EN = bit(10)
ACPI_PM1_EN_PCIEXP_WAKE_DIS = bit(14)
ACPI_PM1_EN_DEFINED = (ACPI_PM1_EN_TMR_EN | ACPI_PM1_EN_GBL_EN | ACPI_PM1_EN_PWRBTN_EN
                       | ACPI_PM1_EN_SLPBTN_EN | ACPI_PM1_EN_RTC_EN | ACPI_PM1_EN_PCIEXP_WAKE_DIS)
# 4.8.3.2.1: PM1_CNT.  SCI_EN reads 1 (the FADT has no SMI_CMD:
# always in ACPI mode); GBL_RLS and SLP_EN are write-only and read 0.
ACPI_PM1_CNT_SCI_EN = bit(0)
ACPI_PM1_CNT_BM_RLD = bit(1)
ACPI_PM1_CNT_SLP_TYP_SHIFT = 10
ACPI_PM1_CNT_SLP_TYP = 0b111 << ACPI_PM1_CNT_SLP_TYP_SHIFT
ACPI_PM1_CNT_SLP_EN = bit(13)
ACPI_PM1_CNT_STORED = ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP
ACPI_PM1_CNT_SLEEP_BITS = ACPI_PM1_CNT_SLP_TYP | ACPI_PM1_CNT_SLP_EN
ACPI_S5_SLP_TYP = 5                       # the DSDT's \_S5 value: SLP_TYP of soft-off (7.4.2)
ACPI_PM1_CNT_S5_REQUEST = ACPI_S5_SLP_TYP << ACPI_PM1_CNT_SLP_TYP_SHIFT | ACPI_PM1_CNT_SLP_EN


# --- VMCS field encodings (SDM Vol. 3D appendix B) --------------------------
class Vmcs(enum.IntEnum):
    VIRTUAL_PROCESSOR_ID = 0x0000
    GUEST_ES_SELECTOR = 0x0800
    GUEST_CS_SELECTOR = 0x0802
    GUEST_SS_SELECTOR = 0x0804
    GUEST_DS_SELECTOR = 0x0806
    GUEST_FS_SELECTOR = 0x0808
    GUEST_GS_SELECTOR = 0x080A
    GUEST_LDTR_SELECTOR = 0x080C
    GUEST_TR_SELECTOR = 0x080E
    HOST_ES_SELECTOR = 0x0C00
    HOST_CS_SELECTOR = 0x0C02
    HOST_SS_SELECTOR = 0x0C04
    HOST_DS_SELECTOR = 0x0C06
    HOST_FS_SELECTOR = 0x0C08
    HOST_GS_SELECTOR = 0x0C0A
    HOST_TR_SELECTOR = 0x0C0C
    IO_BITMAP_A = 0x2000
    IO_BITMAP_B = 0x2002
    MSR_BITMAP = 0x2004
    EPT_POINTER = 0x201A
    GUEST_PHYSICAL_ADDRESS = 0x2400
    VMCS_LINK_POINTER = 0x2800
    GUEST_IA32_DEBUGCTL = 0x2802
    GUEST_IA32_PAT = 0x2804
    GUEST_IA32_EFER = 0x2806
    HOST_IA32_PAT = 0x2C00
    HOST_IA32_EFER = 0x2C02
    PIN_BASED_VM_EXEC_CONTROL = 0x4000
    CPU_BASED_VM_EXEC_CONTROL = 0x4002
    EXCEPTION_BITMAP = 0x4004
    VM_EXIT_CONTROLS = 0x400C
    VM_ENTRY_CONTROLS = 0x4012
    VM_ENTRY_INTR_INFO_FIELD = 0x4016
    VM_ENTRY_EXCEPTION_ERROR_CODE = 0x4018
    VM_ENTRY_INSTRUCTION_LEN = 0x401A
    SECONDARY_VM_EXEC_CONTROL = 0x401E
    VM_INSTRUCTION_ERROR = 0x4400
    VM_EXIT_REASON = 0x4402
    VM_EXIT_INTR_INFO = 0x4404
    IDT_VECTORING_INFO_FIELD = 0x4408
    IDT_VECTORING_ERROR_CODE = 0x440A
    VM_EXIT_INSTRUCTION_LEN = 0x440C
    GUEST_ES_LIMIT = 0x4800
    GUEST_CS_LIMIT = 0x4802
    GUEST_SS_LIMIT = 0x4804
    GUEST_DS_LIMIT = 0x4806
    GUEST_FS_LIMIT = 0x4808
    GUEST_GS_LIMIT = 0x480A
    GUEST_LDTR_LIMIT = 0x480C
    GUEST_TR_LIMIT = 0x480E
    GUEST_GDTR_LIMIT = 0x4810
    GUEST_IDTR_LIMIT = 0x4812
    GUEST_ES_AR_BYTES = 0x4814
    GUEST_CS_AR_BYTES = 0x4816
    GUEST_SS_AR_BYTES = 0x4818
    GUEST_DS_AR_BYTES = 0x481A
    GUEST_FS_AR_BYTES = 0x481C
    GUEST_GS_AR_BYTES = 0x481E
    GUEST_LDTR_AR_BYTES = 0x4820
    GUEST_TR_AR_BYTES = 0x4822
    GUEST_INTERRUPTIBILITY_INFO = 0x4824
    GUEST_ACTIVITY_STATE = 0x4826
    GUEST_SYSENTER_CS = 0x482A
    VMX_PREEMPTION_TIMER_VALUE = 0x482E
    CR0_GUEST_HOST_MASK = 0x6000
    CR4_GUEST_HOST_MASK = 0x6002
    CR0_READ_SHADOW = 0x6004
    CR4_READ_SHADOW = 0x6006
    EXIT_QUALIFICATION = 0x6400
    GUEST_CR0 = 0x6800
    GUEST_CR3 = 0x6802
    GUEST_CR4 = 0x6804
    GUEST_ES_BASE = 0x6806
    GUEST_CS_BASE = 0x6808
    GUEST_SS_BASE = 0x680A
    GUEST_DS_BASE = 0x680C
    GUEST_FS_BASE = 0x680E
    GUEST_GS_BASE = 0x6810
    GUEST_LDTR_BASE = 0x6812
    GUEST_TR_BASE = 0x6814
    GUEST_GDTR_BASE = 0x6816
    GUEST_IDTR_BASE = 0x6818
    GUEST_DR7 = 0x681A
    GUEST_RSP = 0x681C
    GUEST_RIP = 0x681E
    GUEST_RFLAGS = 0x6820
    GUEST_PENDING_DBG_EXCEPTIONS = 0x6822
    GUEST_SYSENTER_ESP = 0x6824
    GUEST_SYSENTER_EIP = 0x6826
    HOST_CR0 = 0x6C00
    HOST_CR3 = 0x6C02
    HOST_CR4 = 0x6C04
    HOST_FS_BASE = 0x6C06
    HOST_GS_BASE = 0x6C08
    HOST_TR_BASE = 0x6C0A
    HOST_GDTR_BASE = 0x6C0C
    HOST_IDTR_BASE = 0x6C0E
    HOST_RSP = 0x6C14
    HOST_RIP = 0x6C16


# --- VM-execution, exit and entry controls (SDM Vol. 3C 25.6, 25.7, 25.8) ---
PIN_EXTERNAL_INTERRUPT_EXITING = bit(0)
PIN_NMI_EXITING = bit(3)
PIN_VIRTUAL_NMIS = bit(5)                 # the guest's NMI blocking, and the NMI window (SDM Vol. 3C 25.6.1)
PIN_ACTIVATE_PREEMPTION_TIMER = bit(6)
PROC_INTERRUPT_WINDOW_EXITING_BIT = 2
PROC_NMI_WINDOW_EXITING_BIT = 22
PROC_HLT_EXITING = bit(7)
PROC_MWAIT_EXITING = bit(10)
PROC_RDPMC_EXITING = bit(11)
PROC_CR8_LOAD_EXITING = bit(19)
PROC_CR8_STORE_EXITING = bit(20)
PROC_USE_IO_BITMAPS = bit(25)
PROC_USE_MSR_BITMAPS = bit(28)
PROC_MONITOR_EXITING = bit(29)
PROC_ACTIVATE_SECONDARY_CONTROLS = bit(31)
PROC2_ENABLE_EPT = bit(1)
PROC2_ENABLE_RDTSCP = bit(3)
PROC2_ENABLE_VPID = bit(5)
PROC2_UNRESTRICTED_GUEST = bit(7)
EXIT_SAVE_DEBUG_CONTROLS = bit(2)
EXIT_HOST_ADDRESS_SPACE_SIZE = bit(9)
EXIT_ACK_INTERRUPT_ON_EXIT = bit(15)
EXIT_SAVE_IA32_PAT = bit(18)
EXIT_LOAD_IA32_PAT = bit(19)
EXIT_SAVE_IA32_EFER = bit(20)
EXIT_LOAD_IA32_EFER = bit(21)
ENTRY_LOAD_DEBUG_CONTROLS = bit(2)
ENTRY_IA32E_MODE_GUEST_BIT = 9
ENTRY_IA32E_MODE_GUEST = bit(ENTRY_IA32E_MODE_GUEST_BIT)
ENTRY_LOAD_IA32_PAT = bit(14)
ENTRY_LOAD_IA32_EFER = bit(15)
VMX_BASIC_TRUE_CONTROLS = bit(55)         # SDM Vol. 3D A.1: the TRUE_* capability MSRs exist

# VM-entry interruption information (SDM Vol. 3C 25.8.3, table 25-17)
INTR_INFO_VALID = bit(31)
INTR_INFO_DELIVER_ERROR_CODE_BIT = 11
INTR_INFO_DELIVER_ERROR_CODE = bit(INTR_INFO_DELIVER_ERROR_CODE_BIT)
INTR_TYPE_HARDWARE_EXCEPTION = 3 << 8
INTR_TYPE_EXTERNAL_INTERRUPT = 0 << 8
INTR_TYPE_NMI = 2 << 8
INTR_INFO_REINJECT_MASK = 0x80000FFF      # valid, error code, type, vector (bit 12 is undefined)
INTR_TYPE_MASK = 7 << 8
INTR_TYPE_SOFTWARE_INTERRUPT = 4 << 8     # these three need the VM-entry instruction
INTR_TYPE_PRIVILEGED_SOFTWARE_EXCEPTION = 5 << 8   # length when re-injected (SDM Vol. 3C 27.2.4)
INTR_TYPE_SOFTWARE_EXCEPTION = 6 << 8
VECTOR_DB = 1
VECTOR_UD = 6                             # invalid opcode
VECTOR_DF = 8                             # double fault
VECTOR_GP = 13                            # general protection

# Exit qualification for I/O instructions (SDM Vol. 3C table 28-5)
IO_QUAL_SIZE_MASK = 0x7                   # access size - 1
IO_QUAL_DIRECTION_IN_BIT = 3
IO_QUAL_DIRECTION_IN = bit(IO_QUAL_DIRECTION_IN_BIT)
IO_QUAL_STRING = bit(4)
IO_QUAL_PORT_SHIFT = 16

# Exit qualification for control-register accesses (SDM Vol. 3C table 28-3)
CR_QUAL_NUMBER_MASK = 0xF
CR_QUAL_ACCESS_SHIFT = 4
CR_QUAL_ACCESS_MASK = 0x3
CR_QUAL_ACCESS_MOV_TO_CR = 0
CR_QUAL_ACCESS_MOV_FROM_CR = 1
CR_QUAL_REGISTER_SHIFT = 8
CR_QUAL_REGISTER_MASK = 0xF
CR_NUMBER_CR4 = 4                         # the qualification's control-register numbers
CR_NUMBER_CR8 = 8
GPR_INDEX_RSP = 4                         # SDM Vol. 2A table 2-2: the register numbers
# Segment access rights: the DPL (SDM Vol. 3C 25.4.1); SS.DPL is the CPL
AR_DPL_SHIFT = 5
AR_DPL_MASK = 0x3

EXIT_REASON_ENTRY_FAILURE = bit(31)       # SDM Vol. 3C 25.9.1
EXIT_REASON_BASIC_MASK = 0xFFFF
VMCS_LINK_POINTER_NONE = 0xFFFFFFFFFFFFFFFF
GUEST_ACTIVITY_ACTIVE = 0
INTERRUPTIBILITY_STI_MOV_SS = 0x3         # SDM Vol. 3C table 25-3: blocking by STI, by MOV SS
INTERRUPTIBILITY_KEEP = ~INTERRUPTIBILITY_STI_MOV_SS & 0xFFFFFFFF
INTERRUPTIBILITY_NMI_BLOCKERS = 0xB        # blocking by STI, by MOV SS, by NMI


class ExitReason(enum.IntEnum):
    """Basic exit reasons, SDM Vol. 3D appendix C."""

    EXCEPTION_OR_NMI = 0
    EXTERNAL_INTERRUPT = 1
    TRIPLE_FAULT = 2
    INIT_SIGNAL = 3
    STARTUP_IPI = 4
    IO_SMI = 5
    OTHER_SMI = 6
    INTERRUPT_WINDOW = 7
    NMI_WINDOW = 8
    TASK_SWITCH = 9
    CPUID = 10
    GETSEC = 11
    HLT = 12
    INVD = 13
    INVLPG = 14
    RDPMC = 15
    RDTSC = 16
    RSM = 17
    VMCALL = 18
    VMCLEAR = 19
    VMLAUNCH = 20
    VMPTRLD = 21
    VMPTRST = 22
    VMREAD = 23
    VMRESUME = 24
    VMWRITE = 25
    VMXOFF = 26
    VMXON = 27
    CR_ACCESS = 28
    DR_ACCESS = 29
    IO_INSTRUCTION = 30
    RDMSR = 31
    WRMSR = 32
    ENTRY_FAILURE_GUEST_STATE = 33
    ENTRY_FAILURE_MSR_LOADING = 34
    MWAIT = 36
    MONITOR_TRAP_FLAG = 37
    MONITOR = 39
    PAUSE = 40
    ENTRY_FAILURE_MACHINE_CHECK = 41
    TPR_BELOW_THRESHOLD = 43
    APIC_ACCESS = 44
    VIRTUALIZED_EOI = 45
    GDTR_IDTR_ACCESS = 46
    LDTR_TR_ACCESS = 47
    EPT_VIOLATION = 48
    EPT_MISCONFIG = 49
    INVEPT = 50
    RDTSCP = 51
    PREEMPTION_TIMER = 52
    INVVPID = 53
    WBINVD = 54
    XSETBV = 55
    APIC_WRITE = 56
    RDRAND = 57
    INVPCID = 58
    VMFUNC = 59
    ENCLS = 60
    RDSEED = 61
    PML_FULL = 62
    XSAVES = 63
    XRSTORS = 64


EXIT_REASON_COUNT = max(ExitReason) + 1

# Instructions of VMX operation a guest might try: it sees no VMX (CPUID hides
# it), so each gets the #UD a CPU without VMX raises (SDM Vol. 3C 25.1.2).
VMX_INSTRUCTION_EXITS = (
    ExitReason.VMCLEAR, ExitReason.VMLAUNCH, ExitReason.VMPTRLD,
    ExitReason.VMPTRST, ExitReason.VMREAD, ExitReason.VMRESUME,
    ExitReason.VMWRITE, ExitReason.VMXOFF, ExitReason.VMXON,
    ExitReason.INVEPT, ExitReason.INVVPID, ExitReason.VMFUNC,
)

EXCEPTION_NAMES = (
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check",
    "#MC machine check", "#XM SIMD error", "#VE virtualization exception",
    "#CP control protection",
) + tuple(f"reserved {v}" for v in range(22, 32))
EXCEPTIONS_WITH_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17, 21})


# --- AMD SVM (AMD64 APM Vol. 2, chapter 15 and appendix B) -----------------
VM_CR = 0xC0010114                        # APM 15.30.1
VM_CR_SVMDIS = bit(4)
VM_HSAVE_PA = 0xC0010117                  # APM 15.30.4
SVM_FIRST_GUEST_ASID = 1                  # APM 15.16: ASID 0 is the host's
SVM_TLB_CONTROL_NOTHING = 0               # APM 15.16.1
SVM_TLB_CONTROL_FLUSH_GUEST = 3
SVM_EVENT_VALID = bit(31)                 # APM 15.20, EVENTINJ
SVM_INTERRUPT_SHADOW_BIT = 0              # APM 15.21.5: the guest is in an STI or MOV SS shadow
SVM_INTERRUPT_SHADOW = bit(SVM_INTERRUPT_SHADOW_BIT)
SVM_EVENT_ERROR_VALID = bit(11)
SVM_EVENT_TYPE_EXCEPTION = 3 << 8
SVM_EVENT_TYPE_INTR = 0 << 8
# V_INTR word (VMCB 0x60, APM 15.21.4): a virtual interrupt request that
# the guest takes when its RFLAGS.IF and shadow allow; with the VINTR
# intercept that moment is a #VMEXIT, the interrupt window.
SVM_V_IRQ_BIT = 8
SVM_V_INTR_PRIO_HIGHEST = 0xF << 16
SVM_V_IGN_TPR = bit(20)
SVM_V_IRQ_WINDOW = bit(SVM_V_IRQ_BIT) | SVM_V_INTR_PRIO_HIGHEST | SVM_V_IGN_TPR
SVM_V_IRQ_WINDOW_CLEAR = ~(bit(SVM_V_IRQ_BIT) | SVM_V_INTR_PRIO_HIGHEST | SVM_V_IGN_TPR) & 0xFFFFFFFF
SVM_INTERCEPT_VINTR_BIT = 4               # INTERCEPT_MISC1
SVM_INTERCEPT_IRET_BIT = 20
SVM_EVENT_TYPE_NMI = 2 << 8
SVM_V_TPR_MASK = 0xF                      # V_INTR bits 3:0: the guest's CR8
SVM_INTERCEPT_CR8_WRITE_BIT = 16 + 8      # INTERCEPT_CR bits 31:16: writes of CR0-CR15
SVM_EXITINFO1_MOV_CR_BIT = 63             # APM 15.33.1 (decode assists): a MOV CR; bits 3:0 its GPR
SVM_EXITINFO1_GPR_MASK = 0xF
SVM_V_TPR_CLEAR = ~SVM_V_TPR_MASK & 0xFFFFFFFF
SVM_IOIO_IN = bit(0)                      # APM 15.10.2, EXITINFO1 of IOIO
SVM_IOIO_STRING = bit(2)
SVM_IOIO_SIZE_SHIFT = 4                   # bits 4-6: 8-, 16-, 32-bit access, one-hot
SVM_IOIO_SIZE_MASK = 0x7
SVM_IOIO_PORT_SHIFT = 16
SVM_MSR_WRITE = 1                         # APM 15.11, EXITINFO1 of MSR
SVM_DR6_DEFAULT = 0xFFFF0FF0
# Intercept bits (APM appendix B, table B-1)
SVM_INTERCEPT_EXCEPTION_DF = bit(VECTOR_DF)
SVM_INTERCEPT_NMI = bit(1)
SVM_INTERCEPT_RDPMC = bit(15)
SVM_INTERCEPT_CPUID = bit(18)
SVM_INTERCEPT_INVD = bit(22)
SVM_INTERCEPT_HLT = bit(24)
SVM_INTERCEPT_INVLPGA = bit(26)
SVM_INTERCEPT_IOIO_PROT = bit(27)
SVM_INTERCEPT_MSR_PROT = bit(28)
SVM_INTERCEPT_SHUTDOWN = bit(31)
SVM_INTERCEPT_VMRUN = bit(0)
SVM_INTERCEPT_VMMCALL = bit(1)
SVM_INTERCEPT_VMLOAD = bit(2)
SVM_INTERCEPT_VMSAVE = bit(3)
SVM_INTERCEPT_STGI = bit(4)
SVM_INTERCEPT_CLGI = bit(5)
SVM_INTERCEPT_SKINIT = bit(6)
SVM_INTERCEPT_MONITOR = bit(10)
SVM_INTERCEPT_MWAIT = bit(11)
SVM_INTERCEPT_MWAIT_CONDITIONAL = bit(12)
SVM_INTERCEPT_XSETBV = bit(13)
SVM_V_INTR_MASKING = bit(24)              # in the V_INTR word at VMCB 0x60
SVM_NP_ENABLE = bit(0)
SVM_EXITCODE_TABLE_SIZE = 0x90            # exit codes 0x00-0x8F are dispatched by table
SVM_EXIT_COUNTER_NPF = SVM_EXITCODE_TABLE_SIZE      # NPF's counter: past the table's codes
SVM_EXIT_COUNTER_NPF_OFFSET = 8 * SVM_EXIT_COUNTER_NPF   # in bytes (keystone drops "* 8" after a symbol)
SVM_EXIT_COUNTER_NAMES = SVM_EXIT_COUNTER_NPF + 1   # the name table: the dispatch table's codes, then NPF
SVM_EXITCODE_INVALID_LOW = 0xFFFFFFFF     # VMRUN failed: -1, of which QEMU writes the low half
# Fixed instruction lengths for CPUs without NRIPS (QEMU's TCG): the
# hypervisor accepts these instructions without prefixes only.
SVM_LENGTH_CPUID = 2
SVM_LENGTH_HLT = 1
SVM_LENGTH_VMMCALL = 3
SVM_LENGTH_MSR = 2
SVM_LENGTH_INVD = 2
SVM_LENGTH_XSETBV = 3


class Vmcb(enum.IntEnum):
    """VMCB offsets, AMD APM Vol. 2 appendix B, tables B-1 and B-2."""

    INTERCEPT_CR = 0x000
    INTERCEPT_DR = 0x004
    INTERCEPT_EXCEPTIONS = 0x008
    INTERCEPT_MISC1 = 0x00C
    INTERCEPT_MISC2 = 0x010
    IOPM_BASE_PA = 0x040
    MSRPM_BASE_PA = 0x048
    TSC_OFFSET = 0x050
    GUEST_ASID = 0x058
    TLB_CONTROL = 0x05C
    V_INTR = 0x060
    INTERRUPT_SHADOW = 0x068
    EXITCODE = 0x070
    EXITINFO1 = 0x078
    EXITINFO2 = 0x080
    EXITINTINFO = 0x088
    NP_CONTROL = 0x090
    EVENTINJ = 0x0A8
    N_CR3 = 0x0B0
    NRIP = 0x0C8
    GUEST_INSTRUCTION_BYTES_FETCHED = 0x0D0  # decode assists (APM 15.8.4): how many of the next 15
    GUEST_INSTRUCTION_BYTES = 0x0D1          # bytes at the guest's RIP, fetched with a nested page fault
    ES = 0x400
    CS = 0x410
    SS = 0x420
    DS = 0x430
    FS = 0x440
    GS = 0x450
    GDTR = 0x460
    LDTR = 0x470
    IDTR = 0x480
    TR = 0x490
    CPL = 0x4CB
    EFER = 0x4D0
    CR4 = 0x548
    CR3 = 0x550
    CR0 = 0x558
    DR7 = 0x560
    DR6 = 0x568
    RFLAGS = 0x570
    RIP = 0x578
    RSP = 0x5D8
    RAX = 0x5F8
    STAR = 0x600
    LSTAR = 0x608
    CSTAR = 0x610
    SFMASK = 0x618
    KERNEL_GS_BASE = 0x620
    SYSENTER_CS = 0x628
    SYSENTER_ESP = 0x630
    SYSENTER_EIP = 0x638
    CR2 = 0x640
    G_PAT = 0x668


# A VMCB segment: selector (2), attributes (2), limit (4), base (8)
VMCB_SEGMENT_SELECTOR = 0
VMCB_SEGMENT_ATTRIBUTES = 2
VMCB_SEGMENT_LIMIT = 4
VMCB_SEGMENT_BASE = 8
SVM_ATTRIBUTE_L = bit(9)                   # VMCB segment attributes: AR bits 15:12 moved to 11:8
SVM_ATTRIBUTE_DB = bit(10)


class SvmExit(enum.IntEnum):
    """#VMEXIT codes, AMD APM Vol. 2 appendix C."""

    WRITE_CR8 = 0x18
    EXCEPTION_DF = 0x48
    INTR = 0x60
    NMI = 0x61
    SMI = 0x62
    INIT = 0x63
    VINTR = 0x64
    CR0_SEL_WRITE = 0x65
    RDTSC = 0x6E
    RDPMC = 0x6F
    PUSHF = 0x70
    POPF = 0x71
    CPUID = 0x72
    RSM = 0x73
    IRET = 0x74
    SWINT = 0x75
    INVD = 0x76
    PAUSE = 0x77
    HLT = 0x78
    INVLPG = 0x79
    INVLPGA = 0x7A
    IOIO = 0x7B
    MSR = 0x7C
    TASK_SWITCH = 0x7D
    FERR_FREEZE = 0x7E
    SHUTDOWN = 0x7F
    VMRUN = 0x80
    VMMCALL = 0x81
    VMLOAD = 0x82
    VMSAVE = 0x83
    STGI = 0x84
    CLGI = 0x85
    SKINIT = 0x86
    RDTSCP = 0x87
    ICEBP = 0x88
    WBINVD = 0x89
    MONITOR = 0x8A
    MWAIT = 0x8B
    MWAIT_CONDITIONAL = 0x8C
    XSETBV = 0x8D
    RDPRU = 0x8E
    EFER_WRITE_TRAP = 0x8F
    NPF = 0x400
    INVALID = -1


# SVM instructions a guest might try: it sees no SVM, so each gets #UD.
SVM_INSTRUCTION_EXITS = (SvmExit.VMRUN, SvmExit.VMLOAD, SvmExit.VMSAVE, SvmExit.STGI,
                         SvmExit.CLGI, SvmExit.SKINIT, SvmExit.INVLPGA)


def svm_exit_name(code: int) -> str:
    if code in SvmExit._value2member_map_:
        return SvmExit(code).name
    if 0x40 <= code < 0x60:
        return f"EXCEPTION_{code - 0x40}"
    if code < 0x40:
        return ("READ_CR", "WRITE_CR", "READ_DR", "WRITE_DR")[code >> 4] + str(code & 0xF)
    return "UNKNOWN"


def exit_counter_names(backend: str) -> list[str]:
    """The name of each of a guest's exit counters: the dispatched exits',
    and on SVM the nested page fault's after them (SVM_EXIT_COUNTER_NPF)."""
    return exit_names(backend) + (["NPF"] if backend == "svm" else [])


def exit_names(backend: str) -> list[str]:
    """The name of every exit the backend dispatches by table, by number."""
    if backend == "vmx":
        return [ExitReason(r).name if r in ExitReason._value2member_map_ else "UNKNOWN"
                for r in range(EXIT_REASON_COUNT)]
    return [svm_exit_name(code) for code in range(SVM_EXITCODE_TABLE_SIZE)]


def asm_constants() -> dict[str, int]:
    """Every constant above that the assembly may use, by its Python name."""
    names: dict[str, int] = {}
    for key, value in globals().items():
        if key.isupper() and isinstance(value, int) and not isinstance(value, bool):
            names[key] = value
    for member in Vmcs:
        names[f"VMCS_{member.name}"] = int(member)
    for member in ExitReason:
        names[f"EXIT_{member.name}"] = int(member)
    for member in Vmcb:
        names[f"VMCB_{member.name}"] = int(member)
    for member in SvmExit:
        names[f"SVM_EXIT_{member.name}"] = int(member) & (1 << 64) - 1
    return names
