# A multiboot test kernel for COM1's receiver (PC16550D) as an
# interrupt-driven serial driver uses it: the received-data and
# character-timeout interrupts on IRQ 4, LSR.DR, the receive FIFO and its
# trigger level, and an overrun without FIFOs.  It takes lines typed on
# the console (tests/boot/test_console_input.py types them), sleeping in
# HLT with no timer armed until input comes, and answers each:
#   ready                      it waits for the first line
#   received: <line>           a line, read by the IRQ 4 handler
#   ready for overrun          after the line "overrun": it waits, polling,
#                              for two bytes typed without a newline
#   overrun: lsr L, rbr B, lsr L   what it read then
#   iir ids seen I             at "exit": the IIR codes its handler saw
# and ends through port 0xF4 with PC_SUCCESS, or PC_FAILURE + the first
# failed check.  After the line "sleep" it turns the receiver's interrupt
# off and halts with interrupts enabled: nothing can wake it.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set COM1_RBR, 0x3F8
    .set COM1_IER, 0x3F9
    .set COM1_IIR, 0x3FA                      # FCR when written
    .set COM1_MCR, 0x3FC
    .set COM1_LSR, 0x3FD
    .set IER_ERBFI, 0x01
    .set IIR_NO_INTERRUPT, 0x01
    .set IIR_ID_MASK, 0x0F
    .set IIR_FIFOS, 0xC0
    .set FCR_FIFOS_TRIGGER_4, 0x47            # FIFOs on, both reset, trigger level 4
    .set FCR_NO_FIFOS, 0x00
    .set LSR_DR, 0x01
    .set LSR_OE, 0x02
    .set LSR_IDLE, 0x60                       # THRE and TEMT
    .set MCR_DTR_RTS_OUT2, 0x0B
    .set VECTOR_COM1, PC_VECTOR_MASTER + 4
    .set IMR_COM1_ONLY, 0xEF
    .set IMR_ALL, 0xFF
    .set LINE_MAX, 60
    .set ASCII_NEWLINE, 0x0A
    .set ASCII_RETURN, 0x0D

    .globl _start
_start:
    pc_start
    mov ecx, VECTOR_COM1
    mov eax, offset com1_handler
    call set_gate
    mov al, IMR_COM1_ONLY
    mov ah, IMR_ALL
    call pic_init
    mov dx, COM1_IIR
    mov al, FCR_FIFOS_TRIGGER_4
    out dx, al
    mov dx, COM1_MCR
    mov al, MCR_DTR_RTS_OUT2
    out dx, al
    mov dx, COM1_IER
    mov al, IER_ERBFI
    out dx, al

    # 1-2: nothing has come in yet
    mov dx, COM1_LSR
    in al, dx
    cmp al, LSR_IDLE
    check 1, e, "LSR before any input: THRE and TEMT, no data ready"
    mov dx, COM1_IIR
    in al, dx
    cmp al, IIR_FIFOS | IIR_NO_INTERRUPT
    check 2, e, "IIR with ERBFI set and nothing received: no interrupt"
    lea esi, [text_ready]
    print_string

next_line:
    call read_line
    lea esi, [text_received]
    print_string
    lea esi, [line]
    print_string
    call newline
    lea esi, [line]
    lea edi, [word_overrun]
    call same
    je overrun
    lea esi, [line]
    lea edi, [word_sleep]
    call same
    je sleep_forever
    lea esi, [line]
    lea edi, [word_exit]
    call same
    jne next_line

    # 7-9: at the end: the handler saw only received-data and timeout
    # codes, and left nothing behind
    lea esi, [text_iir_seen]
    mov eax, [iir_seen]
    call print_labelled
    cmp dword ptr [interrupts], 0
    check 7, ne, "IRQ 4 came for the input"
    test dword ptr [iir_seen], (-1) ^ ((1 << 0x04) | (1 << 0x0C))
    check 8, z, "its handler read IIR 0100 (received data) or 1100 (timeout) only"
    mov dx, COM1_LSR
    in al, dx
    cmp al, LSR_IDLE
    check 9, e, "once read, no data is left ready"
    mov al, PC_SUCCESS
    jmp pc_exit

# "overrun": no FIFOs, no interrupt: RBR holds one byte; the next is lost
# and sets LSR.OE, which the LSR read that reports it clears.  (3-6)
overrun:
    mov dx, COM1_IER
    xor al, al
    out dx, al
    mov dx, COM1_IIR
    mov al, FCR_NO_FIFOS
    out dx, al
    lea esi, [text_ready_overrun]
    print_string
1:  mov dx, COM1_LSR
    in al, dx
    test al, LSR_OE
    jz 1b
    mov bl, al
    mov dx, COM1_RBR
    in al, dx
    mov bh, al
    mov dx, COM1_LSR
    in al, dx
    mov cl, al
    push ecx
    push ebx
    lea esi, [text_overrun]
    print_string
    mov eax, [esp]
    call print_hex8
    lea esi, [text_rbr]
    print_string
    mov al, [esp + 1]
    putc_al
    lea esi, [text_lsr]
    print_string
    mov al, [esp + 4]
    call print_hex8
    call newline
    pop ebx
    pop ecx
    push ecx
    cmp bl, LSR_IDLE | LSR_OE | LSR_DR
    check 3, e, "two bytes into RBR without FIFOs: LSR reads data ready and overrun"
    cmp bh, 'x'
    check 4, e, "RBR holds the first byte"
    pop ecx
    cmp cl, LSR_IDLE
    check 5, e, "the LSR read cleared OE, and the lost byte is gone"
    mov dx, COM1_IIR
    mov al, FCR_FIFOS_TRIGGER_4
    out dx, al
    mov dx, COM1_IER
    mov al, IER_ERBFI
    out dx, al
    in al, dx
    cmp al, IER_ERBFI
    check 6, e, "the receiver interrupt back on"
    jmp next_line

sleep_forever:
    mov dx, COM1_IER
    xor al, al
    out dx, al
    sti
1:  hlt
    jmp 1b

# read_line: sleep until the handler has a whole line in `line`.
# Clobbers: EAX.
read_line:
    mov byte ptr [line], 0
    mov dword ptr [line_length], 0
    mov byte ptr [line_done], 0
1:  cli
    cmp byte ptr [line_done], 0
    jne 2f
    sti
    hlt
    jmp 1b
2:  ret

# same: ZF set if the strings at ESI and EDI are equal.  Clobbers: EAX, ESI, EDI.
same:
1:  mov al, [esi]
    cmp al, [edi]
    jne 2f
    inc esi
    inc edi
    test al, al
    jnz 1b
2:  ret

# IRQ 4, as Linux's serial8250_handle_irq: IIR, then RBR while LSR.DR.
# A newline or return ends the line; bytes past LINE_MAX are dropped.
com1_handler:
    push eax
    push ecx
    push edx
    inc dword ptr [interrupts]
    mov dx, COM1_IIR
    in al, dx
    and eax, IIR_ID_MASK
    mov ecx, eax
    mov eax, 1
    shl eax, cl
    or [iir_seen], eax
1:  mov dx, COM1_LSR
    in al, dx
    test al, LSR_DR
    jz 3f
    mov dx, COM1_RBR
    in al, dx
    cmp al, ASCII_NEWLINE
    je 2f
    cmp al, ASCII_RETURN
    je 2f
    mov ecx, [line_length]
    cmp ecx, LINE_MAX
    jae 1b
    mov [line + ecx], al
    mov byte ptr [line + ecx + 1], 0
    inc dword ptr [line_length]
    jmp 1b
2:  mov byte ptr [line_done], 1
    jmp 1b
3:  mov al, PC_PIC_EOI
    out PC_PIC_MASTER_CMD, al
    pop edx
    pop ecx
    pop eax
    iret

    .section .rodata
text_ready:         .asciz "ready\n"
text_ready_overrun: .asciz "ready for overrun\n"
text_received:      .asciz "received: "
text_overrun:       .asciz "overrun: lsr "
text_rbr:           .asciz ", rbr "
text_lsr:           .asciz ", lsr "
text_iir_seen:      .asciz "iir ids seen "
word_overrun:       .asciz "overrun"
word_sleep:         .asciz "sleep"
word_exit:          .asciz "exit"

    .data
interrupts:  .long 0
iir_seen:    .long 0
line_length: .long 0
line_done:   .byte 0
line:        .space LINE_MAX + 1
