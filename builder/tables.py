"""Stage 5: the hypervisor's static data, computed once the code's labels
are known: descriptor tables, exit dispatch, VMCS set-up tables, records,
bitmaps and the symbol table the crash reporter searches.
"""

from __future__ import annotations

from builder import cmos, devices, fw_cfg, hw, msrs, vcpu, vmcs
from builder.config import DEFAULT_SHARE, StartMode
from builder.guest_images import GuestImage
from builder.layout import GDT_ENTRIES, TSS_SIZE, GuestLayout, Layout
from builder.paging import guest_identity_map
from builder.structs import GUEST, GUEST_RUNNABLE, HV

E = hw.ExitReason

# One handler per exit reason (templates in hv/vmx/ and hv/svm/); every
# other reason reaches the backend's unhandled-exit handler, which stops the
# guest with a report.
VMX_EXIT_HANDLERS = {
    E.EXTERNAL_INTERRUPT: "vmx_exit_external_interrupt",
    E.TRIPLE_FAULT: "vmx_exit_triple_fault",
    E.INTERRUPT_WINDOW: "vmx_exit_interrupt_window",
    E.NMI_WINDOW: "vmx_exit_nmi_window",
    E.EXCEPTION_OR_NMI: "vmx_exit_exception_or_nmi",
    E.INIT_SIGNAL: "vmx_exit_init_signal",
    E.CPUID: "vmx_exit_cpuid",
    E.HLT: "vmx_exit_hlt",
    E.INVD: "vmx_exit_invd",
    E.RDPMC: "vmx_exit_rdpmc",
    E.CR_ACCESS: "vmx_exit_cr_access",
    E.MWAIT: "vmx_exit_invalid_opcode",
    E.MONITOR: "vmx_exit_invalid_opcode",
    E.XSETBV: "vmx_exit_xsetbv",
    E.VMCALL: "vmx_exit_vmcall",
    E.IO_INSTRUCTION: "vmx_exit_io",
    E.RDMSR: "vmx_exit_rdmsr",
    E.WRMSR: "vmx_exit_wrmsr",
    E.ENTRY_FAILURE_GUEST_STATE: "vmx_exit_entry_failure",
    E.EPT_VIOLATION: "vmx_exit_ept_violation",
    E.EPT_MISCONFIG: "vmx_exit_ept_misconfig",
    E.PREEMPTION_TIMER: "vmx_exit_preemption_timer",
    **{reason: "vmx_exit_invalid_opcode" for reason in hw.VMX_INSTRUCTION_EXITS},
}
S = hw.SvmExit
SVM_EXIT_HANDLERS = {
    S.EXCEPTION_DF: "svm_exit_double_fault",
    S.NMI: "svm_exit_nmi",
    S.VINTR: "svm_exit_vintr",
    S.WRITE_CR8: "svm_exit_write_cr8",
    S.IRET: "svm_exit_iret",
    S.CPUID: "svm_exit_cpuid",
    S.HLT: "svm_exit_hlt",
    S.INVD: "svm_exit_invd",
    S.RDPMC: "svm_exit_rdpmc",
    S.MONITOR: "svm_exit_invalid_opcode",
    S.MWAIT: "svm_exit_invalid_opcode",
    S.MWAIT_CONDITIONAL: "svm_exit_invalid_opcode",
    S.XSETBV: "svm_exit_xsetbv",
    S.VMMCALL: "svm_exit_vmmcall",
    S.IOIO: "svm_exit_ioio",
    S.MSR: "svm_exit_msr",
    S.SHUTDOWN: "svm_exit_shutdown",
    **{code: "svm_exit_invalid_opcode" for code in hw.SVM_INSTRUCTION_EXITS},
}


def q(value: int) -> bytes:
    return (value & (1 << 64) - 1).to_bytes(8, "little")


def segment_descriptor(base: int, limit: int, attributes: int) -> bytes:
    """An 8-byte descriptor (SDM Vol. 3A 3.4.5, figure 3-8); `attributes` in
    the access-rights layout of builder/hw.py (access byte, then flags in
    bits 15:12).  The accessed bits are set, so loading a selector never
    writes the table."""
    access, flags = attributes & 0xFF, attributes >> 12 & 0xF
    value = (limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | access << 40
    value |= (limit >> 16 & 0xF) << 48 | flags << 52 | (base >> 24 & 0xFF) << 56
    return value.to_bytes(8, "little")


def flat_gdt() -> bytes:
    """null, 32-bit code, data, 64-bit code: the selectors of
    builder/start_state.py (0x08, 0x10, 0x18), for each guest."""
    return (bytes(8) + segment_descriptor(0, hw.FLAT_LIMIT_PAGES, hw.FLAT_CODE32)
            + segment_descriptor(0, hw.FLAT_LIMIT_PAGES, hw.FLAT_DATA)
            + segment_descriptor(0, hw.FLAT_LIMIT_PAGES, hw.FLAT_CODE64))


def gdt(layout: Layout) -> bytes:
    """The hypervisor's: null, 64-bit code, data, 32-bit code (boot), and a
    64-bit TSS, which takes two slots (SDM Vol. 3A 8.2.3)."""
    tss = layout.rwdata["tss"]
    tss_low = segment_descriptor(tss, TSS_SIZE - 1, hw.AR_P | hw.AR_TYPE_TSS_AVAILABLE_64)
    table = (bytes(8) + segment_descriptor(0, hw.FLAT_LIMIT_PAGES, hw.FLAT_CODE64)
             + segment_descriptor(0, hw.FLAT_LIMIT_PAGES, hw.FLAT_DATA)
             + segment_descriptor(0, hw.FLAT_LIMIT_PAGES, hw.FLAT_CODE32)
             + tss_low + (tss >> 32).to_bytes(8, "little"))
    assert len(table) == GDT_ENTRIES * 8
    return table


def tss(layout: Layout) -> bytes:
    """64-bit TSS (SDM Vol. 3A 8.7): exceptions switch to IST1, their own stack."""
    out = bytearray(TSS_SIZE)
    out[0x04:0x0C] = q(layout.stack_top)                    # RSP0
    out[0x24:0x2C] = q(layout.exception_stack_top)          # IST1
    out[0x66:0x68] = TSS_SIZE.to_bytes(2, "little")         # no I/O permission bitmap
    return bytes(out)


IST_EXCEPTION_STACK = 1             # the TSS's IST1: builder/tables.tss
GATE_INTERRUPT_64 = 0x8E            # present, DPL 0, 64-bit interrupt gate (SDM Vol. 3A 6.14.1)


def idt(labels: dict[str, int]) -> bytes:
    """Interrupt gates for the 32 exception vectors (SDM Vol. 3A 6.14.1),
    on the exception stack (IST1) so that even a stack overflow is reported.
    An NMI is not a fault: the SVM backend takes the time-slice NMI through
    its gate (hv_nmi).  A debug trap can only be a guest's single-step that
    an emulator delivers after #VMEXIT (hv_debug): its gate takes no IST,
    because right after VMRUN the TR is still the guest's, whose TSS the
    CPU would read the IST from (APM 15.5.2: VMLOAD brings back ours)."""
    out = bytearray()
    for vector in range(32):
        name = {hw.VECTOR_NMI: "hv_nmi", hw.VECTOR_DB: "hv_debug"}.get(vector, f"panic_exception_{vector}")
        handler = labels[name]
        ist = 0 if vector == hw.VECTOR_DB else IST_EXCEPTION_STACK
        gate = (handler & 0xFFFF) | vmcs.SELECTOR_CODE64 << 16 | ist << 32 | GATE_INTERRUPT_64 << 40
        gate |= (handler >> 16 & 0xFFFF) << 48
        out += gate.to_bytes(8, "little") + (handler >> 32).to_bytes(8, "little")
    return bytes(out)


def exit_tables(layout: Layout, labels: dict[str, int]) -> dict[str, bytes]:
    """Per backend: the dispatch table and the exit-name pointer table, by
    exit reason (VMX) or exit code (SVM); plus the name strings."""
    strings = bytearray()
    strings_base = layout.rodata["strings"]
    out = {}

    def name_pointer(name: str) -> bytes:
        pointer = q(strings_base + len(strings))
        strings.extend(name.encode() + b"\0")
        return pointer

    handlers = {"vmx": VMX_EXIT_HANDLERS, "svm": SVM_EXIT_HANDLERS}
    for backend in layout.backends:
        names = hw.exit_names(backend)
        out[f"{backend}_exit_dispatch"] = b"".join(
            q(labels[handlers[backend].get(number, f"{backend}_exit_unhandled")])
            for number in range(len(names)))
        out[f"{backend}_exit_names"] = b"".join(name_pointer(name) for name in hw.exit_counter_names(backend))
    out["strings"] = bytes(strings)
    return out


def hv_record(layout: Layout) -> bytes:
    return HV.pack(vmxon_region=layout.rwdata.get("vmxon", 0), input_guest=layout.rwdata["guests"],
                   console_port=hw.COM1_BASE)


def guest_record(layout: Layout, guest: GuestLayout, max_restarts: int,
                 registers: tuple[tuple[str, int], ...] = (), expect_exit: int | None = None,
                 share: int = DEFAULT_SHARE, virtio_fields: dict[str, int | bytes] | None = None) -> bytes:
    """A guest's record as the guest starts: also what a restart copies back.
    `registers`: general registers the image starts with (multiboot: EAX, EBX);
    `virtio_fields`: its virtio devices (builder/virtio.py record_fields)."""
    uart_reset = bytes([0, 0, 0, hw.UART_LCR_8N1, 0,
                        hw.UART_LSR_THRE | hw.UART_LSR_TEMT, hw.UART_MSR_IDLE, 0])
    restart = guest.restart
    return GUEST.pack(share=share, vmcs=guest.vmcs or 0, init_table=guest.vmcs_init or 0,
                      ept_root=guest.ept.pml4 if guest.ept else 0, npt_root=guest.npt.pml4 if guest.npt else 0,
                      exit_counters=guest.exit_counters,
                      init_count=layout.guest_entries, vmcb=guest.vmcb or 0, state=GUEST_RUNNABLE,
                      name=guest.name.encode(), uart_regs=uart_reset,
                      xsave_area=guest.xsave_area, **vcpu.reset_values(), **devices.reset_fields(),
                      msrs=msrs.record_reset(),
                      max_restarts=max_restarts, memory_base=guest.memory_base,
                      memory_size=guest.memory_size, restart_image=restart.image,
                      restart_record=restart.record, restart_vmcb=restart.vmcb or 0, **dict(registers),
                      expects_exit=int(expect_exit is not None), expect_exit=expect_exit or 0,
                      cmos=cmos.image(guest.memory_size), fw_cfg_items=fw_cfg.data(guest.memory_size),
                      i8042_command_byte=hw.I8042_CTR_POWER_ON,
                      system_control_a=hw.SYSTEM_CONTROL_A_POWER_ON, **(virtio_fields or {}))


SYMTAB_ENTRY_SIZE = 16


def symbol_table(address: int, labels: dict[str, int]) -> bytes:
    """Sorted (address, name pointer) pairs after a count, then the names."""
    ordered = sorted(labels.items(), key=lambda item: (item[1], item[0]))
    names_base = address + 8 + SYMTAB_ENTRY_SIZE * len(ordered)
    pairs = bytearray(q(len(ordered)))
    names = bytearray()
    for name, value in ordered:
        pairs += q(value) + q(names_base + len(names))
        names += name.encode() + b"\0"
    return bytes(pairs + names)


def guest_startup(guest_layout: GuestLayout, image: GuestImage) -> dict[int, bytes]:
    """Start-up tables placed in a guest's own memory (guest-physical)."""
    placed: dict[int, bytes] = {}
    if guest_layout.startup.gdt is not None:
        placed[guest_layout.startup.gdt] = flat_gdt()
    if image.mode is StartMode.LONG:
        placed.update(guest_identity_map(guest_layout))
    return placed
