# A multiboot test kernel that tries to buy more than its share of the CPU
# by sleeping: again and again it arms its local APIC's TSC deadline a
# tenth of a millisecond ahead, sleeps in HLT until it fires (a woken
# sleeper runs at once, preempting its neighbour), then computes 2 ms'
# worth of instructions.
# Under a scheduler that gave every woken sleeper a fresh slice it would
# take nearly all of the machine; with credit per round
# (hv/core/sched.s.j2) its neighbour keeps its share.  Ends through port
# 0xF4 with PC_SUCCESS after ITERATIONS rounds, having printed the cycles
# its computing took (instructions: one cycle each in the emulators, whose
# TSC counts instructions) and how many went by meanwhile.
    .intel_syntax noprefix
    .include "guest.inc"
    .code32
    .include "pc.inc"
    multiboot_header

    .set APIC_EOI, 0xFEE000B0
    .set APIC_LVT_TIMER, 0xFEE00320
    .set TIMER_TSC_DEADLINE, 0x40000
    .set VECTOR_TIMER, 0x40
    .set IA32_TSC_DEADLINE, 0x6E0
    .set ITERATIONS, 100
    .set COMPUTE_MS, 2

    .globl _start
_start:
    pc_start
    mov ecx, VECTOR_TIMER
    mov eax, offset timer_handler
    call set_gate
    call calibrate_tsc
    mov [tsc_khz], eax
    mov dword ptr [APIC_LVT_TIMER], TIMER_TSC_DEADLINE | VECTOR_TIMER
    rdtsc
    mov [start_tsc], eax
    mov ebp, ITERATIONS
1:
.ifndef NO_TIMER
    rdtsc
    mov ecx, [tsc_khz]
    shr ecx, 3                                # about 0.1 ms ahead
    add eax, ecx
    adc edx, 0
    mov ecx, IA32_TSC_DEADLINE
    wrmsr
.endif
.ifndef NO_SLEEP
    sti
    hlt
    cli
.endif
    mov ecx, [tsc_khz]                        # work, not time: a counted loop of two
    imul ecx, ecx, COMPUTE_MS / 2             # instructions a turn (one TSC cycle each
2:  dec ecx                                   # in the emulators: Bochs counts
    jnz 2b                                    # instructions, QEMU -icount too)
    dec ebp
    jnz 1b
    rdtsc
    sub eax, [start_tsc]
    push eax
    mov eax, [tsc_khz]                        # the cycles it computed
    imul eax, eax, ITERATIONS * COMPUTE_MS
    lea esi, [text_computed]
    call print_labelled
    pop eax
    lea esi, [text_elapsed]
    call print_labelled
    mov al, PC_SUCCESS
    jmp pc_exit

timer_handler:
    mov dword ptr [APIC_EOI], 0
    iret

    .section .rodata
text_computed: .asciz "computed cycles "
text_elapsed:  .asciz "elapsed cycles "
    .data
    .balign 4
tsc_khz:   .long 0
start_tsc: .long 0
