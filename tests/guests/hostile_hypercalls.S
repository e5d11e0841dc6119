# A hostile guest: hypercalls with every kind of invalid number and
# argument, yields, and the other vendor's hypercall instruction.  The
# hypercall is VMCALL on Intel, VMMCALL on AMD (CPUID 0x40000001 EAX bit 0);
# EAX = the number, 0 exit and 1 yield; every other number returns RAX = -1
# (README, "Hypercalls").  Every call is made with all other general
# registers holding values of the guest's, which it checks afterwards.  It prints
#   hypercall instruction vmcall|vmmcall
#   hypercalls: N invalid numbers, W did not return -1, C clobbered a register
#   yields: N, C clobbered a register
#   other instruction: ok|vector V
# and exits with code EXIT_CODE.
    .include "catcher.inc"
    .globl _start

.set SEQUENTIAL_NUMBERS, 10000            # 2 ... 10001
.set SCATTERED_NUMBERS, 10000             # spread over 64 bits, none 0 or 1
.set NUMBER_STRIDE, 0x9E3779B97F4A7C15    # 2^64 / golden ratio
.set YIELDS, 50
.set HYPERCALL_YIELD, 1
.set HYPERCALL_INVALID, -1
.set EXIT_CODE, 0x7FFFFFFF
.set SEED, 0x0123456789ABCDE              # the register values: SEED times the register's number

# plant: every general register but RAX and RSP holds SEED * its number.
.macro plant
    mov rbx, SEED * 3
    mov rcx, SEED * 1
    mov rdx, SEED * 2
    mov rsi, SEED * 6
    mov rdi, SEED * 7
    mov rbp, SEED * 5
    mov r8, SEED * 8
    mov r9, SEED * 9
    mov r10, SEED * 10
    mov r11, SEED * 11
    mov r12, SEED * 12
    mov r13, SEED * 13
    mov r14, SEED * 14
    mov r15, SEED * 15
.endm

_start:
    hostile_start
    mov eax, CPUID_HV_FEATURES
    cpuid
    and eax, HV_FEATURE_VMMCALL
    mov [rip + use_vmmcall], rax
    say "hypercall instruction "
    test eax, eax
    jnz 1f
    say "vmcall\n"
    jmp 2f
1:  say "vmmcall\n"
2:

# Sequential numbers from 2, then numbers spread over the 64-bit space.
    mov qword ptr [rip + calls], 0
    mov qword ptr [rip + wrong_returns], 0
    mov qword ptr [rip + clobbers], 0
    mov qword ptr [rip + number], 2
sequential:
    call invalid_hypercall
    inc qword ptr [rip + number]
    cmp qword ptr [rip + calls], SEQUENTIAL_NUMBERS
    jb sequential
    mov rax, NUMBER_STRIDE
    mov [rip + number], rax
scattered:
    call invalid_hypercall
    mov rax, NUMBER_STRIDE
    add [rip + number], rax
    cmp qword ptr [rip + number], HYPERCALL_YIELD
    ja scattered_next                         # 0 and 1 are valid: skip them
    add [rip + number], rax
scattered_next:
    cmp qword ptr [rip + calls], SEQUENTIAL_NUMBERS + SCATTERED_NUMBERS
    jb scattered
    say "hypercalls: "
    say_dec [rip + calls]
    say " invalid numbers, "
    say_dec [rip + wrong_returns]
    say " did not return -1, "
    say_dec [rip + clobbers]
    say " clobbered a register\n"

    mov qword ptr [rip + clobbers], 0
    mov qword ptr [rip + calls], 0
yield:
    mov qword ptr [rip + number], HYPERCALL_YIELD
    call hypercall_checked
    inc qword ptr [rip + calls]
    cmp qword ptr [rip + calls], YIELDS
    jb yield
    say "yields: "
    say_dec [rip + calls]
    say ", "
    say_dec [rip + clobbers]
    say " clobbered a register\n"

# The other vendor's instruction: #UD, as on a CPU without it.
    arm other_done
    cmp qword ptr [rip + use_vmmcall], 0
    mov eax, HYPERCALL_YIELD
    jnz other_vmcall
    vmmcall
    jmp other_done
other_vmcall:
    vmcall
other_done:
    lea rsi, [rip + text_other]
    call report

    mov ebx, EXIT_CODE
    jmp exit_with

# invalid_hypercall: the hypercall `number`, which must return -1 and
# leave every other register alone.  Counts `calls`, `wrong_returns`,
# `clobbers`.  Clobbers: all registers but RSP.
invalid_hypercall:
    call hypercall_checked
    inc qword ptr [rip + calls]
    cmp rax, HYPERCALL_INVALID
    je invalid_hypercall_done
    inc qword ptr [rip + wrong_returns]
invalid_hypercall_done:
    ret

# hypercall_checked: the hypercall `number` with every other register
# planted; counts `clobbers` if one changed.  OUT: RAX as the hypercall
# left it.  Clobbers: all registers but RSP.
hypercall_checked:
    plant
    mov rax, [rip + number]
    cmp qword ptr [rip + use_vmmcall], 0
    jne hypercall_vmmcall
    vmcall
    jmp hypercall_check
hypercall_vmmcall:
    vmmcall
hypercall_check:
    mov [rip + returned], rax
    push r15                                  # the stack: the registers in register_numbers' order
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rdi
    push rsi
    push rbp
    push rbx
    push rdx
    push rcx
    lea rsi, [rip + register_numbers]
    mov rdi, SEED
    xor ecx, ecx                              # index
    xor edx, edx                              # registers that differ
hypercall_check_register:
    movzx eax, byte ptr [rsi + rcx]
    imul rax, rdi
    cmp [rsp + rcx * 8], rax
    je hypercall_check_next
    inc edx
hypercall_check_next:
    inc ecx
    cmp ecx, PLANTED_REGISTERS
    jb hypercall_check_register
    add rsp, PLANTED_REGISTERS * 8
    test edx, edx
    jz hypercall_check_done
    inc qword ptr [rip + clobbers]
hypercall_check_done:
    mov rax, [rip + returned]
    ret

    .section .rodata
register_numbers:                             # SDM Vol. 2A table 2-2: RCX 1, RDX 2, RBX 3, RBP 5 ...
    .byte 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
.set PLANTED_REGISTERS, 14
text_other:
    .asciz "other instruction"

    .data
use_vmmcall:    .quad 0
number:         .quad 0                       # the next hypercall's RAX
returned:       .quad 0                       # RAX after it
calls:          .quad 0
wrong_returns:  .quad 0
clobbers:       .quad 0
