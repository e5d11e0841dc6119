# A multiboot test kernel for the virtual PC's 8259A pair and 8254 timer,
# checked as an OS uses them: the 8259A initialized (ICW1-4) and probed
# (IMR read-back, IRR/ISR through OCW3), the TSC calibrated against PIT
# channel 2 through port 0x61, channel 0 ticking IRQ 0 at 100 Hz with
# non-specific, specific and automatic EOIs, the STI shadow, the poll
# command, latch and read-back commands, and HLT sleeping until the tick.
# Prints a line per check and ends through port 0xF4: PC_SUCCESS, or
# PC_FAILURE + the first failed check.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set PIC_MASTER_CMD, 0x20
    .set PIC_MASTER_DATA, 0x21
    .set PIC_SLAVE_CMD, 0xA0
    .set PIC_SLAVE_DATA, 0xA1
    .set OCW3_READ_IRR, 0x0A
    .set OCW3_READ_ISR, 0x0B
    .set OCW3_POLL, 0x0C
    .set EOI, 0x20
    .set SPECIFIC_EOI_IRQ0, 0x60
    .set PIT_CHANNEL0, 0x40
    .set PIT_CHANNEL2, 0x42
    .set PIT_COMMAND, 0x43
    .set PORT_B, 0x61
    .set PIT_HZ, 1193182
    .set TICK_COUNT, 11932                    # 100 Hz
    .set TICK_MS, 10
    .set CALIBRATION_COUNT, 11932             # 10 ms
    .set VECTOR_BASE, 0x20
    .set TICKS_MEASURED, 20

    .globl _start
_start:
    pc_start
    mov ecx, VECTOR_BASE
    mov eax, offset irq0_handler
    call set_gate

    # 1: the 8259A pair moved to 0x20/0x28 as Linux and every PC OS does
    mov al, 0x11
    out PIC_MASTER_CMD, al
    out PIC_SLAVE_CMD, al
    mov al, VECTOR_BASE
    out PIC_MASTER_DATA, al
    mov al, VECTOR_BASE + 8
    out PIC_SLAVE_DATA, al
    mov al, 4
    out PIC_MASTER_DATA, al
    mov al, 2
    out PIC_SLAVE_DATA, al
    mov al, 1
    out PIC_MASTER_DATA, al
    out PIC_SLAVE_DATA, al
    in al, PIC_MASTER_DATA                    # ICW1 cleared the IMR
    test al, al
    check 1, z, "ICW1 clears the IMR"
    mov al, 0xFF
    out PIC_MASTER_DATA, al
    out PIC_SLAVE_DATA, al
    in al, PIC_MASTER_DATA
    cmp al, 0xFF
    check 2, e, "the IMR reads back what was written (Linux's probe)"
    mov al, OCW3_READ_ISR
    out PIC_MASTER_CMD, al
    in al, PIC_MASTER_CMD
    mov ah, al
    mov al, OCW3_READ_IRR
    out PIC_MASTER_CMD, al
    in al, PIC_MASTER_CMD
    or al, ah
    test al, al
    check 3, z, "IRR and ISR read empty through OCW3"

    # 4: the TSC calibrated against channel 2: gate on, speaker off, mode 0
    in al, PORT_B
    and al, 0xFC
    or al, 1
    out PORT_B, al
    mov al, 0xB0
    out PIT_COMMAND, al
    mov al, CALIBRATION_COUNT & 0xFF
    out PIT_CHANNEL2, al
    mov al, CALIBRATION_COUNT >> 8
    out PIT_CHANNEL2, al
    rdtsc
    mov ebx, eax
    mov edi, edx
    in al, PORT_B
    mov [port_b_counting], al
5:  in al, PORT_B
    test al, 0x20
    jz 5b
    rdtsc
    sub eax, ebx
    sbb edx, edi
    mov ecx, 10                               # 10 ms: kHz = cycles / 10
    div ecx
    mov [tsc_khz], eax
    test byte ptr [port_b_counting], 0x20
    check 4, z, "channel 2's output is low while it counts"
    mov eax, [tsc_khz]
    lea esi, [text_tsc]
    call print_labelled

    # 5: channel 0 at 1 kHz on IRQ 0, non-specific EOIs, sleeping in HLT
    mov al, 0x34
    out PIT_COMMAND, al
    mov al, TICK_COUNT & 0xFF
    out PIT_CHANNEL0, al
    mov al, TICK_COUNT >> 8
    out PIT_CHANNEL0, al
    mov al, 0xFE
    out PIC_MASTER_DATA, al
    sti
6:  hlt
    cmp dword ptr [ticks], 2
    jb 6b
    rdtsc
    mov [tick_start], eax
    mov [tick_start + 4], edx
7:  hlt
    cmp dword ptr [ticks], TICKS_MEASURED + 2
    jb 7b
    rdtsc
    sub eax, [tick_start]
    sbb edx, [tick_start + 4]
    mov ecx, TICKS_MEASURED
    div ecx                                   # cycles per tick: 10 ms of TSC
    mov ecx, TICK_MS
    xor edx, edx
    div ecx                                   # per millisecond: tsc_khz
    mov [tick_cycles], eax
    lea esi, [text_tick]
    call print_labelled
    cli
    mov eax, [tick_cycles]                    # against a millisecond of TSC
    mov ecx, [tsc_khz]
    sub eax, ecx
    jns 8f
    neg eax
8:  imul eax, eax, 20                         # within 5%: a busy neighbour delays a wake-up
    cmp eax, ecx
    check 5, be, "IRQ 0 ticks at 100 Hz of the calibrated TSC, the CPU asleep in HLT between"
    mov eax, [isr_in_handler]
    cmp eax, 1
    check 6, e, "IRQ 0 is in service (ISR bit 0) in its handler"

    # 7: IF clear holds the interrupt back; STI's shadow covers one instruction
    mov dword ptr [ticks], 0
    mov eax, [tsc_khz]                        # 15 ms: a tick is due
    imul eax, eax, 15
    call delay_cycles
    cmp dword ptr [ticks], 0
    check 7, e, "no interrupt while RFLAGS.IF is clear"
    sti
    cli
    cmp dword ptr [ticks], 0
    check 8, e, "none between STI and the next instruction (the STI shadow)"
    sti
    nop
    cli
    cmp dword ptr [ticks], 0                  # (a tick that came due during the handler may
    check 9, a, "the pending tick arrives right after the shadow"   # follow it before the CLI)

    # 10: specific EOI
    mov byte ptr [use_specific_eoi], 1
    sti
10: hlt
    cmp dword ptr [ticks], 3
    jb 10b
    cli
    mov al, OCW3_READ_ISR
    out PIC_MASTER_CMD, al
    in al, PIC_MASTER_CMD
    test al, al
    check 10, z, "specific EOIs end IRQ 0"

    # 11: the poll command: a pending IRQ 0 read as 0x80 with IF clear
    mov eax, [tsc_khz]                        # 15 ms
    imul eax, eax, 15
    call delay_cycles
    mov al, OCW3_POLL
    out PIC_MASTER_CMD, al
    in al, PIC_MASTER_CMD
    cmp al, 0x80
    check 11, e, "the poll command returns IRQ 0's request"
    mov al, OCW3_READ_ISR
    out PIC_MASTER_CMD, al
    in al, PIC_MASTER_CMD
    cmp al, 1
    check 12, e, "a polled request is in service"
    mov al, EOI
    out PIC_MASTER_CMD, al

    # 13: automatic EOI: ICW4 AEOI leaves nothing in service
    mov al, 0x11
    out PIC_MASTER_CMD, al
    mov al, VECTOR_BASE
    out PIC_MASTER_DATA, al
    mov al, 4
    out PIC_MASTER_DATA, al
    mov al, 3
    out PIC_MASTER_DATA, al
    mov al, 0xFE
    out PIC_MASTER_DATA, al
    mov byte ptr [no_eoi], 1
    mov dword ptr [ticks], 0
    sti
12: hlt
    cmp dword ptr [ticks], 3
    jb 12b
    cli
    cmp dword ptr [isr_in_handler], 0
    check 13, e, "automatic EOI: nothing in service, and ticks go on"

    # 14: the counter latch: two latched counts of a running channel differ
    mov al, 0xFF
    out PIC_MASTER_DATA, al
    mov al, 0x00                              # latch channel 0
    out PIT_COMMAND, al
    in al, PIT_CHANNEL0
    mov ah, al
    in al, PIT_CHANNEL0
    xchg al, ah
    movzx ebx, ax
    mov eax, [tsc_khz]                        # a quarter of a period
    imul eax, eax, TICK_MS / 4
    call delay_cycles
    mov al, 0x00
    out PIT_COMMAND, al
    in al, PIT_CHANNEL0
    mov ah, al
    in al, PIT_CHANNEL0
    xchg al, ah
    movzx eax, ax
    cmp ebx, TICK_COUNT
    check 14, be, "a latched count is within the period"
    cmp eax, ebx
    check 15, ne, "the count moves"

    # 16: read-back of channel 0's status: word access, mode 2, binary
    mov al, 0xE2                              # status only, channel 0
    out PIT_COMMAND, al
    in al, PIT_CHANNEL0
    and al, 0x3F                              # without OUTPUT and NULL COUNT
    cmp al, 0x34
    check 16, e, "read-back status: access and mode as programmed"

    # 17: a control word stops the count: NULL COUNT in the status
    mov al, 0x30
    out PIT_COMMAND, al
    mov al, 0xE2
    out PIT_COMMAND, al
    in al, PIT_CHANNEL0
    test al, 0x40
    check 17, nz, "NULL COUNT after a control word"

    mov al, PC_SUCCESS
    jmp pc_exit

# IRQ 0: count the tick, note the ISR, and end it (non-specific or
# specific EOI, or none under AEOI).
irq0_handler:
    push eax
    inc dword ptr [ticks]
    mov al, OCW3_READ_ISR
    out PIC_MASTER_CMD, al
    in al, PIC_MASTER_CMD
    movzx eax, al
    mov [isr_in_handler], eax
    cmp byte ptr [no_eoi], 0
    jne 2f
    mov al, EOI
    cmp byte ptr [use_specific_eoi], 0
    je 1f
    mov al, SPECIFIC_EOI_IRQ0
1:  out PIC_MASTER_CMD, al
2:  pop eax
    iret

    .section .rodata
text_tsc:  .asciz "tsc khz "
text_tick: .asciz "tick cycles per ms "

    .data
    .balign 4
ticks:            .long 0
tsc_khz:          .long 0
tick_cycles:      .long 0
isr_in_handler:   .long 0
tick_start:       .quad 0
use_specific_eoi: .byte 0
no_eoi:           .byte 0
port_b_counting:  .byte 0
