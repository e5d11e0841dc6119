# A multiboot test kernel for the fw_cfg device (QEMU docs/specs/fw_cfg.rst,
# traditional I/O interface), read the way firmware does: a 16-bit write
# of the selector to port 0x510, then the item byte by byte from 0x511.
# Prints:
#   signature QEMU
#   id 0x........                     the feature bitmap (bit 0: this interface)
#   ram size high 0x........ low 0x........
#   cpus 0x.... max cpus 0x....
#   file directory: 0x........ files  (its count is big-endian)
#   past the end: .. ..               the two bytes after the signature
#   unknown selector: 0x........
#   byte-wide selector: id ..         an 8-bit write of the selector
    .include "kernel.inc"

.set FW_CFG_SELECTOR, 0x510
.set FW_CFG_DATA, 0x511
.set FW_CFG_SIGNATURE, 0x0000
.set FW_CFG_ID, 0x0001
.set FW_CFG_RAM_SIZE, 0x0003
.set FW_CFG_NB_CPUS, 0x0005
.set FW_CFG_MAX_CPUS, 0x000F
.set FW_CFG_FILE_DIR, 0x0019
.set UNKNOWN_SELECTOR, 0x1234
.set SIGNATURE_LENGTH, 4

kernel_main:
    mov ax, FW_CFG_SIGNATURE
    call fw_cfg_select
    say "signature "
    mov ecx, SIGNATURE_LENGTH
signature_byte:
    call fw_cfg_byte
    call putc
    loop signature_byte
    say "\npast the end: "
    call fw_cfg_byte
    call put_hex8
    say " "
    call fw_cfg_byte
    call put_hex8

    say "\nid "
    mov ax, FW_CFG_ID
    call fw_cfg_select
    call fw_cfg_le32
    call put_hex32

    say "\nram size high "
    mov ax, FW_CFG_RAM_SIZE
    call fw_cfg_select
    call fw_cfg_le32
    mov ebx, eax
    call fw_cfg_le32
    call put_hex32
    say " low "
    mov eax, ebx
    call put_hex32

    say "\ncpus "
    mov ax, FW_CFG_NB_CPUS
    call fw_cfg_select
    call fw_cfg_le16
    call put_hex32
    say " max cpus "
    mov ax, FW_CFG_MAX_CPUS
    call fw_cfg_select
    call fw_cfg_le16
    call put_hex32

    say "\nfile directory: "
    mov ax, FW_CFG_FILE_DIR
    call fw_cfg_select
    call fw_cfg_le32
    bswap eax
    call put_hex32
    say " files\nunknown selector: "
    mov ax, UNKNOWN_SELECTOR
    call fw_cfg_select
    call fw_cfg_le32
    call put_hex32

    say "\nbyte-wide selector: id "
    mov al, FW_CFG_ID
    mov dx, FW_CFG_SELECTOR
    out dx, al
    call fw_cfg_byte
    call put_hex8
    say "\n"
    ret

# fw_cfg_select: select item AX (a 16-bit write).  Clobbers: EDX.
fw_cfg_select:
    mov dx, FW_CFG_SELECTOR
    out dx, ax
    ret

# fw_cfg_byte: OUT: AL = the item's next byte.  Clobbers: EDX.
fw_cfg_byte:
    mov dx, FW_CFG_DATA
    in al, dx
    ret

# fw_cfg_le16, fw_cfg_le32: the next 2 or 4 bytes, little-endian, in EAX.
# Clobbers: ECX, EDX.
fw_cfg_le16:
    mov ecx, 2
    jmp fw_cfg_le
fw_cfg_le32:
    mov ecx, 4
fw_cfg_le:
    push ecx
    xor eax, eax
fw_cfg_le_byte:
    call fw_cfg_byte
    ror eax, 8
    loop fw_cfg_le_byte
    pop ecx
    neg ecx
    add ecx, 4
    shl ecx, 3
    shr eax, cl                               # 2 bytes: they ended in the top half
    ret
