# A multiboot v1 kernel (ELF32, loaded at 1 MiB) that reports what its boot
# loader handed it: the magic in EAX, and from the multiboot information at
# EBX the memory sizes, the memory map, the command line, the boot loader's
# name and each module's string and first line.  Exits with code 0.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .set MULTIBOOT_HEADER_MAGIC, 0x1BADB002
    .set MULTIBOOT_FLAGS, 0x3                 # page-aligned modules, memory information
    .set MULTIBOOT_BOOTLOADER_MAGIC, 0x2BADB002

    .section .multiboot, "a"
    .balign 4
    .long MULTIBOOT_HEADER_MAGIC, MULTIBOOT_FLAGS, -(MULTIBOOT_HEADER_MAGIC + MULTIBOOT_FLAGS)

    .text
    .globl _start
_start:
    mov esp, offset stack_top
    mov ebp, ebx                              # the multiboot information
    cmp eax, MULTIBOOT_BOOTLOADER_MAGIC
    lea esi, [text_magic_ok]
    je 1f
    lea esi, [text_magic_bad]
1:  print_string
    lea esi, [text_flags]
    mov eax, [ebp]
    call print_labelled
    lea esi, [text_lower]
    mov eax, [ebp + 4]
    call print_labelled
    lea esi, [text_upper]
    mov eax, [ebp + 8]
    call print_labelled
    lea esi, [text_cmdline]
    print_string
    mov esi, [ebp + 16]
    print_string
    call newline
    lea esi, [text_loader]
    print_string
    mov esi, [ebp + 64]
    print_string
    call newline
    # the memory map: size, base (64), length (64), type per entry
    mov edi, [ebp + 48]
    mov ebx, edi
    add ebx, [ebp + 44]
mmap_entry:
    cmp edi, ebx
    jae mmap_done
    lea esi, [text_mmap]
    mov eax, [edi + 4]
    call print_labelled_nl
    lea esi, [text_length]
    mov eax, [edi + 12]
    call print_labelled_nl
    lea esi, [text_type]
    mov eax, [edi + 20]
    call print_labelled
    add edi, [edi]
    add edi, 4
    jmp mmap_entry
mmap_done:
    # the modules: string, then the module's bytes up to its first newline
    mov edi, [ebp + 24]
    mov ebx, [ebp + 20]
module_entry:
    test ebx, ebx
    jz modules_done
    lea esi, [text_module]
    print_string
    mov esi, [edi + 8]
    print_string
    lea esi, [text_says]
    print_string
    mov esi, [edi]
module_byte:
    lodsb
    cmp al, 10
    je module_line_done
    putc_al
    jmp module_byte
module_line_done:
    call newline
    lea esi, [text_aligned]
    mov eax, [edi]
    and eax, 0xFFF
    call print_labelled
    add edi, 16
    dec ebx
    jmp module_entry
modules_done:
    xor ebx, ebx
    exit_with_ebx
    hlt

# print_labelled: the string at ESI, then EAX in hex and a newline
# (print_labelled_nl: a space instead of the newline).  Clobbers: EAX, ECX, EDX, ESI.
print_labelled:
    call print_labelled_nl
    jmp newline
print_labelled_nl:
    push eax
    print_string
    pop eax
    mov ecx, 8
hex_digit:
    rol eax, 4
    push eax
    and eax, 0xF
    cmp eax, 10
    jb 2f
    add eax, 'a' - '0' - 10
2:  add eax, '0'
    push ecx
    putc_al
    pop ecx
    pop eax
    dec ecx
    jnz hex_digit
    mov al, ' '
    putc_al
    ret
newline:
    mov al, 10
    putc_al
    ret

    .section .rodata
text_magic_ok:  .asciz "magic 0x2badb002 in eax\n"
text_magic_bad: .asciz "WRONG MAGIC in eax\n"
text_flags:     .asciz "flags "
text_lower:     .asciz "mem_lower "
text_upper:     .asciz "mem_upper "
text_cmdline:   .asciz "cmdline "
text_loader:    .asciz "boot loader "
text_mmap:      .asciz "mmap base "
text_length:    .asciz "length "
text_type:      .asciz "type "
text_module:    .asciz "module "
text_says:      .asciz " says "
text_aligned:   .asciz "module page offset "

    .bss
    .balign 16
stack:  .skip 4096
stack_top:
