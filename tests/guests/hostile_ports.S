# A hostile guest: every I/O port, and the ports that reset or end a
# machine or an emulator.  Each line it prints is a result:
#   ports: 65536 read, N not 0xff outside COM1, the ACPI PM block and the devices listed next
#   ports: COM1 reads 0x.. (its eight registers, 0x3F8-0x3FF)
#   ports: devices read P V ...  (the other emulated devices' ports, as the sweep read them)
#   ports: 65525 written with 0xfe (all but COM1, the debug-exit port, and 0x64 and 0xcf9,
#          where 0xfe resets the guest)
#   ports: COM1 scratch reads back 0x5a
#   ports: wrote V to P, still running      (next to a reset value, an exit or shutdown port)
#   ports: ACPI PM: W word writes, R word reads not 0xffff, D dword reads not 0xffffffff
#          (the emulators' PM blocks; the guest's own, 0x600-0x605, is
#          hostile_acpi_pm.S's to attack: an S5 request there ends the guest)
#   ports: PCI config address 0x80000000 reads 0x...
# then it exits with code 0.  Had a write reached the machine or the
# emulator, the run would have ended there.
    .include "catcher.inc"
    .globl _start

.set PORTS, 0x10000
.set SWEEP_VALUE, 0xFE                    # a keyboard-controller reset pulse at 0x64
.set COM1_LAST, COM1 + 7
.set COM1_SCR, COM1 + 7
.set SCRATCH_VALUE, 0x5A
# The emulated devices reset the guest on these (README, "The guest's
# view"); a reset is tested on its own (tests/boot/test_devices.py), so
# here they get the values beside the reset values.
.set KBC_COMMAND, 0x64
.set KBC_PULSE_NONE, 0xFF                 # 0xF0-0xFF pulse the bits that are 0: none
.set KBC_PULSE_NOT_RESET, 0xF1            # bits 1-3, not the reset line (bit 0)
.set RESET_CONTROL, 0xCF9                 # PIIX/ICH reset control register
.set RESET_CONTROL_NO_CPU, 0xFB           # every bit but RST_CPU
.set RESET_CONTROL_TYPE, 0x0A             # FULL_RST | SYS_RST, without RST_CPU
.set SYSTEM_CONTROL_A, 0x92               # bit 0: fast reset, when it goes from 0 to 1
.set PORT_A_NO_RESET, 0xFE                # bit 0 stays 0
.set QEMU_DEBUG_EXIT, 0xF4                # QEMU's isa-debug-exit
.set BOCHS_SHUTDOWN, 0x8900                # Bochs: "Shutdown" written there powers off
.set DEBUG_EXIT_ALTERNATE, 0x501          # where test setups often put QEMU's isa-debug-exit
.set QEMU_DEBUGCON, 0x402                 # QEMU's debugcon and SeaBIOS' debug output
.set BOCHS_E9, 0xE9                       # Bochs' port E9 hack
.set PM1_SLP_EN, 0x2000                   # ACPI PM1 control: sleep enable, SLP_TYP in bits 12:10
.set PM1_SLP_TYP_SHIFT, 10
.set SLEEP_TYPES, 8
.set PCI_CONFIG_ADDRESS, 0xCF8
.set PCI_CONFIG_DATA, 0xCFC
.set PCI_ENABLE_BUS0_DEVICE0, 0x80000000
.set OWN_PM_FIRST, 0x600                  # the guest's ACPI PM1a event and control blocks
.set OWN_PM_LAST, 0x605
.set OWN_PM_TIMER_FIRST, 0x608            # then its PM timer, a count: it reads anything
.set OWN_PM_TIMER_LAST, 0x60B

# poke PORT, VALUE: OUT of the byte VALUE to PORT, then say it survived.
.macro poke port:req, value:req
    mov dx, \port
    mov al, \value
    out dx, al
    say "ports: wrote "
    mov eax, \value
    say_hex rax
    say " to "
    mov eax, \port
    say_hex rax
    say ", still running\n"
.endm

_start:
    hostile_start

# Read every port once (IN AL): nothing but COM1, the guest's own ACPI PM
# registers and timer and the virtual PC's devices may answer.  What the ports of
# the devices in `device_ports` read is kept, in `device_reads`.
    xor r12d, r12d                            # port
    xor r13d, r13d                            # reads outside the devices that were not 0xff
read_port:
    mov edx, r12d
    in al, dx
    cmp r12d, OWN_PM_FIRST
    jb read_com1
    cmp r12d, OWN_PM_TIMER_LAST
    jbe read_next
read_com1:
    cmp r12d, COM1
    jb read_device
    cmp r12d, COM1_LAST
    jbe read_next
read_device:
    lea rsi, [rip + device_ports]
    xor ecx, ecx
read_device_next:
    movzx edi, word ptr [rsi + rcx * 2]
    test edi, edi
    jz read_check
    cmp edi, r12d
    je read_device_keep
    inc ecx
    jmp read_device_next
read_device_keep:
    lea rdi, [rip + device_reads]
    mov [rdi + rcx], al
    jmp read_next
read_check:
    cmp al, 0xFF
    je read_next
    inc r13
read_next:
    inc r12d
    cmp r12d, PORTS
    jb read_port
    say "ports: "
    say_dec r12
    say " read, "
    say_dec r13
    say " not 0xff outside COM1, the ACPI PM block and the devices listed next\n"

    say "ports: COM1 reads"
    mov r12d, COM1
com1_read:
    say " "
    mov edx, r12d
    in al, dx
    movzx eax, al
    say_hex rax
    inc r12d
    cmp r12d, COM1_LAST
    jbe com1_read
    say "\n"

    say "ports: devices read"
    lea rsi, [rip + device_ports]
    lea rdi, [rip + device_reads]
device_read:
    movzx eax, word ptr [rsi]
    test eax, eax
    jz device_read_done
    say " "
    say_hex rax
    movzx eax, byte ptr [rdi]
    say " "
    say_hex rax
    add rsi, 2
    inc rdi
    jmp device_read
device_read_done:
    say "\n"

# Write SWEEP_VALUE to every port but COM1 (whose THR would print it and
# whose LCR would change the line format), the debug-exit port (a write
# there ends the guest: README, "The guest's view"), and the two where
# SWEEP_VALUE resets the guest: the 8042's reset pulse, and RST_CPU in
# the reset control register.
    xor r12d, r12d
    xor r13d, r13d                            # ports written
write_port:
    cmp r12d, QEMU_DEBUG_EXIT
    je write_next
    cmp r12d, KBC_COMMAND
    je write_next
    cmp r12d, RESET_CONTROL
    je write_next
    cmp r12d, COM1
    jb write_out
    cmp r12d, COM1_LAST
    jbe write_next
write_out:
    mov edx, r12d
    mov al, SWEEP_VALUE
    out dx, al
    inc r13
write_next:
    inc r12d
    cmp r12d, PORTS
    jb write_port
    say "ports: "
    say_dec r13
    say " written with 0xfe (all but COM1, the debug-exit port, 0x64 and 0xcf9)\n"

    mov dx, COM1_SCR
    mov al, SCRATCH_VALUE
    out dx, al
    in al, dx
    movzx eax, al
    say "ports: COM1 scratch reads back "
    say_hex rax
    say "\n"

# The values beside the resets a PC knows, then the emulators' exit and
# shutdown ports.
    poke KBC_COMMAND, KBC_PULSE_NONE
    poke KBC_COMMAND, KBC_PULSE_NOT_RESET
    poke RESET_CONTROL, RESET_CONTROL_NO_CPU
    poke RESET_CONTROL, RESET_CONTROL_TYPE
    poke SYSTEM_CONTROL_A, PORT_A_NO_RESET
    poke DEBUG_EXIT_ALTERNATE, 0x00
    poke QEMU_DEBUGCON, 'X'
    poke BOCHS_E9, 'X'
    mov dx, BOCHS_SHUTDOWN
    lea rsi, [rip + shutdown_command]
shutdown_byte:
    lodsb
    test al, al
    jz shutdown_done
    out dx, al
    jmp shutdown_byte
shutdown_done:
    say "ports: wrote Shutdown to 0x8900, still running\n"

# ACPI PM1 control at each even port of the PM blocks QEMU and Bochs use
# (but the guest's own): every sleep type with SLP_EN (type 5 is soft-off
# on both), then word and dword reads of every port there but the guest's
# PM timer.
    xor r13d, r13d                            # word writes
    xor r14d, r14d                            # word reads not 0xffff
    xor r15d, r15d                            # dword reads not 0xffffffff
    lea rbx, [rip + pm_blocks]
pm_block:
    movzx r12d, word ptr [rbx]                # port
    movzx r11d, word ptr [rbx + 2]            # end
    test r12d, r12d
    jz pm_done
pm_port:
    xor ecx, ecx                              # sleep type
pm_sleep_type:
    mov eax, ecx
    shl eax, PM1_SLP_TYP_SHIFT
    or eax, PM1_SLP_EN
    mov edx, r12d
    out dx, ax
    inc r13
    inc ecx
    cmp ecx, SLEEP_TYPES
    jb pm_sleep_type
    cmp r12d, OWN_PM_TIMER_FIRST              # the guest's PM timer: written, but its count
    jb pm_read                                # is not read as a sign of a device
    cmp r12d, OWN_PM_TIMER_LAST
    jbe pm_dword_ok
pm_read:
    mov edx, r12d
    in ax, dx
    cmp ax, 0xFFFF
    je pm_word_ok
    inc r14
pm_word_ok:
    mov edx, r12d
    in eax, dx
    cmp eax, 0xFFFFFFFF
    je pm_dword_ok
    inc r15
pm_dword_ok:
    add r12d, 2
    cmp r12d, r11d
    jb pm_port
    add rbx, 4
    jmp pm_block
pm_done:
    say "ports: ACPI PM: "
    say_dec r13
    say " word writes, "
    say_dec r14
    say " word reads not 0xffff, "
    say_dec r15
    say " dword reads not 0xffffffff\n"

    mov dx, PCI_CONFIG_ADDRESS
    mov eax, PCI_ENABLE_BUS0_DEVICE0
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    say "ports: PCI config address 0x80000000 reads "
    say_hex rax
    say "\n"

    xor ebx, ebx
    jmp exit_with

    .section .rodata
# The emulated devices' ports but COM1 (0 ends the list).
device_ports:
    .word 0x60, 0x64, 0x70, 0x71, 0x92, 0x510, 0x511, 0xCF9, 0
shutdown_command:
    .asciz "Shutdown"
pm_blocks:                                    # [first, end) of each block; 0 ends the list
    .word OWN_PM_LAST + 1, 0x610              # QEMU q35 (ICH9 PM base), past the guest's own
    .word 0xB000, 0xB040                      # QEMU i440fx and Bochs (PIIX4 PM base)
    .word 0x4000, 0x4040
    .word 0, 0

    .data
device_reads: .fill 8, 1, 0                # what the sweep read at each of device_ports
