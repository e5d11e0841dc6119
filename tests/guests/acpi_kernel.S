# A multiboot v1 kernel (ELF32, loaded at 1 MiB) that finds its platform
# tables as an OS does and powers itself off through ACPI:
#   - the RSDP: "RSD PTR " on a 16-byte boundary of 0xE0000-0xFFFFF with
#     both checksums right (ACPI 6.4 5.2.5.1, 5.2.5.3);
#   - the XSDT, and every table it points at, each with its checksum;
#   - from the FADT the DSDT, the SCI, the PM1a blocks, the PM timer (its
#     ticks over 2^22 TSC cycles, measured); in the DSDT's AML
#     the _S5 package and its first element, SLP_TYPa (20.2);
#   - the MADT's local APIC address and its entries;
#   - the MP floating pointer: "_MP_" on a 16-byte boundary of
#     0xF0000-0xFFFFF with its checksum, then the configuration table with
#     its own, and its entries (MP spec 1.4 chapter 4);
# then writes SLP_TYPa to PM1a_CNT and SLP_TYPa with SLP_EN, as ACPICA does.
# A line for each thing found; if the power-off does not happen it says so
# and exits with code 1.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .set MULTIBOOT_HEADER_MAGIC, 0x1BADB002
    .set MULTIBOOT_FLAGS, 0x3                 # page-aligned modules, memory information
    .set BIOS_AREA, 0xE0000
    .set BIOS_ROM, 0xF0000
    .set BIOS_AREA_END, 0x100000
    .set PARAGRAPH, 16
    .set RSDP_V1_LENGTH, 20
    .set RSDP_REVISION, 15
    .set RSDP_LENGTH, 20
    .set RSDP_XSDT, 24
    .set SDT_LENGTH, 4
    .set SDT_HEADER_SIZE, 36
    .set FADT_FACS, 36
    .set FADT_DSDT, 40
    .set FADT_SCI_INT, 46
    .set FADT_PM1A_EVT_BLK, 56
    .set FADT_PM1A_CNT_BLK, 64
    .set FADT_PM_TMR_BLK, 76
    .set FADT_PM_TMR_LEN, 91
    .set FADT_FLAGS, 112
    .set PM_TIMER_SPAN, 0x400000              # TSC cycles the PM timer is measured over
    .set FADT_X_DSDT, 140
    .set MADT_LAPIC_ADDRESS, 36
    .set MADT_FLAGS, 40
    .set MADT_ENTRIES, 44
    .set AML_PACKAGE_OP, 0x12
    .set AML_BYTE_PREFIX, 0x0A
    .set AML_ZERO_OP, 0x00
    .set AML_ONE_OP, 0x01
    .set MP_CONFIG, 4
    .set MP_LENGTH, 8
    .set MP_SPEC, 9
    .set MPC_LENGTH, 4
    .set MPC_ENTRY_COUNT, 34
    .set MPC_LAPIC, 36
    .set MPC_HEADER_SIZE, 44
    .set MPC_PROCESSOR_SIZE, 20
    .set MPC_ENTRY_SIZE, 8
    .set SLP_TYP_SHIFT, 10
    .set SLP_EN, 0x2000

    .section .multiboot, "a"
    .balign 4
    .long MULTIBOOT_HEADER_MAGIC, MULTIBOOT_FLAGS, -(MULTIBOOT_HEADER_MAGIC + MULTIBOOT_FLAGS)

# say "TEXT": print TEXT.  Preserves all registers.
.macro say text:req
    push esi
    lea esi, [.Lsay\@]
    call puts
    pop esi
    .section .rodata
.Lsay\@: .asciz "\text"
    .text
.endm

# say_hex VALUE: 0x and its hex digits.  Preserves all registers.
.macro say_hex value:req
    push eax
    mov eax, \value
    call put_hex
    pop eax
.endm

# say_sum: " checksum ok" if the ECX bytes at ESI sum to 0, else " checksum BAD".
.macro say_sum
    call sum
    jz 1f
    say " checksum BAD"
    jmp 2f
1:  say " checksum ok"
2:
.endm

# say_signature ADDRESS: the 4 characters at ADDRESS.
.macro say_signature address:req
    push ecx
    push esi
    mov esi, \address
    mov ecx, 4
    call putn
    pop esi
    pop ecx
.endm

    .text
    .globl _start
_start:
    mov esp, offset stack_top

# --- ACPI ------------------------------------------------------------------
    mov esi, BIOS_AREA
find_rsdp:
    cmp dword ptr [esi], 0x20445352           # "RSD "
    jne find_rsdp_next
    cmp dword ptr [esi + 4], 0x20525450       # "PTR "
    jne find_rsdp_next
    mov ecx, RSDP_V1_LENGTH
    call sum
    jz found_rsdp
find_rsdp_next:
    add esi, PARAGRAPH
    cmp esi, BIOS_AREA_END
    jb find_rsdp
    say "no rsdp\n"
    jmp fail
found_rsdp:
    say "rsdp "
    say_hex esi
    say " revision "
    movzx eax, byte ptr [esi + RSDP_REVISION]
    say_hex eax
    say " oem "
    push esi
    add esi, 9
    mov ecx, 6
    call putn
    pop esi
    mov ecx, [esi + RSDP_LENGTH]
    say " length "
    say_hex ecx
    say_sum
    say "\n"

    mov ebp, [esi + RSDP_XSDT]                # the XSDT (its high half must be 0)
    cmp dword ptr [esi + RSDP_XSDT + 4], 0
    jne fail
    say "xsdt "
    say_hex ebp
    say " "
    say_signature ebp
    mov esi, ebp
    mov ecx, [ebp + SDT_LENGTH]
    say_sum
    mov eax, ecx
    sub eax, SDT_HEADER_SIZE
    shr eax, 3
    say " entries "
    say_hex eax
    say "\n"
    lea edi, [ebp + SDT_HEADER_SIZE]          # each entry: a table, checked
    add ebp, ecx
xsdt_entry:
    cmp edi, ebp
    jae xsdt_done
    mov esi, [edi]
    say "table "
    say_signature esi
    say " at "
    say_hex esi
    mov ecx, [esi + SDT_LENGTH]
    say " length "
    say_hex ecx
    say_sum
    say "\n"
    mov eax, [esi]
    cmp eax, 0x50434146                       # "FACP"
    jne xsdt_not_fadt
    mov [fadt], esi
xsdt_not_fadt:
    cmp eax, 0x43495041                       # "APIC"
    jne xsdt_next
    mov [madt], esi
xsdt_next:
    add edi, 8
    jmp xsdt_entry
xsdt_done:

    mov ebx, [fadt]
    test ebx, ebx
    jz fail
    say "fadt dsdt "
    say_hex [ebx + FADT_X_DSDT]
    say " facs "
    say_hex [ebx + FADT_FACS]
    say " sci "
    movzx eax, word ptr [ebx + FADT_SCI_INT]
    say_hex eax
    say " pm1a_evt "
    say_hex [ebx + FADT_PM1A_EVT_BLK]
    say " pm1a_cnt "
    say_hex [ebx + FADT_PM1A_CNT_BLK]
    say " flags "
    say_hex [ebx + FADT_FLAGS]
    say "\n"

# --- the PM timer: its ticks over PM_TIMER_SPAN TSC cycles ---------------------
    say "pm timer "
    say_hex [ebx + FADT_PM_TMR_BLK]
    say " length "
    movzx eax, byte ptr [ebx + FADT_PM_TMR_LEN]
    say_hex eax
    mov edx, [ebx + FADT_PM_TMR_BLK]
    in eax, dx
    mov edi, eax                              # EDI: the timer at the start
    rdtsc
    mov esi, eax                              # ESI: the TSC at the start
1:  rdtsc
    sub eax, esi
    cmp eax, PM_TIMER_SPAN
    jb 1b
    mov ecx, eax                              # ECX: TSC cycles elapsed
    mov edx, [ebx + FADT_PM_TMR_BLK]
    in eax, dx
    sub eax, edi                              # 32 bits (TMR_VAL_EXT): wraps correctly
    say " ticks "
    say_hex eax
    say " in tsc cycles "
    say_hex ecx
    say "\n"

    mov esi, [ebx + FADT_X_DSDT]
    say "dsdt "
    say_signature esi
    mov ecx, [esi + SDT_LENGTH]
    say_sum
    lea edi, [esi + SDT_HEADER_SIZE]          # the AML: find NameSeg "_S5_" then a package
    add esi, ecx
find_s5:
    cmp edi, esi
    jae no_s5
    cmp dword ptr [edi], 0x5F35535F           # "_S5_"
    jne find_s5_next
    cmp byte ptr [edi + 4], AML_PACKAGE_OP
    je found_s5
find_s5_next:
    inc edi
    jmp find_s5
no_s5:
    say " no _S5\n"
    jmp fail
found_s5:
    movzx eax, byte ptr [edi + 7]             # after PkgLength (one byte) and NumElements
    cmp eax, AML_BYTE_PREFIX
    jne s5_constant
    movzx eax, byte ptr [edi + 8]
    jmp s5_found
s5_constant:                                  # ZeroOp or OneOp
    cmp eax, AML_ONE_OP
    ja no_s5
s5_found:
    mov [slp_typ], eax
    say " _S5 elements "
    movzx ecx, byte ptr [edi + 6]
    say_hex ecx
    say " slp_typa "
    say_hex eax
    say "\n"

    mov ebx, [madt]
    test ebx, ebx
    jz fail
    say "madt lapic "
    say_hex [ebx + MADT_LAPIC_ADDRESS]
    say " flags "
    say_hex [ebx + MADT_FLAGS]
    say "\n"
    lea edi, [ebx + MADT_ENTRIES]
    mov ebp, ebx
    add ebp, [ebx + SDT_LENGTH]
madt_entry:
    cmp edi, ebp
    jae madt_done
    movzx eax, byte ptr [edi]
    cmp eax, 0
    je madt_cpu
    cmp eax, 1
    je madt_ioapic
    cmp eax, 2
    je madt_override
    cmp eax, 4
    je madt_nmi
    say "madt entry type "
    say_hex eax
    jmp madt_next
madt_cpu:
    say "madt cpu "
    movzx eax, byte ptr [edi + 2]
    say_hex eax
    say " apic id "
    movzx eax, byte ptr [edi + 3]
    say_hex eax
    say " flags "
    say_hex [edi + 4]
    jmp madt_next
madt_ioapic:
    say "madt ioapic id "
    movzx eax, byte ptr [edi + 2]
    say_hex eax
    say " at "
    say_hex [edi + 4]
    say " gsi base "
    say_hex [edi + 8]
    jmp madt_next
madt_override:
    say "madt override irq "
    movzx eax, byte ptr [edi + 3]
    say_hex eax
    say " gsi "
    say_hex [edi + 4]
    say " flags "
    movzx eax, word ptr [edi + 8]
    say_hex eax
    jmp madt_next
madt_nmi:
    say "madt nmi cpu "
    movzx eax, byte ptr [edi + 2]
    say_hex eax
    say " lint "
    movzx eax, byte ptr [edi + 5]
    say_hex eax
madt_next:
    say "\n"
    movzx eax, byte ptr [edi + 1]
    test eax, eax
    jz fail
    add edi, eax
    jmp madt_entry
madt_done:

# --- MP ----------------------------------------------------------------------
    mov esi, BIOS_ROM
find_mp:
    cmp dword ptr [esi], 0x5F504D5F           # "_MP_"
    jne find_mp_next
    movzx ecx, byte ptr [esi + MP_LENGTH]
    shl ecx, 4
    call sum
    jz found_mp
find_mp_next:
    add esi, PARAGRAPH
    cmp esi, BIOS_AREA_END
    jb find_mp
    say "no mp floating pointer\n"
    jmp fail
found_mp:
    say "mp floating pointer "
    say_hex esi
    say " spec "
    movzx eax, byte ptr [esi + MP_SPEC]
    say_hex eax
    say "\n"
    mov ebx, [esi + MP_CONFIG]
    say "mp config "
    say_signature ebx
    say " at "
    say_hex ebx
    movzx ecx, word ptr [ebx + MPC_LENGTH]
    mov esi, ebx
    say_sum
    say " entries "
    movzx eax, word ptr [ebx + MPC_ENTRY_COUNT]
    say_hex eax
    say " lapic "
    say_hex [ebx + MPC_LAPIC]
    say "\n"
    movzx ebp, word ptr [ebx + MPC_ENTRY_COUNT]
    lea edi, [ebx + MPC_HEADER_SIZE]
mp_entry:                                     # count the entries by type; show a few
    test ebp, ebp
    jz mp_done
    movzx eax, byte ptr [edi]
    cmp eax, 4
    ja fail
    inc dword ptr [mp_counts + 4 * eax]
    cmp eax, 2
    je mp_ioapic
    cmp eax, 3
    je mp_interrupt
    cmp eax, 4
    je mp_local
    jmp mp_next
mp_ioapic:
    say "mp ioapic id "
    movzx eax, byte ptr [edi + 1]
    say_hex eax
    say " version "
    movzx eax, byte ptr [edi + 2]
    say_hex eax
    say " at "
    say_hex [edi + 4]
    say "\n"
    jmp mp_next
mp_interrupt:
    cmp word ptr [edi + 2], 0                 # those not as the bus has them, and IRQ 0
    jne mp_interrupt_show
    cmp byte ptr [edi + 5], 0
    jne mp_next
mp_interrupt_show:
    say "mp irq "
    movzx eax, byte ptr [edi + 5]
    say_hex eax
    say " -> ioapic "
    movzx eax, byte ptr [edi + 6]
    say_hex eax
    say " pin "
    movzx eax, byte ptr [edi + 7]
    say_hex eax
    say " flags "
    movzx eax, word ptr [edi + 2]
    say_hex eax
    say "\n"
    jmp mp_next
mp_local:
    say "mp lint "
    movzx eax, byte ptr [edi + 7]
    say_hex eax
    say " type "
    movzx eax, byte ptr [edi + 1]
    say_hex eax
    say "\n"
mp_next:
    add edi, MPC_ENTRY_SIZE
    cmp byte ptr [edi - MPC_ENTRY_SIZE], 0
    jne mp_after_size
    add edi, MPC_PROCESSOR_SIZE - MPC_ENTRY_SIZE
mp_after_size:
    dec ebp
    jmp mp_entry
mp_done:
    say "mp cpus "
    say_hex [mp_counts]
    say " buses "
    say_hex [mp_counts + 4]
    say " ioapics "
    say_hex [mp_counts + 8]
    say " irqs "
    say_hex [mp_counts + 12]
    say " lints "
    say_hex [mp_counts + 16]
    say "\n"

# --- power off ---------------------------------------------------------------
    mov ebx, [fadt]
    mov edx, [ebx + FADT_PM1A_CNT_BLK]
    in ax, dx
    movzx eax, ax
    say "pm1a_cnt reads "
    say_hex eax
    say "\n"
    mov eax, [slp_typ]
    shl eax, SLP_TYP_SHIFT
    out dx, ax                                # SLP_TYP first, then with SLP_EN
    or eax, SLP_EN
    say "writing "
    say_hex eax
    say " to pm1a_cnt\n"
    out dx, ax
    say "STILL RUNNING AFTER THE S5 REQUEST\n"
fail:
    say "failed\n"
    mov ebx, 1
    exit_with_ebx
    hlt

# sum: ZF set if the ECX bytes at ESI sum to 0 modulo 256.  Preserves all
# registers but the flags.
sum:
    push eax
    push ecx
    push esi
    xor eax, eax
sum_byte:
    add al, [esi]
    inc esi
    dec ecx
    jnz sum_byte
    test al, al
    pop esi
    pop ecx
    pop eax
    ret

# puts: the NUL-terminated string at ESI.  putn: ECX characters at ESI.
# Both preserve all registers.
puts:
    push eax
    push edx
    push esi
    print_string
    pop esi
    pop edx
    pop eax
    ret
putn:
    push eax
    push ecx
    push edx
    push esi
putn_next:
    lodsb
    push ecx
    putc_al
    pop ecx
    dec ecx
    jnz putn_next
    pop esi
    pop edx
    pop ecx
    pop eax
    ret

# put_hex: EAX as 0x and its hex digits, without leading zeros (as
# Python's hex()).  Preserves all registers.
put_hex:
    push eax
    push ebx
    push ecx
    push edx
    mov ebx, eax
    mov al, '0'
    putc_al
    mov al, 'x'
    putc_al
    mov ecx, 8
put_hex_skip:
    cmp ecx, 1
    je put_hex_digit
    test ebx, 0xF0000000
    jnz put_hex_digit
    shl ebx, 4
    dec ecx
    jmp put_hex_skip
put_hex_digit:
    rol ebx, 4
    mov eax, ebx
    and eax, 0xF
    cmp eax, 10
    jb put_hex_decimal
    add eax, 'a' - '0' - 10
put_hex_decimal:
    add eax, '0'
    push ecx
    putc_al
    pop ecx
    dec ecx
    jnz put_hex_digit
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

    .data
    .balign 4
fadt:       .long 0
madt:       .long 0
slp_typ:    .long 0
mp_counts:  .long 0, 0, 0, 0, 0               # processor, bus, I/O APIC, I/O and local interrupt

    .bss
    .balign 16
stack:  .skip 4096
stack_top:
