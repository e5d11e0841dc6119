# A multiboot test kernel for the MC146818A's interrupts on IRQ 8, as a
# clock driver uses them: the periodic interrupt counted against the TSC
# (calibrated against PIT channel 2) at 1024 Hz and 64 Hz while the CPU
# sleeps in HLT, delivered through the 8259A cascade (the slave's vector,
# both chips in service, EOIs to both); register C's flags; PIE off
# stopping them; an unread register C holding IRQF; the update-ended and
# alarm interrupts (don't-care alarm bytes); hostile register values; and
# the RESET a restart is, which clears the interrupt enables (run with
# on_fault = "restart": the second run checks only that).  Prints a line
# per check, and these results:
#   tsc khz N
#   1024 hz: cycles per interrupt N, expected M
#   64 hz: cycles per interrupt N, expected M
# Ends through port 0xF4: PC_SUCCESS, or PC_FAILURE + the first failed check.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set RTC_INDEX, 0x70
    .set RTC_DATA, 0x71
    .set REG_SECONDS, 0x00
    .set REG_SECONDS_ALARM, 0x01
    .set REG_MINUTES_ALARM, 0x03
    .set REG_HOURS_ALARM, 0x05
    .set REG_A, 0x0A
    .set REG_B, 0x0B
    .set REG_C, 0x0C
    .set REG_D, 0x0D
    .set A_1024_HZ, 0x26                      # DV = 010 (32.768 kHz), RS = 0110
    .set A_64_HZ, 0x2A                        # RS = 1010
    .set A_8192_HZ, 0x23                      # RS = 0011
    .set A_NO_RATE, 0x20                      # RS = 0000
    .set B_SET, 0x80
    .set B_PIE, 0x40
    .set B_AIE, 0x20
    .set B_UIE, 0x10
    .set B_SQWE, 0x08
    .set B_BINARY, 0x04
    .set B_24_HOUR, 0x02
    .set B_NORMAL, B_24_HOUR                  # BCD, 24-hour: as a BIOS leaves it
    .set C_IRQF, 0x80
    .set C_PF, 0x40
    .set C_AF, 0x20
    .set C_UF, 0x10
    .set D_VRT, 0x80
    .set ALARM_ANY, 0xC0                      # 0xC0-0xFF: don't care
    .set ALARM_ANY_TOO, 0xFF
    .set VECTOR_RTC, PC_VECTOR_SLAVE          # IRQ 8: the slave's IR0
    .set IMR_CASCADE_ONLY, 0xFB               # master: IR2, the slave
    .set IMR_IR0_ONLY, 0xFE                   # slave: IRQ 8
    .set IMR_ALL, 0xFF
    .set ISR_CASCADE, 0x04
    .set ISR_IR0, 0x01
    .set SKIPPED, 2                           # interrupts before a measurement starts
    .set MEASURED_1024, 64                    # 62.5 ms
    .set MEASURED_64, 16                      # 250 ms
    .set TOLERANCE, 33                        # within 1/33 (3 %)
    .set C_READS, 2000
    .set CPUID_HV_FEATURES, 0x40000001        # EBX: the restart count
    .set RESET_CONTROL, 0xCF9
    .set RESET_CPU, 0x06                      # SYS_RST | RST_CPU

    .globl _start
_start:
    pc_start
    mov eax, CPUID_HV_FEATURES
    cpuid
    test ebx, ebx
    jnz after_restart
    mov ecx, VECTOR_RTC
    mov eax, offset rtc_handler
    call set_gate
    mov al, IMR_CASCADE_ONLY
    mov ah, IMR_IR0_ONLY
    call pic_init
    call calibrate_tsc
    mov [tsc_khz], eax
    lea esi, [text_tsc]
    call print_labelled

    # 1: PF is kept only while PIE is set (the rate runs at 1024 Hz)
    mov al, REG_C
    call cmos_read
    mov eax, [tsc_khz]                        # 2 ms: two periods
    add eax, eax
    call delay_cycles
    mov al, REG_C
    call cmos_read
    test al, C_IRQF | C_PF | C_AF
    check 1, z, "no PF, AF or IRQF with the enables clear"

    # 2-8: the periodic interrupt at 1024 Hz, HLT asleep between
    mov byte ptr [read_c], 1
    mov al, A_1024_HZ
    mov ebx, MEASURED_1024
    call measure_periodic
    mov ecx, 1024
    lea esi, [text_1024]
    call report_rate
    check 2, be, "1024 Hz: the period is 1/1024 s of the calibrated TSC, within 3%"
    mov eax, [hlt_returns]
    cmp eax, [interrupts]
    check 3, e, "every HLT ended with IRQ 8: it slept until the RTC's interrupt"
    cmp byte ptr [master_isr], ISR_CASCADE
    check 4, e, "in the handler the master has IR2 (the cascade) in service"
    cmp byte ptr [slave_isr], ISR_IR0
    check 5, e, "and the slave IR0 (IRQ 8): the slave's vector"
    mov al, [c_and]
    and al, C_IRQF | C_PF | C_AF
    cmp al, C_IRQF | C_PF
    check 6, e, "register C read IRQF and PF in every handler"
    test byte ptr [c_or], C_AF
    check 7, z, "and never AF"
    call read_isrs
    test eax, eax
    check 8, z, "EOIs to both chips leave nothing in service"

    # 9: 64 Hz
    mov al, A_64_HZ
    mov ebx, MEASURED_64
    call measure_periodic
    mov ecx, 64
    lea esi, [text_64]
    call report_rate
    check 9, be, "64 Hz: the period is 1/64 s of the calibrated TSC, within 3%"

    # 10-11: PIE off stops them (at 1024 Hz: 5 periods go by)
    mov al, REG_A
    mov ah, A_1024_HZ
    call cmos_write
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    mov al, REG_C
    call cmos_read
    mov dword ptr [interrupts], 0
    sti
    mov eax, [tsc_khz]                        # 5 ms
    imul eax, eax, 5
    call delay_cycles
    cli
    cmp dword ptr [interrupts], 0
    check 10, e, "PIE clear: no periodic interrupt"
    mov al, REG_C
    call cmos_read
    test al, C_IRQF | C_PF
    check 11, z, "and neither PF nor IRQF"

    # 12-13: a handler that does not read C: IRQF stays set, no new edge
    mov byte ptr [read_c], 0
    mov al, REG_B
    mov ah, B_NORMAL | B_PIE
    call cmos_write
    sti
    mov eax, [tsc_khz]                        # 5 ms: 5 periods
    imul eax, eax, 5
    call delay_cycles
    cli
    cmp dword ptr [interrupts], 1
    check 12, e, "register C unread: one interrupt in 5 periods (IRQF holds)"
    mov al, REG_C
    call cmos_read
    and al, C_IRQF | C_PF | C_AF
    cmp al, C_IRQF | C_PF
    check 13, e, "then C reads IRQF and PF, and the next comes"
    mov byte ptr [read_c], 1
    sti
13: hlt
    cmp dword ptr [interrupts], 2
    jb 13b
    cli
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write

    # 14-16: the update-ended interrupt once, at the seconds' turnover
    # (binary mode from here: the alarm is simpler to compute)
    mov al, REG_B
    mov ah, B_24_HOUR | B_BINARY
    call cmos_write
    mov al, REG_SECONDS
    call cmos_read
    mov [seconds_before], al
    mov al, REG_C
    call cmos_read
    call let_interrupts_in                    # a periodic edge from before PIE went off, latched
    mov dword ptr [interrupts], 0             # in the 8259A's IRR, is taken here, not counted
    mov al, REG_B
    mov ah, B_24_HOUR | B_BINARY | B_UIE
    call cmos_write
    call sleep_for_interrupt
    mov al, REG_SECONDS                       # just after an update: a second to go
    call cmos_read
    mov [seconds_after], al
    mov al, REG_B
    mov ah, B_24_HOUR | B_BINARY
    call cmos_write
    mov al, [last_c]
    and al, C_IRQF | C_PF | C_AF | C_UF
    cmp al, C_IRQF | C_UF
    check 14, e, "UIE: an interrupt with register C IRQF and UF"
    movzx eax, byte ptr [seconds_before]
    inc eax
    xor edx, edx
    mov ecx, 60
    div ecx
    cmp dl, [seconds_after]
    check 15, e, "as the seconds turned over"

    # 16-18: the alarm: seconds two ahead, minutes and hours don't care;
    # UIE and AIE on: at the next update UF alone, at the one after AF too
    movzx eax, byte ptr [seconds_after]
    add eax, 2
    xor edx, edx
    mov ecx, 60
    div ecx
    mov [alarm_second], dl
    mov al, REG_SECONDS_ALARM
    mov ah, dl
    call cmos_write
    mov al, REG_MINUTES_ALARM
    mov ah, ALARM_ANY
    call cmos_write
    mov al, REG_HOURS_ALARM
    mov ah, ALARM_ANY_TOO
    call cmos_write
    mov dword ptr [interrupts], 0
    mov al, REG_B
    mov ah, B_24_HOUR | B_BINARY | B_UIE | B_AIE
    call cmos_write
    call sleep_for_interrupt
    mov al, [last_c]
    mov [first_c], al
    call sleep_for_interrupt
    mov al, REG_SECONDS
    call cmos_read
    mov [seconds_after], al
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    mov al, [first_c]
    and al, C_IRQF | C_PF | C_AF | C_UF
    cmp al, C_IRQF | C_UF
    check 16, e, "UIE and AIE: first an update that is not the alarm (UF only)"
    mov al, [last_c]
    and al, C_IRQF | C_PF | C_AF | C_UF
    cmp al, C_IRQF | C_AF | C_UF
    check 17, e, "then the alarm: AF with UF"
    mov al, [seconds_after]
    cmp al, [alarm_second]
    check 18, e, "at the alarm's second, whatever the minutes and hours (0xc0, 0xff)"

    # 19-23: hostile values
    mov al, REG_B
    mov ah, 0xFF
    call cmos_write
    mov al, REG_B
    call cmos_read
    mov bl, al
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    cmp bl, 0xFF & ~B_UIE
    check 19, e, "register B 0xff reads 0xef (SET clears UIE)"
    mov al, REG_C                             # a PF of those moments goes
    call cmos_read
    mov al, REG_C
    mov ah, 0xFF
    call cmos_write
    mov al, REG_D
    mov ah, 0
    call cmos_write
    mov al, REG_C
    call cmos_read
    mov bl, al
    mov al, REG_D
    call cmos_read
    and bl, C_IRQF | C_PF | C_AF
    cmp al, D_VRT
    jne 19f
    test bl, bl
19: check 20, e, "writes to C and D change nothing"
    mov al, REG_A                             # PIE with no rate: nothing
    mov ah, A_NO_RATE
    call cmos_write
    mov al, REG_B
    mov ah, B_NORMAL | B_PIE
    call cmos_write
    call let_interrupts_in                    # one B 0xff may have latched
    mov dword ptr [interrupts], 0
    sti
    mov eax, [tsc_khz]                        # 2 ms
    add eax, eax
    call delay_cycles
    cli
    cmp dword ptr [interrupts], 0
    check 21, e, "PIE with rate 0: no interrupt"
    mov al, REG_A                             # 8192 Hz, C read in a loop, IF clear
    mov ah, A_8192_HZ
    call cmos_write
    xor ebx, ebx                              # reads whose IRQF and PF disagree, or with AF
    xor edi, edi                              # reads with PF
    mov ecx, C_READS
20: mov al, REG_C
    out RTC_INDEX, al
    in al, RTC_DATA
    test al, C_AF
    jnz 21f
    mov ah, al
    shr ah, 1                                 # IRQF to PF's bit
    xor ah, al
    test ah, C_PF
    jz 22f
21: inc ebx
22: test al, C_PF
    jz 23f
    inc edi
23: dec ecx
    jnz 20b
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    test ebx, ebx
    check 22, z, "2000 reads of C at 8192 Hz: IRQF exactly with PF, never AF"
    test edi, edi
    check 23, nz, "and PF in some"
    call let_interrupts_in
    cmp dword ptr [interrupts], 1
    check 24, e, "then the one interrupt the 8259A latched"

    # The restart: enables set, then a reset through port 0xCF9
    mov al, REG_A
    mov ah, A_1024_HZ
    call cmos_write
    mov al, REG_B
    mov ah, B_NORMAL | B_PIE | B_AIE | B_UIE | B_SQWE
    call cmos_write
    mov dx, RESET_CONTROL
    mov al, RESET_CPU
    out dx, al
    mov al, PC_EXCEPTION
    jmp pc_exit

after_restart:
    mov al, REG_B
    call cmos_read
    cmp al, B_NORMAL
    check 25, e, "after the restart (the chip's RESET) B has PIE, AIE, UIE and SQWE clear"
    mov al, PC_SUCCESS
    jmp pc_exit

# measure_periodic: rate AL in register A, PIE on, HLT until SKIPPED
# interrupts, then TSC cycles (in the handler) over EBX more.
# OUT: EAX = cycles per interrupt.  Clobbers: ECX, EDX, ESI.
measure_periodic:
    mov ah, al
    mov al, REG_A
    call cmos_write
    mov al, REG_C
    call cmos_read
    mov dword ptr [interrupts], 0
    mov dword ptr [hlt_returns], 0
    mov byte ptr [c_and], 0xFF
    mov byte ptr [c_or], 0
    mov al, REG_B
    mov ah, B_NORMAL | B_PIE
    call cmos_write
    sti
1:  hlt
    inc dword ptr [hlt_returns]
    cmp dword ptr [interrupts], SKIPPED
    jb 1b
    mov esi, [tick_tsc]
    mov ecx, [tick_tsc + 4]
    add ebx, SKIPPED
2:  hlt
    inc dword ptr [hlt_returns]
    cmp [interrupts], ebx
    jb 2b
    cli
    sub ebx, SKIPPED
    mov eax, [tick_tsc]
    mov edx, [tick_tsc + 4]
    sub eax, esi
    sbb edx, ecx
    div ebx
    push eax
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    pop eax
    ret

# report_rate: print "<ESI>cycles per interrupt EAX, expected E" with E =
# tsc_khz * 1000 / ECX; flags: BE if EAX is within 1/TOLERANCE of E.
report_rate:
    push eax
    print_string
    mov eax, [tsc_khz]
    imul eax, eax, 1000
    xor edx, edx
    div ecx
    mov ebx, eax                              # EBX: expected
    pop eax
    push eax
    call print_decimal
    lea esi, [text_expected]
    print_string
    mov eax, ebx
    call print_decimal
    call newline
    pop eax
    sub eax, ebx
    jns 1f
    neg eax
1:  imul eax, eax, TOLERANCE
    cmp eax, ebx
    ret

# sleep_for_interrupt: HLT until the interrupt count goes up.  Clobbers: EAX.
sleep_for_interrupt:
    mov eax, [interrupts]
1:  cli
    cmp [interrupts], eax
    jne 2f
    sti
    hlt
    jmp 1b
2:  cli
    ret

# let_interrupts_in: IF set across an exit, so that a request is taken.
let_interrupts_in:
    sti
    mov al, REG_D
    out RTC_INDEX, al
    in al, RTC_DATA
    cli
    ret

# read_isrs: EAX = the slave's ISR << 8 | the master's.
read_isrs:
    mov al, PC_OCW3_READ_ISR
    out PC_PIC_SLAVE_CMD, al
    in al, PC_PIC_SLAVE_CMD
    mov ah, al
    mov al, PC_OCW3_READ_ISR
    out PC_PIC_MASTER_CMD, al
    in al, PC_PIC_MASTER_CMD
    movzx eax, ax
    ret

# cmos_read: AL = register AL.  cmos_write: register AL = AH.
cmos_read:
    out RTC_INDEX, al
    in al, RTC_DATA
    ret
cmos_write:
    out RTC_INDEX, al
    mov al, ah
    out RTC_DATA, al
    ret

# IRQ 8, vector 0x28: the TSC, both chips' ISRs, register C (unless
# read_c is clear), EOIs to the slave and the master.
rtc_handler:
    push eax
    push edx
    inc dword ptr [interrupts]
    rdtsc
    mov [tick_tsc], eax
    mov [tick_tsc + 4], edx
    call read_isrs
    mov [master_isr], al
    mov [slave_isr], ah
    cmp byte ptr [read_c], 0
    je 1f
    mov al, REG_C
    out RTC_INDEX, al
    in al, RTC_DATA
    mov [last_c], al
    and [c_and], al
    or [c_or], al
1:  mov al, PC_PIC_EOI
    out PC_PIC_SLAVE_CMD, al
    out PC_PIC_MASTER_CMD, al
    pop edx
    pop eax
    iret

    .section .rodata
text_tsc:      .asciz "tsc khz "
text_1024:     .asciz "1024 hz: cycles per interrupt "
text_64:       .asciz "64 hz: cycles per interrupt "
text_expected: .asciz ", expected "

    .data
    .balign 4
interrupts:     .long 0
hlt_returns:    .long 0
tsc_khz:        .long 0
tick_tsc:       .quad 0
master_isr:     .byte 0
slave_isr:      .byte 0
read_c:         .byte 0
last_c:         .byte 0
first_c:        .byte 0
c_and:          .byte 0
c_or:           .byte 0
seconds_before: .byte 0
seconds_after:  .byte 0
alarm_second:   .byte 0
