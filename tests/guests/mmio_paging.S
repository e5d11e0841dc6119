# A multiboot test kernel for the MMIO decoder's fetch and page walk: the
# local APIC and I/O APIC reached through the kernel's own paging, at
# linear addresses that are not their physical ones, under 32-bit paging
# with 4 KiB pages, 32-bit paging with a 4 MiB page (CR4.PSE), and PAE with
# 2 MiB pages, in several addressing forms (base + displacement, SIB with
# an index, an absolute address, MOVZX, MOVSX, an immediate store).  The
# code itself runs from identity-mapped pages.  Ends through port 0xF4:
# PC_SUCCESS, or PC_FAILURE + the first failed check.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set APIC_PHYSICAL, 0xFEE00000
    .set IOAPIC_PHYSICAL, 0xFEC00000
    .set APIC_LINEAR, 0x00400000              # 4 MiB: above the identity-mapped kernel
    .set IOAPIC_LINEAR, 0x00800000
    .set PAE_APIC_LINEAR, 0x00600000
    .set PRESENT_WRITABLE, 0x3
    .set PAGE_SIZE_BIT, 0x80                  # PS: a 4 MiB (PSE) or 2 MiB (PAE) page
    .set PCD_PWT, 0x18
    .set CR0_PG, 0x80000000
    .set CR4_PSE, 0x10
    .set CR4_PAE, 0x20
    .set APIC_TPR, 0x80
    .set APIC_VERSION, 0x30
    .set VERSION, 0x50014

    .globl _start
_start:
    pc_start

    # 32-bit paging: PDE 0 -> a page table identity-mapping 0-4 MiB; PDE 1
    # -> a page table whose first entry maps the local APIC's page; PDE 2
    # a 4 MiB page at the I/O APIC's 4 MiB.
    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 12
    or eax, PRESENT_WRITABLE
    mov [identity_table + ecx * 4], eax
    inc ecx
    cmp ecx, 1024
    jb 1b
    mov eax, offset identity_table
    or eax, PRESENT_WRITABLE
    mov [page_directory], eax
    mov eax, offset apic_table
    or eax, PRESENT_WRITABLE
    mov [page_directory + 4], eax
    mov dword ptr [apic_table], APIC_PHYSICAL | PCD_PWT | PRESENT_WRITABLE
    mov dword ptr [page_directory + 8], IOAPIC_PHYSICAL | PAGE_SIZE_BIT | PCD_PWT | PRESENT_WRITABLE
    mov eax, cr4
    or eax, CR4_PSE
    mov cr4, eax
    mov eax, offset page_directory
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax

    # 1-3: through a 4 KiB page: base + displacement, SIB, absolute
    mov ebx, APIC_LINEAR
    mov eax, [ebx + APIC_VERSION]
    cmp eax, VERSION
    check 1, e, "32-bit paging, 4 KiB page: [base + disp32] reads the APIC version"
    mov dword ptr [ebx + APIC_TPR], 0x30
    xor esi, esi
    mov ecx, [ebx + esi * 4 + APIC_TPR]
    cmp ecx, 0x30
    check 2, e, "an immediate store, then [base + index*4 + disp] reads it back"
    movzx edx, byte ptr [APIC_LINEAR + APIC_TPR]
    movsx edi, word ptr [APIC_LINEAR + APIC_VERSION]
    cmp edx, 0x30
    jne 2f
    cmp edi, 0x0014
2:  check 3, e, "MOVZX and MOVSX from absolute addresses"
    mov dword ptr [ebx + APIC_TPR], 0

    # 4: through the 4 MiB page: the I/O APIC's version register
    mov ebx, IOAPIC_LINEAR
    mov dword ptr [ebx], 1
    mov eax, [ebx + 0x10]
    cmp eax, 0x00170020
    check 4, e, "32-bit paging, 4 MiB page: IOREGSEL/IOWIN read the I/O APIC version"

    # 5-6: PAE: a PDPT, a PD with 2 MiB pages: 0-2 MiB identity, the local
    # APIC at linear 6 MiB
    mov eax, cr0
    and eax, ~CR0_PG
    mov cr0, eax
    mov dword ptr [pae_directory], PAGE_SIZE_BIT | PRESENT_WRITABLE
    mov dword ptr [pae_directory + 8], 0x200000 | PAGE_SIZE_BIT | PRESENT_WRITABLE
    mov dword ptr [pae_directory + 3 * 8], APIC_PHYSICAL | PAGE_SIZE_BIT | PCD_PWT | PRESENT_WRITABLE
    mov eax, offset pae_directory
    or eax, 1                                 # PDPTE: present only
    mov [pae_pdpt], eax
    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    mov eax, offset pae_pdpt
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    mov ebx, PAE_APIC_LINEAR
    mov eax, [ebx + APIC_VERSION]
    cmp eax, VERSION
    check 5, e, "PAE, 2 MiB page: the APIC version"
    mov eax, 0x50
    mov [ebx + APIC_TPR], eax
    mov cl, [ebx + APIC_TPR]
    cmp cl, 0x50
    check 6, e, "PAE: a register store, a byte load"

    mov al, PC_SUCCESS
    jmp pc_exit

    .bss
    .balign 4096
page_directory: .skip 4096
identity_table: .skip 4096
apic_table:     .skip 4096
pae_directory:  .skip 4096
    .balign 32
pae_pdpt:       .skip 32
