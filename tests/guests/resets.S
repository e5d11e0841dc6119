# A multiboot test kernel that resets its machine the way system software
# does, by one of the PC's reset paths (--defsym I8042=1, RESET_CONTROL=1
# or PORT_A=1).  Each run prints "run NN", its restart count (CPUID
# 0x40000001 EBX).  The first run writes a marker into CMOS memory, says
# what the path's register reads before the reset, and resets:
#   i8042 self-test 55                the controller answers, then 0x64 <- 0xFE
#   reset control reads back 02       0xCF9 <- 0x02, then 0x06 (Linux's reboot=p)
#   port A 02                         A20 on; then bit 0 set: a fast reset
# A run after a restart prints "cmos marker byte A5" (the CMOS keeps its
# contents across a reset) and ends with 0 failed checks.
    .include "kernel.inc"

.set I8042_DATA, 0x60
.set I8042_STATUS, 0x64
.set I8042_COMMAND, 0x64
.set I8042_OBF, 0x01
.set I8042_IBF, 0x02
.set I8042_SELF_TEST, 0xAA
.set I8042_PULSE_RESET, 0xFE
.set I8042_TRIES, 0x10000
.set RESET_CONTROL_PORT, 0xCF9
.set RESET_CONTROL_SYS_RST, 0x02
.set RESET_CONTROL_RST_CPU, 0x04
.set SYSTEM_CONTROL_A, 0x92
.set FAST_RESET, 0x01
.set MARKER_REGISTER, 0x50
.set MARKER, 0xA5

kernel_main:
    mov eax, CPUID_HV_FEATURES
    cpuid
    say "run "
    mov eax, ebx
    call put_hex8
    say "\n"
    test ebx, ebx
    jnz after_reset
    mov al, MARKER_REGISTER
    mov ah, MARKER
    call cmos_write
.ifdef I8042
    call i8042_wait_input
    mov al, I8042_SELF_TEST
    out I8042_COMMAND, al
    mov ecx, I8042_TRIES
i8042_wait_output:
    in al, I8042_STATUS
    test al, I8042_OBF
    jnz i8042_answered
    loop i8042_wait_output
i8042_answered:
    in al, I8042_DATA
    say "i8042 self-test "
    call put_hex8
    say "\n"
    call i8042_wait_input                     # as Linux's reboot=k does
    mov al, I8042_PULSE_RESET
    out I8042_COMMAND, al
.endif
.ifdef RESET_CONTROL
    mov dx, RESET_CONTROL_PORT
    mov al, RESET_CONTROL_SYS_RST
    out dx, al
    in al, dx
    say "reset control reads back "
    call put_hex8
    say "\n"
    mov al, RESET_CONTROL_SYS_RST | RESET_CONTROL_RST_CPU
    out dx, al
.endif
.ifdef PORT_A
    in al, SYSTEM_CONTROL_A
    say "port A "
    call put_hex8
    say "\n"
    or al, FAST_RESET
    out SYSTEM_CONTROL_A, al
.endif
    fail "STILL RUNNING AFTER THE RESET"
    ret
after_reset:
    say "cmos marker byte "
    mov al, MARKER_REGISTER
    call cmos_read
    call put_hex8
    say "\n"
    ret

# i8042_wait_input: until the controller's input buffer is empty (at most
# I8042_TRIES reads).  Clobbers: AL, ECX.
i8042_wait_input:
    mov ecx, I8042_TRIES
i8042_wait_input_poll:
    in al, I8042_STATUS
    test al, I8042_IBF
    jz i8042_wait_input_done
    loop i8042_wait_input_poll
i8042_wait_input_done:
    ret
