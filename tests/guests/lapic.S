# A multiboot test kernel for the virtual PC's local APIC, checked as an
# OS uses it: CPUID and IA32_APIC_BASE, the registers as firmware leaves
# them, TPR and PPR, self-IPIs by priority with EOIs, the ESR, the timer
# in one-shot, periodic and TSC-deadline modes against the TSC calibrated
# on PIT channel 2, an NMI sent to itself, LINT0 gating the 8259A, and
# the I/O APIC delivering the PIT's IRQ 0 from its pin 2 and COM1's IRQ 4
# from its pin 4.
# Every APIC access is MMIO (paging off, 32-bit protected mode): the
# hypervisor decodes each one.  Prints a line per check and ends through
# port 0xF4: PC_SUCCESS, or PC_FAILURE + the first failed check.
# With UNDECODABLE defined it makes one access the decoder refuses.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set APIC, 0xFEE00000
    .set APIC_ID, APIC + 0x20
    .set APIC_VERSION, APIC + 0x30
    .set APIC_TPR, APIC + 0x80
    .set APIC_PPR, APIC + 0xA0
    .set APIC_EOI, APIC + 0xB0
    .set APIC_SVR, APIC + 0xF0
    .set APIC_ISR2, APIC + 0x120              # vectors 0x40-0x5F
    .set APIC_IRR2, APIC + 0x220
    .set APIC_ESR, APIC + 0x280
    .set APIC_ICR_LOW, APIC + 0x300
    .set APIC_ICR_HIGH, APIC + 0x310
    .set APIC_LVT_TIMER, APIC + 0x320
    .set APIC_LVT_LINT0, APIC + 0x350
    .set APIC_LVT_LINT1, APIC + 0x360
    .set APIC_TIMER_INITIAL, APIC + 0x380
    .set APIC_TIMER_CURRENT, APIC + 0x390
    .set APIC_TIMER_DIVIDE, APIC + 0x3E0
    .set ICR_SELF_FIXED, 0x40000              # shorthand self, fixed
    .set ICR_SELF_NMI, 0x40400                # shorthand self, NMI
    .set IA32_APIC_BASE, 0x1B
    .set IA32_TSC_DEADLINE, 0x6E0
    .set VECTOR_IPI_LOW, 0x41
    .set VECTOR_IPI_HIGH, 0x81
    .set VECTOR_TIMER, 0x50
    .set VECTOR_PIC, 0x20
    .set TIMER_ONE_SHOT, 0
    .set TIMER_PERIODIC, 0x20000
    .set TIMER_TSC_DEADLINE, 0x40000
    .set DIVIDE_BY_1, 0xB
    .set PERIODIC_TICKS, 20
    .set PERIODIC_MS, 10                      # 100 Hz: roomy enough beside busy neighbours
    .set IOAPIC_SELECT, 0xFEC00000
    .set IOAPIC_WINDOW, 0xFEC00010
    .set VECTOR_IOAPIC, 0x30
    .set VECTOR_COM1, 0x33

    .globl _start
_start:
    pc_start
    mov ecx, VECTOR_IPI_LOW
    mov eax, offset ipi_low_handler
    call set_gate
    mov ecx, VECTOR_IPI_HIGH
    mov eax, offset ipi_high_handler
    call set_gate
    mov ecx, VECTOR_TIMER
    mov eax, offset timer_handler
    call set_gate
    mov ecx, 2
    mov eax, offset nmi_handler
    call set_gate
    mov ecx, VECTOR_PIC
    mov eax, offset pic_handler
    call set_gate
    call calibrate_tsc                        # pc.inc
    mov [tsc_khz], eax

    # 1-3: CPUID and the APIC's MSR
    mov eax, 1
    cpuid
    mov [cpuid_1_ecx], ecx
    mov eax, edx
    and eax, 0x200
    cmp eax, 0x200
    check 1, e, "CPUID.1:EDX.APIC is set"
    mov eax, [cpuid_1_ecx]
    and eax, 0x1200000                        # TSC-deadline and x2APIC
    cmp eax, 0x1000000
    check 2, e, "CPUID.1:ECX: TSC-deadline set, x2APIC clear"
    mov eax, 6
    cpuid
    test eax, 4
    check 3, nz, "CPUID.6:EAX.ARAT is set"
    mov ecx, IA32_APIC_BASE
    rdmsr
    cmp eax, 0xFEE00900
    check 4, e, "IA32_APIC_BASE: 0xFEE00000, BSP, enabled"

    # 5-7: the registers as firmware leaves them
    mov eax, [APIC_ID]
    mov ebx, [APIC_VERSION]
    cmp eax, 0
    check 5, e, "APIC ID 0"
    cmp ebx, 0x50014
    check 6, e, "version 0x14 with six LVT entries"
    mov eax, [APIC_SVR]
    cmp eax, 0x1FF
    jne 1f
    mov eax, [APIC_LVT_LINT0]
    cmp eax, 0x700
    jne 1f
    mov eax, [APIC_LVT_LINT1]
    cmp eax, 0x400
1:  check 7, e, "SVR enabled (0x1FF), LINT0 ExtINT, LINT1 NMI"

    # 8: TPR and PPR
    mov dword ptr [APIC_TPR], 0x20
    mov eax, [APIC_PPR]
    mov dword ptr [APIC_TPR], 0
    cmp eax, 0x20
    check 8, e, "PPR follows TPR"

    # 9-10: a self-IPI, in service in its handler
    sti
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_FIXED | VECTOR_IPI_LOW
    nop
    cli
    cmp dword ptr [low_count], 1
    check 9, e, "a fixed self-IPI arrives"
    cmp dword ptr [low_isr], 2                # vector 0x41: bit 1 of ISR 0x40-0x5F
    check 10, e, "its vector is in service in the handler"
    mov eax, [APIC_ICR_LOW]
    test eax, 0x1000
    check 11, z, "the ICR's delivery status reads idle"

    # 12-13: the TPR holds a vector of its class or below back
    mov dword ptr [APIC_TPR], 0x40
    sti
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_FIXED | VECTOR_IPI_LOW
    nop
    nop
    cli
    cmp dword ptr [low_count], 1
    jne 2f
    mov eax, [APIC_IRR2]
    cmp eax, 2
2:  check 12, e, "TPR 0x40 keeps vector 0x41 waiting in the IRR"
    sti
    mov dword ptr [APIC_TPR], 0
    nop
    cli
    cmp dword ptr [low_count], 2
    check 13, e, "TPR 0 lets it through"

    # 14: priorities: two waiting vectors arrive highest first
    mov dword ptr [order], 0
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_FIXED | VECTOR_IPI_LOW
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_FIXED | VECTOR_IPI_HIGH
    sti
    nop
    nop
    cli
    cmp dword ptr [order], 0x8141             # high first, then low
    check 14, e, "vector 0x81 before 0x41"

    # 15: an illegal vector is refused with the ESR's send-illegal bit
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_FIXED | 5
    mov dword ptr [APIC_ESR], 0
    mov eax, [APIC_ESR]
    and eax, 0x20
    cmp eax, 0x20
    check 15, e, "an IPI of vector 5 sets ESR bit 5"

    # 16-17: the one-shot timer, 2 ms, divide by 1
    mov dword ptr [APIC_TIMER_DIVIDE], DIVIDE_BY_1
    mov dword ptr [APIC_LVT_TIMER], TIMER_ONE_SHOT | VECTOR_TIMER
    mov dword ptr [timer_count], 0
    mov eax, [tsc_khz]                        # 400 ms: longer than a neighbour's slice,
    imul eax, eax, 400                        # which may come between two reads
    mov [APIC_TIMER_INITIAL], eax
    mov ebx, [APIC_TIMER_CURRENT]
    mov eax, [tsc_khz]
    call delay_cycles
    mov ecx, [APIC_TIMER_CURRENT]
    test ecx, ecx
    jz 2f
    cmp ecx, ebx
2:    check 16, b, "the current count counts down"
    mov eax, [tsc_khz]                        # now 2 ms
    add eax, eax
    mov [APIC_TIMER_INITIAL], eax
    sti
3:  hlt
    cmp dword ptr [timer_count], 1
    jb 3b
    mov eax, [tsc_khz]                        # and only once
    imul eax, eax, 5
    call delay_cycles
    cli
    cmp dword ptr [timer_count], 1
    jne 4f
    mov eax, [APIC_TIMER_CURRENT]
    cmp eax, 0
4:  check 17, e, "a one-shot fires once, its count then reads 0"

    # 18: the periodic timer, 10 ms, twenty ticks against the TSC (within 5%)
    mov dword ptr [APIC_LVT_TIMER], TIMER_PERIODIC | VECTOR_TIMER
    mov dword ptr [timer_count], 0
    mov eax, [tsc_khz]
    imul eax, eax, PERIODIC_MS
    mov [APIC_TIMER_INITIAL], eax
    sti
5:  hlt
    cmp dword ptr [timer_count], 1
    jb 5b
    rdtsc
    mov [start_tsc], eax
    mov [start_tsc + 4], edx
6:  hlt
    cmp dword ptr [timer_count], PERIODIC_TICKS + 1
    jb 6b
    rdtsc
    cli
    mov dword ptr [APIC_TIMER_INITIAL], 0     # stop it
    sub eax, [start_tsc]
    sbb edx, [start_tsc + 4]
    mov ecx, PERIODIC_TICKS * PERIODIC_MS
    div ecx                                   # cycles per millisecond: tsc_khz
    push eax
    lea esi, [text_periodic]
    call print_labelled
    pop eax
    mov ecx, [tsc_khz]
    sub eax, ecx
    jns 7f
    neg eax
7:  imul eax, eax, 20                         # within 5%: a busy neighbour delays a wake-up
    cmp eax, ecx
    check 18, be, "the periodic timer ticks at 100 Hz of the TSC, the CPU asleep in HLT"

    # 19-20: TSC-deadline mode
    mov dword ptr [APIC_LVT_TIMER], TIMER_TSC_DEADLINE | VECTOR_TIMER
    mov dword ptr [timer_count], 0
    rdtsc
    mov ecx, [tsc_khz]
    imul ecx, ecx, 3                          # 3 ms ahead
    add eax, ecx
    adc edx, 0
    mov [start_tsc], eax
    mov [start_tsc + 4], edx
    mov ecx, IA32_TSC_DEADLINE
    wrmsr
    sti
8:  hlt
    cmp dword ptr [timer_count], 1
    jb 8b
    cli
    rdtsc
    cmp edx, [start_tsc + 4]
    jne 9f
    cmp eax, [start_tsc]
9:  check 19, ae, "a TSC deadline fires once the TSC reaches it"
    mov ecx, IA32_TSC_DEADLINE
    rdmsr
    or eax, edx
    check 20, z, "and the MSR reads 0 after"

    # 21-22: an NMI sent to itself, taken with interrupts off; the handler
    # sends a second one, which waits for its IRET (NMI blocking)
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_NMI
    nop
    cmp dword ptr [nmi_count], 1
    jb 9f
    sti                                       # an exit or two for the second one to come
    mov eax, [tsc_khz]
    call delay_cycles
    cli
    cmp dword ptr [nmi_count], 2
9:  check 21, e, "an NMI to itself arrives with IF clear, and a second one sent in its handler"
    cmp dword ptr [nmi_depth_max], 1
    check 22, e, "the second NMI waits for the first one's IRET"

    # 23-24: the 8259A reaches the CPU through LINT0 (ExtINT), not when masked
    mov dword ptr [APIC_LVT_TIMER], 0x10000   # timer off
    call pic_start
    mov dword ptr [pic_count], 0
    sti
10: hlt
    cmp dword ptr [pic_count], 2
    jb 10b
    cli
    check 23, ae, "the PIT's IRQ 0 arrives through LINT0 in ExtINT mode"
    mov dword ptr [APIC_LVT_LINT0], 0x10700   # masked
    mov dword ptr [pic_count], 0
    sti
    mov eax, [tsc_khz]
    imul eax, eax, 30                         # three ticks' worth
    call delay_cycles
    cli
    cmp dword ptr [pic_count], 0
    check 24, e, "none while LINT0 is masked"

    # 25-26: hostile accesses: read-only registers keep their values,
    # unaligned and reserved offsets read 0
    mov dword ptr [APIC_VERSION], 0xFFFFFFFF
    mov dword ptr [APIC_PPR], 0xFFFFFFFF
    mov eax, [APIC_VERSION]
    cmp eax, 0x50014
    check 25, e, "writes to read-only registers change nothing"
    mov eax, [APIC + 0x24]
    mov ebx, [APIC + 0x400]
    or eax, ebx
    check 26, z, "unaligned and reserved offsets read 0"
.ifdef UNDECODABLE
    lock or dword ptr [APIC_TPR], 0           # not an instruction the decoder takes
.endif

    # 27-30: the I/O APIC: its registers, and the PIT's IRQ 0 on pin 2
    mov dword ptr [IOAPIC_SELECT], 0
    mov eax, [IOAPIC_WINDOW]
    mov dword ptr [IOAPIC_SELECT], 1
    mov ebx, [IOAPIC_WINDOW]
    cmp eax, 0x01000000
    jne 11f
    cmp ebx, 0x00170020
11: check 27, e, "I/O APIC ID 1, version 0x20 with 24 entries"
    mov dword ptr [IOAPIC_SELECT], 0x14       # pin 2, low dword
    mov eax, [IOAPIC_WINDOW]
    cmp eax, 0x10000
    check 28, e, "its entries start masked"
    mov ecx, VECTOR_IOAPIC
    mov eax, offset ioapic_handler
    call set_gate
    mov dword ptr [IOAPIC_SELECT], 0x15       # destination: APIC 0
    mov dword ptr [IOAPIC_WINDOW], 0
    mov dword ptr [IOAPIC_SELECT], 0x14       # fixed, edge, physical, unmasked
    mov dword ptr [IOAPIC_WINDOW], VECTOR_IOAPIC
    mov dword ptr [ioapic_count], 0
    sti
12: hlt
    cmp dword ptr [ioapic_count], 3
    jb 12b
    cli
    check 29, ae, "the PIT's ticks arrive through I/O APIC pin 2 (LINT0 masked)"
    mov dword ptr [IOAPIC_WINDOW], VECTOR_IOAPIC | 0x10000
    sti                                       # a tick the APIC took before the mask
    nop
    cli
    mov dword ptr [ioapic_count], 0
    sti
    mov eax, [tsc_khz]
    imul eax, eax, 30
    call delay_cycles
    cli
    cmp dword ptr [ioapic_count], 0
    check 30, e, "none once the entry is masked"

    # 31: COM1's THRE interrupt (IRQ 4) through I/O APIC pin 4
    mov ecx, VECTOR_COM1
    mov eax, offset com1_handler
    call set_gate
    mov dword ptr [IOAPIC_SELECT], 0x19       # pin 4, high dword: APIC 0
    mov dword ptr [IOAPIC_WINDOW], 0
    mov dword ptr [IOAPIC_SELECT], 0x18       # pin 4, low dword: fixed, edge, unmasked
    mov dword ptr [IOAPIC_WINDOW], VECTOR_COM1
    mov dx, 0x3FC                             # MCR: OUT2 lets IRQ 4 out, DTR, RTS
    mov al, 0x0B
    out dx, al
    mov dx, 0x3F9                             # IER: transmitter holding register empty
    mov al, 0x02
    out dx, al
    sti
    nop
    cli
    mov dx, 0x3F9
    xor eax, eax
    out dx, al
    cmp dword ptr [com1_count], 1
    check 31, e, "COM1's THRE interrupt arrives through I/O APIC pin 4"

    mov al, PC_SUCCESS
    jmp pc_exit

# pic_start: the 8259A at 0x20, IRQ 0 alone unmasked; PIT channel 0 at 100 Hz.
pic_start:
    mov al, 0x11
    out 0x20, al
    mov al, VECTOR_PIC
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xFE
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov al, 11932 & 0xFF
    out 0x40, al
    mov al, 11932 >> 8
    out 0x40, al
    ret

ipi_low_handler:
    push eax
    inc dword ptr [low_count]
    mov eax, [APIC_ISR2]
    mov [low_isr], eax
    shl dword ptr [order], 8
    or dword ptr [order], VECTOR_IPI_LOW
    mov dword ptr [APIC_EOI], 0
    pop eax
    iret
ipi_high_handler:
    shl dword ptr [order], 8
    or dword ptr [order], VECTOR_IPI_HIGH
    mov dword ptr [APIC_EOI], 0
    iret
timer_handler:
    inc dword ptr [timer_count]
    mov dword ptr [APIC_EOI], 0
    iret
nmi_handler:
    push eax
    inc dword ptr [nmi_count]
    inc dword ptr [nmi_depth]
    mov eax, [nmi_depth]
    cmp eax, [nmi_depth_max]
    jbe 1f
    mov [nmi_depth_max], eax
1:  cmp dword ptr [nmi_count], 1
    jne 2f
    mov dword ptr [APIC_ICR_LOW], ICR_SELF_NMI
    nop
    nop
2:  dec dword ptr [nmi_depth]
    pop eax
    iret
com1_handler:
    push eax
    push edx
    inc dword ptr [com1_count]
    mov dx, 0x3FA                             # IIR: reading it ends the THRE interrupt
    in al, dx
    mov dword ptr [APIC_EOI], 0
    pop edx
    pop eax
    iret
ioapic_handler:
    inc dword ptr [ioapic_count]
    mov dword ptr [APIC_EOI], 0
    iret
pic_handler:
    push eax
    inc dword ptr [pic_count]
    mov al, 0x20
    out 0x20, al
    pop eax
    iret

    .section .rodata
text_periodic: .asciz "APIC timer cycles per ms "
    .data
    .balign 4
tsc_khz:     .long 0
low_count:   .long 0
low_isr:     .long 0
order:       .long 0
timer_count: .long 0
nmi_count:   .long 0
pic_count:   .long 0
start_tsc:   .quad 0
cpuid_1_ecx: .long 0
ioapic_count: .long 0
com1_count:  .long 0
nmi_depth:   .long 0
nmi_depth_max: .long 0
