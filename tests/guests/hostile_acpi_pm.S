# A hostile guest at its own ACPI power-management registers (README,
# "ACPI power-off"): PM1_STS and PM1_EN at 0x600 and 0x602, PM1_CNT at
# 0x604.  Every write here is wrong for a power-off, or no power-off at
# all: SLP_EN with each other sleep type, type 5 without SLP_EN, the S5
# request by a dword or by a word across two registers, a byte that makes
# another type, all ones, zero; then writes to the status and enable
# registers, and reads of every odd size.  After each it prints what the three registers read:
#   pm: <what>: sts 0x.. en 0x.. cnt 0x..
# and last the odd reads:
#   pm: reads: byte cnt 0x.. byte cnt high 0x.. dword 0x.. word across 0x.. word at the end 0x..
# then exits with code 0.  Had a write powered it off, the run would show
# "[hv] hostile powered off (ACPI S5)" and none of the lines after it.
    .include "catcher.inc"
    .globl _start

.set PM1_STS, 0x600
.set PM1_EN, 0x602
.set PM1_CNT, 0x604
.set PM1_CNT_HIGH, 0x605
.set PM1_STS_HIGH_EN_LOW, 0x601
.set PM1_EN_HIGH_CNT_LOW, 0x603
.set SLP_EN, 0x2000                       # ACPI 6.4 4.8.3.2.1: PM1_CNT bit 13
.set SLP_TYP_SHIFT, 10                    # bits 12:10
.set SLP_TYP_S5, 5                        # the DSDT's \_S5 value
.set SLEEP_TYPES, 8
.set S5_REQUEST, (SLP_TYP_S5 << SLP_TYP_SHIFT) | SLP_EN
.set HIGH_BYTE_TYPE_6, ((6 << SLP_TYP_SHIFT) | SLP_EN) >> 8

# show "WHAT": print "pm: WHAT:" and the registers.
.macro show what:req
    say "pm: \what:"
    call registers
.endm

# out_word PORT, VALUE / out_byte / out_dword: one OUT of that size.
.macro out_word port:req, value:req
    mov dx, \port
    mov ax, \value
    out dx, ax
.endm
.macro out_byte port:req, value:req
    mov dx, \port
    mov al, \value
    out dx, al
.endm
.macro out_dword port:req, value:req
    mov dx, \port
    mov eax, \value
    out dx, eax
.endm

_start:
    hostile_start
    show "at start"

# SLP_EN with every sleep type but soft-off's: the platform has no other
# sleep state, so nothing happens; SLP_TYP keeps what was written.
    xor r12d, r12d
sleep_type:
    cmp r12d, SLP_TYP_S5
    je sleep_type_next
    mov eax, r12d
    shl eax, SLP_TYP_SHIFT
    or eax, SLP_EN
    mov dx, PM1_CNT
    out dx, ax
    say "pm: slp_en type "
    say_dec r12
    say ":"
    call registers
sleep_type_next:
    inc r12d
    cmp r12d, SLEEP_TYPES
    jb sleep_type

    out_word PM1_CNT, SLP_TYP_S5 << SLP_TYP_SHIFT
    show "type 5 without slp_en"
    out_dword PM1_CNT, S5_REQUEST
    show "the s5 request as a dword"
    out_dword PM1_EN, S5_REQUEST << 16
    show "the s5 request in a dword's high half"
    out_word PM1_EN_HIGH_CNT_LOW, 0xFFFF
    show "a word across pm1_en and pm1_cnt"
    out_word PM1_CNT_HIGH, S5_REQUEST >> 8
    show "a word across pm1_cnt and the next port"
    out_byte PM1_CNT_HIGH, HIGH_BYTE_TYPE_6
    show "slp_en type 6 by its byte"
    out_byte PM1_CNT, 0xFF
    show "the low byte all ones"
    out_word PM1_CNT, 0xFFFF
    show "all ones"
    out_word PM1_CNT, 0
    show "zero"
    out_word PM1_STS, 0xFFFF
    show "status all ones"
    out_word PM1_EN, 0xFFFF
    show "enable all ones"
    out_byte PM1_EN_HIGH_CNT_LOW, 0
    show "enable high byte zero"

    say "pm: reads: byte cnt "
    mov dx, PM1_CNT
    in al, dx
    movzx eax, al
    say_hex rax
    say " byte cnt high "
    mov dx, PM1_CNT_HIGH
    in al, dx
    movzx eax, al
    say_hex rax
    say " dword "
    mov dx, PM1_STS
    in eax, dx
    say_hex rax
    say " word across "
    mov dx, PM1_STS_HIGH_EN_LOW
    call read_word
    say " word at the end "
    mov dx, PM1_CNT_HIGH
    call read_word
    say "\n"
    xor ebx, ebx
    jmp exit_with

# registers: print the three registers as word reads give them, and a
# newline.  Clobbers: RAX, RDX.
registers:
    say " sts "
    mov dx, PM1_STS
    call read_word
    say " en "
    mov dx, PM1_EN
    call read_word
    say " cnt "
    mov dx, PM1_CNT
    call read_word
    say "\n"
    ret

# read_word: print the word at port DX.  Clobbers: RAX.
read_word:
    in ax, dx
    movzx eax, ax
    say_hex rax
    ret
