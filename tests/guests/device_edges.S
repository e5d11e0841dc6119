# A multiboot test kernel that feeds the guest's PC devices what a
# careless or hostile driver might: indexes out of range, accesses of the
# wrong size, reads of write-only registers, writes of read-only ones,
# commands the devices ignore, and values next to the reset values that
# must not reset.  Each device's checks end with one line:
#   rtc: hostile accesses checked
#   fw_cfg: hostile accesses checked
#   i8042: hostile accesses checked
#   port A and reset control: hostile accesses checked
# and a failed check prints "FAIL: ...".  Had a reset happened, the
# hypervisor would have reported it and the lines after it would be missing.
    .include "kernel.inc"

.set REG_SECONDS, 0x00
.set REG_A, 0x0A
.set REG_B, 0x0B
.set REG_C, 0x0C
.set REG_D, 0x0D
.set LAST_REGISTER, 0x7F
.set NMI_DISABLE, 0x80
.set A_POWER_ON, 0x26
.set B_SET, 0x80
.set B_UIE, 0x10
.set B_NORMAL, 0x02
.set C_UF, 0x10
.set D_VRT, 0x80
.set PROBE, 0x5A
.set FW_CFG_SELECTOR, 0x510
.set FW_CFG_DATA, 0x511
.set FW_CFG_WRITE_CHANNEL, 0x4000
.set FW_CFG_ARCH_LOCAL, 0x8000
.set I8042_DATA, 0x60
.set I8042_STATUS, 0x64
.set I8042_SYS, 0x04
.set I8042_OBF, 0x01
.set CTR_POWER_ON, 0x44                   # system flag, translation
.set SYSTEM_CONTROL_A, 0x92
.set A20, 0x02
.set RESET_CONTROL, 0xCF9
.set RESET_TYPE_BITS, 0x0A                # FULL_RST | SYS_RST
.set PCI_CONFIG_ADDRESS, 0xCF8

kernel_main:
    call rtc_edges
    call fw_cfg_edges
    call i8042_edges
    call reset_edges
    ret

rtc_edges:
    in al, RTC_INDEX
    expect_al 0xFF, "port 0x70 is write-only"
    mov al, REG_A | NMI_DISABLE               # bit 7 disables NMIs; the register is still A
    call cmos_read
    and al, 0x7F
    expect_al A_POWER_ON, "index 0x8a selects register A"
    mov al, 0xFF                              # index 0xFF is register 0x7F
    mov ah, PROBE
    call cmos_write
    mov al, LAST_REGISTER
    call cmos_read
    expect_al PROBE, "index 0xff wraps to register 0x7f"
    mov ax, REG_A                             # a word write of the index: not decoded
    out RTC_INDEX, ax
    in al, RTC_DATA
    expect_al PROBE, "a word write of the index changes nothing"
    in ax, RTC_DATA
    movzx eax, ax
    expect_eax 0xFFFF, "a word read of the data port"
    in eax, RTC_DATA
    expect_eax 0xFFFFFFFF, "a dword read of the data port"
    mov eax, 0x11111111
    out RTC_DATA, eax
    in al, RTC_DATA
    expect_al PROBE, "a dword write of the data port changes nothing"
    mov al, REG_D
    mov ah, 0
    call cmos_write
    mov al, REG_D
    call cmos_read
    expect_al D_VRT, "register D is read-only"
    mov al, REG_C
    mov ah, 0xFF
    call cmos_write
    mov al, REG_C
    call cmos_read
    and al, ~C_UF & 0xFF
    expect_al 0, "register C is read-only, UF its only flag"
    mov al, REG_A
    mov ah, 0xFF
    call cmos_write
    mov al, REG_A
    call cmos_read
    and al, 0x7F
    expect_al 0x7F, "register A keeps its divider and rate bits"
    mov al, REG_A
    mov ah, A_POWER_ON
    call cmos_write
    mov al, REG_B
    mov ah, B_SET | B_UIE | B_NORMAL
    call cmos_write
    mov al, REG_B
    call cmos_read
    expect_al B_SET | B_NORMAL, "setting SET clears UIE"
    mov al, REG_SECONDS                       # 0xFF is no BCD second: it carries
    mov ah, 0xFF
    call cmos_write
    mov al, REG_B
    mov ah, B_NORMAL
    call cmos_write
    mov al, REG_SECONDS
    call cmos_read
    mov ah, al
    and ah, 0xF
    cmp ah, 9
    ja rtc_edges_bad_second
    cmp al, 0x59
    jbe rtc_edges_done
rtc_edges_bad_second:
    fail "a second of 0xff left the clock reading no BCD second"
rtc_edges_done:
    say "rtc: hostile accesses checked\n"
    ret

fw_cfg_edges:
    mov dx, FW_CFG_SELECTOR
    in al, dx
    expect_al 0xFF, "the selector is write-only"
    xor eax, eax
    out dx, ax
    mov dx, FW_CFG_DATA
    in al, dx
    expect_al 'Q', "the signature's first byte"
    mov dx, FW_CFG_SELECTOR
    mov eax, 3                                # a dword write of the selector: not decoded
    out dx, eax
    mov dx, FW_CFG_DATA
    in al, dx
    expect_al 'E', "a dword write of the selector changes nothing"
    in ax, dx
    movzx eax, ax
    expect_eax 0xFFFF, "a word read of the data port"
    in al, dx
    expect_al 'M', "a word read of the data port moves nothing"
    mov al, 0
    out dx, al                                # no item is writable
    in al, dx
    expect_al 'U', "a write of the data port changes nothing"
    in al, dx
    expect_al 0, "past the item's end"
    mov dx, FW_CFG_SELECTOR
    mov ax, FW_CFG_WRITE_CHANNEL
    out dx, ax
    mov dx, FW_CFG_DATA
    in al, dx
    expect_al 'Q', "selector bit 14 names the same item"
    mov dx, FW_CFG_SELECTOR
    mov ax, FW_CFG_ARCH_LOCAL
    out dx, ax
    mov dx, FW_CFG_DATA
    in al, dx
    expect_al 0, "no architecture item 0"
    mov dx, FW_CFG_SELECTOR
    mov ax, 0xFFFF
    out dx, ax
    mov dx, FW_CFG_DATA
    in al, dx
    expect_al 0, "selector 0xffff"
    say "fw_cfg: hostile accesses checked\n"
    ret

i8042_edges:
    in al, I8042_STATUS
    expect_al I8042_SYS, "status at power-on"
    in al, I8042_DATA
    expect_al 0, "port 0x60 with nothing waiting"
    mov al, 0x20                              # read the command byte
    out I8042_STATUS, al
    in al, I8042_STATUS
    expect_al I8042_SYS | I8042_OBF, "status with the command byte waiting"
    in al, I8042_DATA
    expect_al CTR_POWER_ON, "the command byte"
    in al, I8042_STATUS
    expect_al I8042_SYS, "status once it was read"
    mov al, 0x60                              # write the command byte: no system flag
    out I8042_STATUS, al
    mov al, CTR_POWER_ON & ~I8042_SYS
    out I8042_DATA, al
    in al, I8042_STATUS
    expect_al 0, "SYS follows the command byte"
    mov al, 0x60
    out I8042_STATUS, al
    mov al, CTR_POWER_ON
    out I8042_DATA, al
    mov al, 0xAB                              # interface test
    out I8042_STATUS, al
    in al, I8042_DATA
    expect_al 0, "interface test"
    mov ax, 0xFEFE                            # a word write of a reset pulse: not decoded
    out I8042_STATUS, ax
    in ax, I8042_STATUS
    movzx eax, ax
    expect_eax 0xFFFF, "a word read of the status"
    mov al, 0xFF                              # pulse no output bit
    out I8042_STATUS, al
    mov al, 0xF1                              # pulse bits 1-3, not the reset line
    out I8042_STATUS, al
    mov al, 0xD1                              # write the output port: ignored
    out I8042_STATUS, al
    mov al, 0
    out I8042_DATA, al
    in al, I8042_STATUS
    expect_al I8042_SYS, "status after ignored commands"
    say "i8042: hostile accesses checked\n"
    ret

reset_edges:
    in al, SYSTEM_CONTROL_A
    expect_al A20, "port A at power-on: A20 on"
    mov al, 0
    out SYSTEM_CONTROL_A, al
    in al, SYSTEM_CONTROL_A
    expect_al 0, "port A keeps what was written"
    mov ax, 0x0303                            # a word write with the fast reset bit: not decoded
    out SYSTEM_CONTROL_A, ax
    in al, SYSTEM_CONTROL_A
    expect_al 0, "a word write of port A changes nothing"
    mov al, A20
    out SYSTEM_CONTROL_A, al
    mov dx, RESET_CONTROL
    in al, dx
    expect_al 0, "reset control at power-on"
    mov al, 0xFF & ~0x04                      # every bit but RST_CPU
    out dx, al
    in al, dx
    expect_al RESET_TYPE_BITS, "reset control keeps the reset type bits"
    mov ax, 0x0606                            # a word write with RST_CPU: not decoded
    out dx, ax
    mov dx, PCI_CONFIG_ADDRESS                # a dword at 0xCF8 is the PCI address register
    mov eax, 0x06060606
    out dx, eax
    mov dx, RESET_CONTROL
    in ax, dx
    movzx eax, ax
    expect_eax 0xFFFF, "a word read of reset control"
    mov al, 0
    out dx, al
    say "port A and reset control: hostile accesses checked\n"
    ret
