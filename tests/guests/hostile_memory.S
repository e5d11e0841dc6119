# A hostile guest: one access to an address it does not own.  First it
# reads and writes back a qword of every page of its own memory; then it
# maps the 2 MiB frame of the guest-physical address in `probe_address`
# (which the test writes into the ELF) at linear WINDOW with a page of its
# own page tables, and reads it (--defsym PROBE_WRITE=1: writes it).  The
# hypervisor must stop it there; if the access returns, it says so and
# exits with code 1.  A fault of its own (a non-canonical address, reserved
# bits in its page table) is caught and reported, and it exits with code 0.
# It prints
#   memory: my N pages read and written back
#   memory: maxphyaddr M
#   memory: reading|writing guest-physical|linear 0xA
#   memory: vector V, error code E, rip R      (a fault of its own)
# --defsym PROBE_LINEAR=1 uses `probe_address` as a linear address instead,
# unmapped; --defsym PROBE_TOP=1 ignores it and takes the highest page
# below MAXPHYADDR (CPUID 0x80000008).
    .include "catcher.inc"
    .globl _start, probe_address, probe_access

.set LARGE_PAGE_SIZE, 0x200000
.set STARTUP_PML4_PAGES_FROM_TOP, 3       # README: a long-mode guest's last four pages:
.set STARTUP_PD_FROM_PML4, 2              #   GDT, PML4, PDPT, PD
.set WINDOW_PD_INDEX, 511
.set WINDOW, WINDOW_PD_INDEX * LARGE_PAGE_SIZE
.set CPUID_ADDRESS_SIZES, 0x80000008
.set WRITTEN_VALUE, 0x4841434B4544        # "DEKCAH"

.macro access_text
.ifdef PROBE_WRITE
    say "writing"
.else
    say "reading"
.endif
.endm

_start:
    hostile_start
    mov rax, cr3
    and rax, -PAGE_SIZE
    mov r15, rax                              # R15: the PML4
    lea r12, [rax + STARTUP_PML4_PAGES_FROM_TOP * PAGE_SIZE]   # the end of my memory
    xor ebx, ebx
    xor r13d, r13d
own_page:
    mov rax, [rbx]
    mov [rbx], rax
    inc r13
    add rbx, PAGE_SIZE
    cmp rbx, r12
    jb own_page
    say "memory: my "
    say_dec r13
    say " pages read and written back\n"

    mov eax, CPUID_ADDRESS_SIZES
    cpuid
    movzx ecx, al
    say "memory: maxphyaddr "
    say_dec rcx
    say "\n"
.ifdef PROBE_TOP
    mov eax, 1
    shl rax, cl
    sub rax, PAGE_SIZE
    mov [rip + probe_address], rax
.endif
    mov rdi, [rip + probe_address]
.ifdef PROBE_LINEAR
    say "memory: "
    access_text
    say " linear "
.else
    lea rsi, [r15 + STARTUP_PD_FROM_PML4 * PAGE_SIZE]   # the PD
    mov rdx, [rsi]                            # its first 2 MiB page: the flags to copy
    and edx, PAGE_SIZE - 1
    mov rax, rdi
    and rax, -LARGE_PAGE_SIZE
    or rax, rdx
    mov [rsi + WINDOW_PD_INDEX * 8], rax
    invlpg [WINDOW]
    and edi, LARGE_PAGE_SIZE - 1
    add rdi, WINDOW
    say "memory: "
    access_text
    say " guest-physical "
.endif
    say_hex [rip + probe_address]
    say "\n"
    arm probe_faulted
    mov rax, WRITTEN_VALUE
probe_access:
.ifdef PROBE_WRITE
    mov [rdi], rax
.else
    mov rax, [rdi]
.endif
.ifdef PROBE_DEVICE
    say "memory: the access went to a device of my own virtual PC\n"
    xor ebx, ebx
.else
    say "ISOLATION BROKEN: the access returned\n"
    mov ebx, 1
.endif
    jmp exit_with

probe_faulted:
    say "memory: vector "
    say_hex [rip + vector]
    say ", error code "
    say_hex [rip + error_code]
    say ", rip "
    say_hex [rip + fault_rip]
    say "\n"
    xor ebx, ebx
    jmp exit_with

    .data
    .balign 8
probe_address:  .quad 0                      # written by the test
