# A multiboot test kernel for COM1's interrupts (PC16550D) on IRQ 4, as
# interrupt-driven serial drivers use them: IIR's identification codes and
# FIFO bits, the THRE interrupt and how it is set and cleared, MCR OUT2
# gating IRQ 4, Linux's THRE test (UART_BUG_THRE), a string sent by a THRE
# handler one byte per interrupt, a Linux-style handler that reads IIR
# until "no interrupt" and writes 16 bytes per THRE, and garbage in IER
# and FCR.  Prints a line per check, and these results:
#   thre interrupts N, iir and A or O     the byte-per-interrupt handler
#   <the string it sent>                  its own console line
#   linux-style: N interrupts, M found nothing, iir reads R
#   <the string it sent>
#   garbage: N interrupts
# Ends through port 0xF4: PC_SUCCESS, or PC_FAILURE + the first failed check.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set COM1_IER, 0x3F9
    .set COM1_IIR, 0x3FA                      # FCR when written
    .set COM1_LCR, 0x3FB
    .set COM1_MCR, 0x3FC
    .set IER_ETBEI, 0x02
    .set IER_ENABLES, 0x0F
    .set IIR_NO_INTERRUPT, 0x01
    .set IIR_THRE, 0x02
    .set IIR_ID_MASK, 0x0F
    .set IIR_FIFOS, 0xC0
    .set FCR_ENABLE, 0x01
    .set FCR_ENABLE_AND_RESET, 0x07           # FIFOs on, receive and transmit FIFOs reset
    .set FCR_TRIGGER_14, 0xC0
    .set MCR_DTR_RTS, 0x03
    .set MCR_DTR_RTS_OUT2, 0x0B
    .set VECTOR_COM1, PC_VECTOR_MASTER + 4
    .set IMR_COM1_ONLY, 0xEF                  # master: IRQ 4
    .set IMR_ALL, 0xFF
    .set IRQ4_BIT, 0x10
    .set TX_LOADSZ, 16                        # Linux's 16550A transmit burst
    .set MODE_COUNT, 0                        # the handler's modes
    .set MODE_BYTE, 1
    .set MODE_LINUX, 2
    .set IIR_READ_LOOPS, 1000
    .set GARBAGE_VALUES, 256

    .globl _start
_start:
    pc_start
    mov ecx, VECTOR_COM1
    mov eax, offset com1_handler
    call set_gate
    mov al, IMR_COM1_ONLY
    mov ah, IMR_ALL
    call pic_init

    # 1-4: IIR and FCR, IER's existence test
    mov dx, COM1_IIR
    in al, dx
    cmp al, IIR_NO_INTERRUPT
    check 1, e, "IIR reads no interrupt, FIFOs off, at power-on"
    mov dx, COM1_IER
    mov al, 0xFF
    out dx, al
    in al, dx
    mov ah, al
    xor al, al
    out dx, al
    cmp ah, IER_ENABLES
    check 2, e, "IER keeps its four enables (0xff reads back 0x0f)"
    mov dx, COM1_IIR
    mov al, FCR_ENABLE_AND_RESET
    out dx, al
    in al, dx
    cmp al, IIR_FIFOS | IIR_NO_INTERRUPT
    check 3, e, "FCR FIFO enable: IIR bits 7:6 read 11 (a 16550A)"
    mov dx, COM1_IIR                          # (a check's line takes DX)
    mov al, FCR_TRIGGER_14 | 0x06             # bit 0 clear: the FIFOs go off
    out dx, al
    in al, dx
    cmp al, IIR_NO_INTERRUPT
    check 4, e, "FCR bit 0 clear: IIR bits 7:6 read 00"
    mov dx, COM1_IIR
    mov al, FCR_ENABLE | FCR_TRIGGER_14
    out dx, al

    # 5-9: THRE pending while OUT2 is clear raises no interrupt; OUT2 lets
    # it through.  (While ETBEI is set, the checks' own lines would raise
    # THRE: it is off whenever they print.)
    mov dx, COM1_MCR
    mov al, MCR_DTR_RTS
    out dx, al
    mov dx, COM1_IER
    mov al, IER_ETBEI
    out dx, al
    call let_interrupts_in
    mov ebx, [interrupts]
    mov al, PC_OCW3_READ_IRR
    out PC_PIC_MASTER_CMD, al
    in al, PC_PIC_MASTER_CMD
    mov cl, al
    mov dx, COM1_MCR                          # THRE still pending: OUT2 lets it through
    mov al, MCR_DTR_RTS_OUT2
    out dx, al
    call let_interrupts_in
    mov dx, COM1_IIR
    in al, dx
    mov ch, al
    mov dx, COM1_IER
    xor al, al
    out dx, al
    push ecx
    test ebx, ebx
    check 5, z, "THRE with OUT2 clear: no interrupt"
    pop ecx
    push ecx
    test cl, IRQ4_BIT
    check 6, z, "and no request in the 8259A's IRR"
    cmp dword ptr [interrupts], 1
    check 7, e, "OUT2 set with THRE pending: one interrupt on IRQ 4"
    cmp byte ptr [last_iir], IIR_FIFOS | IIR_THRE
    check 8, e, "its handler reads IIR 0xc2: THRE, FIFOs on"
    pop ecx
    cmp ch, IIR_FIFOS | IIR_NO_INTERRUPT
    check 9, e, "reading IIR cleared THRE"

    # 10-12: Linux's THRE test (serial8250_startup, UART_BUG_THRE) with IF clear
    mov dx, COM1_IER
    xor al, al
    out dx, al
    mov al, IER_ETBEI
    out dx, al
    mov dx, COM1_IIR
    in al, dx
    mov bl, al
    mov dx, COM1_IER
    xor al, al
    out dx, al
    mov al, IER_ETBEI
    out dx, al
    mov dx, COM1_IIR
    in al, dx
    mov bh, al
    mov dx, COM1_IER
    xor al, al
    out dx, al
    cmp bx, ((IIR_FIFOS | IIR_THRE) << 8) | IIR_FIFOS | IIR_THRE
    check 10, e, "ETBEI set again after an IIR read re-asserts THRE (no UART_BUG_THRE)"
    call let_interrupts_in
    cmp dword ptr [interrupts], 2
    check 11, e, "the edges it made wait in the IRR as one request"
    cmp byte ptr [last_iir], IIR_FIFOS | IIR_NO_INTERRUPT
    check 12, e, "whose handler reads IIR no interrupt (Linux's IRQ_NONE)"

    # 13-14: a string sent by the THRE handler, a byte per interrupt
    mov dword ptr [interrupts], 0
    mov byte ptr [iir_and], 0xFF
    mov byte ptr [iir_or], 0
    mov dword ptr [next_byte], offset byte_message
    mov byte ptr [mode], MODE_BYTE
    call transmit
    lea esi, [text_thre]
    print_string
    mov eax, [interrupts]
    call print_decimal
    lea esi, [text_iir_and]
    print_string
    mov al, [iir_and]
    call print_hex8
    lea esi, [text_or]
    print_string
    mov al, [iir_or]
    call print_hex8
    call newline
    mov eax, [interrupts]
    cmp eax, byte_message_end - byte_message + 1
    check 13, e, "one THRE interrupt per byte, and one to find the string done"
    mov al, [iir_and]
    and al, [iir_or]
    cmp al, IIR_FIFOS | IIR_THRE
    check 14, e, "every one identified as THRE"

    # 15-16: a Linux-style handler: IIR until no interrupt, 16 bytes per THRE
    mov dword ptr [interrupts], 0
    mov dword ptr [iir_reads], 0
    mov dword ptr [found_nothing], 0
    mov dword ptr [next_byte], offset linux_message
    mov byte ptr [mode], MODE_LINUX
    call transmit
    lea esi, [text_linux]
    print_string
    mov eax, [interrupts]
    call print_decimal
    lea esi, [text_found_nothing]
    print_string
    mov eax, [found_nothing]
    call print_decimal
    lea esi, [text_iir_reads]
    print_string
    mov eax, [iir_reads]
    call print_decimal
    call newline
    cmp dword ptr [interrupts], 3
    check 15, be, "it neither hangs nor storms: at most 3 interrupts for five bursts"
    mov dx, COM1_IIR
    in al, dx
    cmp al, IIR_FIFOS | IIR_NO_INTERRUPT
    check 16, e, "and leaves nothing pending"

    # 17-20: hostile input with IF clear and OUT2 set
    mov byte ptr [mode], MODE_COUNT
    mov dword ptr [interrupts], 0
    mov dx, COM1_IER
    mov al, IER_ETBEI
    out dx, al
    mov ecx, IIR_READ_LOOPS
    xor ebx, ebx
    mov dx, COM1_IIR
17: in al, dx
    cmp al, IIR_FIFOS | IIR_THRE
    jne 18f
    inc ebx
18: dec ecx
    jnz 17b
    mov dx, COM1_IER
    xor al, al
    out dx, al
    cmp ebx, 1
    check 17, e, "1000 IIR reads: THRE once, then no interrupt"
    xor ecx, ecx                              # every IER value; its read-back
    xor edi, edi                              # IER read-backs that were not value & 0x0f
19: mov dx, COM1_IER
    mov al, cl
    out dx, al
    in al, dx
    mov ah, cl
    and ah, IER_ENABLES
    cmp al, ah
    je 20f
    inc edi
20: mov dx, COM1_IIR                          # FCR: every value; IIR's FIFO bits follow bit 0
    mov al, cl
    out dx, al
    in al, dx
    and al, IIR_FIFOS
    mov ah, cl
    and ah, FCR_ENABLE
    neg ah
    and ah, IIR_FIFOS
    cmp al, ah
    je 21f
    inc edi
21: inc ecx
    cmp ecx, GARBAGE_VALUES
    jb 19b
    mov dx, COM1_IER
    xor al, al
    out dx, al
    mov dx, COM1_IIR
    mov al, FCR_ENABLE
    out dx, al
    test edi, edi
    check 18, z, "every IER and FCR value: IER keeps bits 3:0, IIR 7:6 follow FCR bit 0"
    call let_interrupts_in
    lea esi, [text_garbage]
    mov eax, [interrupts]
    call print_labelled
    cmp dword ptr [interrupts], 1
    check 19, e, "all those edges, IF clear: one interrupt"
    mov dx, COM1_LSR
    in al, dx
    cmp al, 0x60
    check 20, e, "LSR still reads THRE and TEMT (the polled path)"

    mov al, IMR_ALL
    out PC_PIC_MASTER_DATA, al
    mov al, PC_SUCCESS
    jmp pc_exit

# let_interrupts_in: IF set for a few instructions, across an exit (an
# LSR read), so that an interrupt requested meanwhile is taken.
# Clobbers: EAX, EDX.
let_interrupts_in:
    sti
    mov dx, COM1_LSR
    in al, dx
    in al, dx
    cli
    ret

# transmit: ETBEI on; sleep in HLT until the handler has sent the string
# at next_byte (NUL-terminated) and turned ETBEI off.  Clobbers: EAX, EDX.
transmit:
    mov byte ptr [done], 0
    mov dx, COM1_IER
    mov al, IER_ETBEI
    out dx, al
1:  cli
    cmp byte ptr [done], 0
    jne 2f
    sti
    hlt
    jmp 1b
2:  ret

# IRQ 4.  MODE_COUNT: read IIR once.  MODE_BYTE: read IIR once; on THRE
# send the next byte, or, with none left, turn ETBEI off.  MODE_LINUX:
# as serial8250_interrupt: IIR until it reads no interrupt; on THRE up to
# TX_LOADSZ bytes, ETBEI off once the string is done.
com1_handler:
    push eax
    push ecx
    push edx
    push esi
    inc dword ptr [interrupts]
    cmp byte ptr [mode], MODE_LINUX
    je com1_linux
    mov dx, COM1_IIR
    in al, dx
    mov [last_iir], al
    and [iir_and], al
    or [iir_or], al
    cmp byte ptr [mode], MODE_BYTE
    jne com1_eoi
    and al, IIR_ID_MASK
    cmp al, IIR_THRE
    jne com1_eoi
    mov esi, [next_byte]
    mov al, [esi]
    test al, al
    jz 2f
    mov dx, COM1
    out dx, al
    inc dword ptr [next_byte]
    jmp com1_eoi
2:  call stop_tx
com1_eoi:
    mov al, PC_PIC_EOI
    out PC_PIC_MASTER_CMD, al
    pop esi
    pop edx
    pop ecx
    pop eax
    iret
com1_linux:
    xor ecx, ecx                              # THREs this interrupt
3:  mov dx, COM1_IIR
    in al, dx
    inc dword ptr [iir_reads]
    test al, IIR_NO_INTERRUPT
    jnz 6f
    inc ecx
    mov ah, TX_LOADSZ
    mov esi, [next_byte]
4:  mov al, [esi]
    test al, al
    jz 5f
    mov dx, COM1
    out dx, al
    inc esi
    dec ah
    jnz 4b
    mov [next_byte], esi
    cmp byte ptr [esi], 0                     # uart_circ_empty: __stop_tx
    jne 3b
5:  mov [next_byte], esi
    call stop_tx
    jmp 3b
6:  test ecx, ecx
    jnz com1_eoi
    inc dword ptr [found_nothing]
    jmp com1_eoi

# stop_tx: ETBEI off, the string done.  Clobbers: EAX, EDX.
stop_tx:
    mov dx, COM1_IER
    xor al, al
    out dx, al
    mov byte ptr [done], 1
    ret

    .section .rodata
text_thre:          .asciz "thre interrupts "
text_iir_and:       .asciz ", iir and "
text_or:            .asciz " or "
text_linux:         .asciz "linux-style: "
text_found_nothing: .asciz " interrupts, "
text_iir_reads:     .asciz " found nothing, iir reads "
text_garbage:       .asciz "garbage: interrupts "
byte_message:       .ascii "sent by the THRE handler, a byte per interrupt\n"
byte_message_end:   .byte 0
linux_message:      .asciz "sent Linux's way: up to 16 bytes per THRE interrupt, until IIR reads none\n"

    .data
    .balign 4
interrupts:    .long 0
next_byte:     .long 0
iir_reads:     .long 0
found_nothing: .long 0
last_iir:      .byte 0
iir_and:       .byte 0
iir_or:        .byte 0
mode:          .byte 0
done:          .byte 0
