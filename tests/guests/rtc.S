# A multiboot test kernel for the MC146818A real-time clock and CMOS at
# ports 0x70/0x71, as a clock driver sees it.  It prints what it reads
# (tests/boot/test_devices.py compares that with the hypervisor's boot
# line and the calendar) and checks what it can itself:
#   power-on registers A B D          register A (UIP masked), B, D
#   clock at start <date> day N       read in BCD, 24-hour mode
#   BCD and binary readings agree     the same moment in both data modes
#   clock set to 1999-12-31 23:59:59  its own clock, SET held while it writes
#   the seconds turned over after UIP UIP seen in the 244 us before a tick
#   register C ...                    UF after the tick, clear once read
#   after the tick <date> day N       its clock, set to 1999-12-31 23:59:59
#   12-hour: ... ; written: ...       hour encodings, read and written
#   set <date> reads <date> day N     out-of-range values carrying on
#   cmos memory: ...                  the memory-size bytes and checksum
#   clock at the end <date>           after its neighbour set its own clock
# With --defsym NEIGHBOUR=1 it is the guest beside it instead: it yields
# first, then prints its own clock (the other's setting must not show),
# its CMOS memory and marker byte, then sets its clock and reads it back.
# --defsym POLL_TICKS=N: TSC cycles between two polls while it waits for
# a tick (about 100 us: the UIP window is 244 us).
    .include "kernel.inc"

.set REG_SECONDS, 0x00
.set REG_MINUTES, 0x02
.set REG_HOURS, 0x04
.set REG_A, 0x0A
.set REG_B, 0x0B
.set REG_C, 0x0C
.set REG_D, 0x0D
.set A_UIP, 0x80
.set B_SET, 0x80
.set B_DM_BINARY, 0x04
.set B_24_HOUR, 0x02
.set B_NORMAL, B_24_HOUR                  # BCD, 24-hour: as a BIOS leaves it
.set FIELDS, 8                            # seconds ... century, as `time_registers` lists them
.set FIELD_DAY_OF_WEEK, 3
.set MARKER_REGISTER, 0x40                # a CMOS memory byte
.set MARKER, 0xA5
.set POLL_LIMIT, 50000                    # polls before it gives up on a tick (5 s at 100 us)
.set NEIGHBOUR_YIELDS, 100
.set FINAL_YIELDS, 400                    # more than the neighbour takes: it is done by then
.set CHECKSUM_FIRST, 0x10
.set CHECKSUM_LAST, 0x2D
.set CHECKSUM_HIGH, 0x2E
.set CHECKSUM_LOW, 0x2F

kernel_main:
.ifdef NEIGHBOUR
    jmp neighbour_main
.endif
    say "power-on registers A "
    mov al, REG_A
    call cmos_read
    and al, ~A_UIP & 0xFF
    call put_hex8
    say " B "
    mov al, REG_B
    call cmos_read
    call put_hex8
    say " D "
    mov al, REG_D
    call cmos_read
    call put_hex8
    say "\n"
    mov al, REG_C
    call cmos_read                            # clears its flags

    lea edi, [clock]
    call read_clock
    say "clock at start "
    call print_clock

    call check_data_modes

    lea esi, [new_year_eve]
    call set_clock
    say "clock set to "
    mov edi, esi
    call print_date
    say "\n"
    mov al, MARKER_REGISTER
    mov ah, MARKER
    call cmos_write
    call wait_tick
    mov al, REG_C
    call cmos_read
    say "register C after the tick "
    call put_hex8
    mov al, REG_C
    call cmos_read
    say ", read again "
    call put_hex8
    say "\n"
    lea edi, [clock]
    call read_clock
    say "after the tick "
    call print_clock

    call check_12_hour

    lea esi, [carries]
carry_next:
    cmp byte ptr [esi], 0xFF                  # the table's end
    je carry_done
    say "set "
    mov edi, esi
    call print_date
    call set_clock
    lea edi, [clock]
    call freeze_clock
    say " reads "
    call print_clock
    add esi, FIELDS
    jmp carry_next
carry_done:
    call print_memory

    mov ecx, FINAL_YIELDS
final_yield:
    call yield
    loop final_yield
    lea edi, [clock]
    call read_clock
    say "clock at the end "
    call print_clock
    ret

# The guest beside the one above.
neighbour_main:
    mov ecx, NEIGHBOUR_YIELDS
neighbour_yield:
    call yield
    loop neighbour_yield
    lea edi, [clock]
    call read_clock
    say "clock "
    call print_clock
    call print_memory
    say "cmos marker byte "
    mov al, MARKER_REGISTER
    call cmos_read
    call put_hex8
    say "\n"
    lea esi, [neighbour_time]
    call set_clock
    lea edi, [clock]
    call read_clock
    say "own clock set, reads "
    call print_clock
    ret

# check_data_modes: a BCD reading, a binary one, a BCD one again (until
# the two BCD readings agree: a tick may fall between them); each BCD
# field converted must equal the binary one.  Clobbers: EAX-EDI.
check_data_modes:
    lea edi, [clock]
    call read_clock
    mov al, REG_B
    mov ah, B_NORMAL | B_DM_BINARY
    call cmos_write
    lea edi, [binary_clock]
    call read_clock
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    lea edi, [scratch]
    call read_clock
    mov eax, [clock]
    cmp eax, [scratch]
    jne check_data_modes
    mov eax, [clock + 4]
    cmp eax, [scratch + 4]
    jne check_data_modes
    xor ecx, ecx
check_data_modes_field:
    mov al, [clock + ecx]
    call bcd_to_binary
    cmp al, [binary_clock + ecx]
    jne check_data_modes_differ
    inc ecx
    cmp ecx, FIELDS
    jb check_data_modes_field
    say "BCD and binary readings agree\n"
    ret
check_data_modes_differ:
    fail "a BCD and a binary reading of one moment differ"
    ret

# wait_tick: poll register A and the seconds every POLL_TICKS TSC cycles
# until the seconds turn over; UIP must have been seen before they did.
# Clobbers: EAX-EDI.
wait_tick:
    mov al, REG_SECONDS
    call cmos_read
    mov bl, al
    xor ebp, ebp                              # UIP seen
    mov esi, POLL_LIMIT
wait_tick_poll:
    rdtsc
    mov edi, eax
wait_tick_spin:
    rdtsc
    sub eax, edi
    cmp eax, POLL_TICKS
    jb wait_tick_spin
    mov al, REG_A
    call cmos_read
    test al, A_UIP
    jz wait_tick_seconds
    mov ebp, 1
wait_tick_seconds:
    mov al, REG_SECONDS
    call cmos_read
    cmp al, bl
    jne wait_tick_ticked
    dec esi
    jnz wait_tick_poll
    fail "the seconds never turned over"
    ret
wait_tick_ticked:
    test ebp, ebp
    jz wait_tick_no_uip
    say "the seconds turned over after UIP\n"
    ret
wait_tick_no_uip:
    fail "the seconds turned over without UIP before"
    ret

# check_12_hour: with the clock held (SET), hours written in 24-hour mode
# and read in 12-hour mode, BCD and binary, then the other way round.
# Prints "12-hour: <reads>; written: <reads back in 24-hour mode>".
# Clobbers: EAX-ESI.
check_12_hour:
    mov al, REG_B
    mov ah, B_NORMAL | B_SET
    call cmos_write
    say "12-hour:"
    lea esi, [hours_24]
check_12_hour_read:
    movzx eax, byte ptr [esi]
    cmp al, 0xFF
    je check_12_hour_written
    mov ah, [esi + 1]                         # register B to read it with
    push eax
    mov al, REG_B
    mov ah, B_NORMAL | B_SET
    call cmos_write
    mov al, REG_HOURS
    mov ah, [esi]
    call cmos_write
    pop eax
    mov al, REG_B
    call cmos_write
    mov al, REG_HOURS
    call cmos_read
    say " "
    call put_hex8
    add esi, 2
    jmp check_12_hour_read
check_12_hour_written:
    say "; written:"
    lea esi, [hours_12]
check_12_hour_write:
    cmp byte ptr [esi], 0xFF
    je check_12_hour_done
    mov al, REG_B
    mov ah, [esi + 1]                         # register B to write it with
    call cmos_write
    mov al, REG_HOURS
    mov ah, [esi]
    call cmos_write
    mov al, REG_B
    mov ah, B_NORMAL | B_SET
    call cmos_write
    mov al, REG_HOURS
    call cmos_read
    say " "
    call put_hex8
    add esi, 2
    jmp check_12_hour_write
check_12_hour_done:
    say "\n"
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    ret

# set_clock: set the clock to the eight BCD fields at ESI (as
# `time_registers` lists them) the way a driver does: SET, the fields,
# then SET clear.  Clobbers: EAX, ECX.
set_clock:
    mov al, REG_B
    mov ah, B_NORMAL | B_SET
    call cmos_write
    xor ecx, ecx
set_clock_field:
    mov al, [time_registers + ecx]
    mov ah, [esi + ecx]
    call cmos_write
    inc ecx
    cmp ecx, FIELDS
    jb set_clock_field
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    ret

# freeze_clock: hold the clock (SET) and read the held fields into [EDI],
# then let it run again.  Clobbers: EAX, ECX.
freeze_clock:
    mov al, REG_B
    mov ah, B_NORMAL | B_SET
    call cmos_write
    call read_fields
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    ret

# read_clock: the eight time registers into [EDI], read after UIP is
# clear and until two readings in a row agree.  Clobbers: EAX, ECX.
read_clock:
    call read_fields
    push edi
    lea edi, [scratch]
    call read_fields
    pop edi
    mov eax, [edi]
    cmp eax, [scratch]
    jne read_clock
    mov eax, [edi + 4]
    cmp eax, [scratch + 4]
    jne read_clock
    ret

# read_fields: wait until UIP is clear, then read the eight time
# registers into [EDI].  Clobbers: EAX, ECX.
read_fields:
    mov al, REG_A
    call cmos_read
    test al, A_UIP
    jnz read_fields
    xor ecx, ecx
read_fields_next:
    mov al, [time_registers + ecx]
    call cmos_read
    mov [edi + ecx], al
    inc ecx
    cmp ecx, FIELDS
    jb read_fields_next
    ret

# print_clock: the BCD fields at [EDI] as "CCYY-MM-DD HH:MM:SS day N\n".
# print_date: the same without the day of week and newline.
# Preserve all registers.
print_clock:
    call print_date
    say " day "
    push eax
    mov al, [edi + FIELD_DAY_OF_WEEK]
    call put_hex8
    pop eax
    say "\n"
    ret
print_date:
    push eax
    push ecx
    push esi
    lea esi, [date_format]
print_date_next:
    movzx ecx, byte ptr [esi]                 # field, then the character after it
    cmp cl, 0xFF
    je print_date_done
    mov al, [edi + ecx]
    call put_hex8
    mov al, [esi + 1]
    test al, al
    jz print_date_field_done
    call putc
print_date_field_done:
    add esi, 2
    jmp print_date_next
print_date_done:
    pop esi
    pop ecx
    pop eax
    ret

# print_memory: "cmos memory: base B extended E post P above 16M M above
# 4G G equipment Q checksum ok" (multi-byte values high byte first).
# Clobbers: EAX, ECX, EDX, ESI.
print_memory:
    say "cmos memory:"
    lea esi, [memory_bytes]
print_memory_item:
    movzx ecx, byte ptr [esi]                 # bytes, then the register of the highest
    test ecx, ecx
    jz print_memory_checksum
    say " "
    push esi
    mov esi, [esi + 4]
    call puts
    pop esi
    say " "
    mov dl, [esi + 1]
print_memory_byte:
    mov al, dl
    call cmos_read
    call put_hex8
    dec dl
    loop print_memory_byte
    add esi, 8
    jmp print_memory_item
print_memory_checksum:
    xor edx, edx
    mov ecx, CHECKSUM_FIRST
print_memory_sum:
    mov al, cl
    call cmos_read
    movzx eax, al
    add edx, eax
    inc ecx
    cmp ecx, CHECKSUM_LAST
    jbe print_memory_sum
    mov al, CHECKSUM_HIGH
    call cmos_read
    mov ah, al
    mov al, CHECKSUM_LOW
    call cmos_read
    movzx eax, ax
    cmp eax, edx
    jne print_memory_bad
    say " checksum ok\n"
    ret
print_memory_bad:
    say " checksum BAD\n"
    ret

# bcd_to_binary: AL in BCD to binary.  Preserves other registers.
bcd_to_binary:
    push edx
    mov dl, al
    and dl, 0xF
    shr al, 4
    mov dh, 10
    mul dh
    add al, dl
    pop edx
    ret

    .section .rodata
# The time registers, in the order the kernel keeps their values.
time_registers: .byte 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32
# (field, character after it) for "CCYY-MM-DD HH:MM:SS".
date_format:    .byte 7, 0, 6, '-', 5, '-', 4, ' ', 2, ':', 1, ':', 0, 0, 0xFF, 0
# Clocks set, BCD: seconds, minutes, hours, day of week, day, month, year, century.
new_year_eve:   .byte 0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19
neighbour_time: .byte 0x07, 0x07, 0x07, 0x01, 0x07, 0x07, 0x77, 0x20
carries:
    .byte 0x30, 0x00, 0x12, 0x01, 0x29, 0x02, 0x00, 0x21   # 2100-02-29: no leap day in 2100
    .byte 0x30, 0x00, 0x12, 0x01, 0x29, 0x02, 0x00, 0x20   # 2000-02-29: a leap day
    .byte 0x30, 0x00, 0x12, 0x01, 0x29, 0x02, 0x00, 0x19   # 1900-02-29: none in 1900
    .byte 0x30, 0x30, 0x06, 0x01, 0x29, 0x02, 0x23, 0x20   # 2023-02-29
    .byte 0x60, 0x59, 0x23, 0x01, 0x31, 0x12, 0x99, 0x19   # second 60 carries into 2000
    .byte 0x30, 0x00, 0x00, 0x01, 0x01, 0x13, 0x24, 0x20   # month 13
    .byte 0x30, 0x00, 0x00, 0x01, 0x00, 0x03, 0x24, 0x20   # day 0 of March
    .byte 0x30, 0x00, 0x24, 0x01, 0x29, 0x02, 0x24, 0x20   # hour 24
    .byte 0x30, 0x59, 0x23, 0x01, 0x31, 0x12, 0x99, 0x99   # the last year the registers hold
    .byte 0xFF
# (hour as written in 24-hour BCD, register B to read it with)
hours_24:
    .byte 0x13, B_SET, 0x00, B_SET, 0x12, B_SET, 0x23, B_SET, 0x09, B_SET
    .byte 0x23, B_SET | B_DM_BINARY, 0x00, B_SET | B_DM_BINARY, 0x12, B_SET | B_DM_BINARY, 0xFF
# (hour as written, register B to write it with)
hours_12:
    .byte 0x12, B_SET, 0x92, B_SET, 0x85, B_SET, 0x01, B_SET
    .byte 0x8B, B_SET | B_DM_BINARY, 0xFF
# (bytes, register of the highest byte, name) of the memory-size values
memory_bytes:
    .byte 2, 0x16, 0, 0
    .long text_base
    .byte 2, 0x18, 0, 0
    .long text_extended
    .byte 2, 0x31, 0, 0
    .long text_post
    .byte 2, 0x35, 0, 0
    .long text_above_16m
    .byte 3, 0x5D, 0, 0
    .long text_above_4g
    .byte 1, 0x14, 0, 0
    .long text_equipment
    .byte 0
text_base:      .asciz "base"
text_extended:  .asciz "extended"
text_post:      .asciz "post"
text_above_16m: .asciz "above 16M"
text_above_4g:  .asciz "above 4G"
text_equipment: .asciz "equipment"

    .bss
clock:          .skip FIELDS
binary_clock:   .skip FIELDS
scratch:        .skip FIELDS
