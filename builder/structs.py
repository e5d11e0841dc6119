"""Layouts of the hypervisor's runtime records, defined once.

The builder packs the initial bytes of each record from these definitions
and exports every field offset to the templates as `<RECORD>_<FIELD>`, so
the assembly and the data it reads can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import control, fw_cfg, hw, msrs, vcpu


@dataclass(frozen=True)
class Field:
    name: str
    size: int


class Record:
    """A packed little-endian record: fields in order, no padding added."""

    def __init__(self, prefix: str, fields: list[Field], align: int = 8) -> None:
        self.prefix = prefix
        self.fields = fields
        self.offsets: dict[str, int] = {}
        offset = 0
        for field in fields:
            self.offsets[field.name] = offset
            offset += field.size
        self.size = (offset + align - 1) // align * align

    def pack(self, **values: int | bytes) -> bytes:
        out = bytearray(self.size)
        for name, value in values.items():
            field = self.fields[[f.name for f in self.fields].index(name)]
            raw = value if isinstance(value, bytes) else value.to_bytes(field.size, "little")
            if len(raw) > field.size:
                raise ValueError(f"{self.prefix}.{name}: {len(raw)} bytes do not fit {field.size}")
            start = self.offsets[name]
            out[start:start + len(raw)] = raw
        return bytes(out)

    def asm_constants(self) -> dict[str, int]:
        names = {f"{self.prefix}_{name.upper()}": off for name, off in self.offsets.items()}
        names[f"{self.prefix}_SIZE"] = self.size
        return names


# The general-purpose registers a VM exit leaves to software, in the order the
# exit path pushes them (r15 first), so that the pushes land field by field.
SAVED_REGISTERS = ("rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi",
                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
GUEST_NAME_SIZE = 16
GUEST_LINE_SIZE = 120

# Guest run states
GUEST_RUNNABLE = 0
GUEST_EXITED = 1        # the guest asked to stop (hypercall exit)
GUEST_STOPPED = 2       # the hypervisor stopped it (a fault or an unhandled exit)
GUEST_SLEEPING = 3      # halted with interrupts enabled, until an interrupt is due

NO_DEADLINE = (1 << 64) - 1     # a timer that is not armed: no TSC value reaches it

# The guest's I/O APIC (hv/devices/ioapic.s.j2; 82093AA data sheet).
IOAPIC = Record("IOAPIC_STATE", [
    Field("entries", 8 * hw.GUEST_IOAPIC_PINS),  # redirection entries, 64 bits each, pin by pin
    Field("pin_levels", 4),      # each input pin's level (bit n: pin n asserted)
    Field("select", 1),          # IOREGSEL
    Field("id", 1),              # the ID register's bits 27:24
])

# One 8259A of a guest's pair (hv/devices/pic.s.j2; 8259A data sheet).
PIC = Record("PIC_CHIP", [
    Field("irr", 1),            # interrupt request register
    Field("isr", 1),            # in-service register
    Field("imr", 1),            # interrupt mask register (OCW1)
    Field("vector", 1),         # ICW2: the vector of IR0; IRn gets vector + n
    Field("init_step", 1),      # 0: initialized; 1, 2, 3: ICW2, ICW3, ICW4 expected next
    Field("icw1", 1),
    Field("icw4", 1),
    Field("read_isr", 1),       # OCW3: a command-port read gives the ISR, not the IRR
    Field("poll", 1),           # OCW3 poll command: the next command-port read polls
    Field("elcr", 1),           # edge/level control register (stored; inputs are edges)
])

# One counter of a guest's 8254 (hv/devices/pit.s.j2; 82C54 data sheet).
PIT_CHANNEL = Record("PIT_CHANNEL", [
    Field("load_tick", 8),      # TSC at which the count was loaded: counting starts there
    Field("next_edge", 8),      # TSC of the output's next rising edge (channel 0: IRQ 0)
    Field("reload", 4),         # the count written, 1-65,536 (a written 0 counts 65,536)
    Field("latch", 2),          # the count a latch command caught
    Field("mode", 1),           # 0-5
    Field("access", 1),         # PIT_ACCESS_LOW, _HIGH, _WORD
    Field("bcd", 1),            # stored and reported; counting is binary
    Field("write_high", 1),     # word access: the next data write is the high byte
    Field("write_low", 1),      # word access: the low byte written first
    Field("read_high", 1),      # word access: the next data read is the high byte
    Field("latched", 1),        # a latched count is waiting to be read
    Field("status", 1),         # a latched status byte (read-back command)
    Field("status_latched", 1),
    Field("counting", 1),       # a count is loaded (0: NULL count since the control word)
])

# The guest's virtio devices (builder/virtio.py; hv/devices/virtio_mmio.s.j2):
# DEVICES_MAX each, with up to QUEUES_MAX virtqueues.
VIRTIO_DEVICES_MAX = 5
VIRTIO_QUEUES_MAX = 2
VIRTIO_QUEUE_SIZE = 64           # QueueNumMax: the most descriptors a queue, and so a chain, has

# One split virtqueue as the driver set it up (virtio 1.2 2.7, 4.2.2).
VIRTIO_QUEUE = Record("VQ", [
    Field("num", 4),             # QueueNum: its size, a power of 2, at most QueueNumMax
    Field("ready", 4),           # QueueReady: the hypervisor checked its rings and serves it
    Field("desc", 8),            # guest-physical: the descriptor table
    Field("driver", 8),          # the available ring
    Field("device", 8),          # the used ring
    Field("last_avail", 4),      # the available ring's entries taken so far (modulo 2^16)
    Field("used_idx", 4),        # the used ring's entries given back so far (modulo 2^16)
])

# One virtio device of a guest: what the build gives it, then its
# counters, then the transport's state, which a device reset (a write of
# 0 to Status) zeroes from `status` to the end.
VIRTIO = Record("VIRTIO_DEV", [
    Field("device_id", 4),       # 5 Device Types: VIRTIO_ID_*, 0: no device in this slot
    Field("irq", 4),             # the ISA IRQ it raises
    Field("queues", 4),          # virtqueues it has
    Field("config_size", 4),     # bytes of `config` the driver may read
    Field("device_features", 8),
    Field("config", 32),         # the device-specific configuration at VIRTIO_MMIO_CONFIG
    Field("pool_entry", 8),      # block: its disk's entry in the pool's header (builder/pool.py)
    Field("first_sector", 8),    # block: where its extent starts on the pool's disk
    Field("sectors", 8),         # block: its size
    Field("serial", 24),         # block: GET_ID's answer (VIRTIO_BLK_ID_BYTES), its disk's name
    Field("requests", 8),        # requests served since boot
    Field("bad_requests", 8),    # requests and queues refused since boot (the first few are reported)
    Field("status", 4),          # Status (2.1)
    Field("device_features_sel", 4),
    Field("driver_features_sel", 4),
    Field("queue_sel", 4),
    Field("driver_features", 8), # what the driver accepted
    Field("interrupt_status", 4),
    Field("irq_level", 4),       # non-zero: InterruptStatus was non-zero at the last look (its edge was sent)
    Field("config_generation", 4),
    Field("reserved", 4),        # the queues 8-byte aligned
    Field("queue", VIRTIO_QUEUE.size * VIRTIO_QUEUES_MAX),
])

GUEST = Record("GUEST", [
    *(Field(register, 8) for register in SAVED_REGISTERS),
    Field("vmcs", 8),            # VMX: physical address of the guest's VMCS
    Field("init_table", 8),      # VMX: address of the (field, value) pairs that set up the VMCS
    Field("init_count", 8),
    Field("vmcb", 8),            # SVM: physical address of the guest's VMCB
    Field("ept_root", 8),        # VMX: its EPT's PML4 (the isolation check walks it), or 0
    Field("npt_root", 8),        # SVM: its NPT's PML4, or 0
    Field("exit_count", 8),
    Field("exit_counters", 8),   # its VM exits by reason: EXIT_COUNTERS qwords outside the record
    Field("exit_code", 8),       # the code given with the exit hypercall
    Field("stop_reason", 8),     # address of a string naming why the hypervisor stopped it
    Field("first_tick", 8),      # TSC at the first VM entry (benchmark)
    # on_fault = "restart" (hv/core/restart.s.j2): what a restart copies back
    Field("restarts", 8),        # restarts so far; the guest reads it at CPUID 0x40000001 EBX
    Field("max_restarts", 8),    # 0: the guest stays stopped (on_fault = "stop")
    Field("memory_base", 8),     # host-physical [memory_base, + memory_size): the guest's memory
    Field("memory_size", 8),
    Field("restart_image", 8),   # host-physical copy of that memory as built
    Field("restart_record", 8),  # this record as built
    Field("restart_vmcb", 8),    # SVM: the VMCB as built
    Field("expect_exit", 8),     # the exit code the config expects (hvrun's verdict)
    # The guest's PC devices (hv/devices/).  Its RTC and CMOS, from rtc_offset
    # to the end of cmos, are battery-backed: they survive a restart.
    Field("rtc_offset", 8),      # the guest's clock minus the hypervisor's, in seconds (signed)
    Field("rtc_frozen", 8),      # the time fields while register B's SET bit holds the clock
    Field("rtc_update_second", 8),  # the clock's second at the last read of register C
    Field("rtc_weekday_shift", 8),  # the guest's day of week minus the calendar's (0-6)
    Field("cmos", hw.CMOS_SIZE),    # registers 0x00-0x7F by number (time fields: computed)
    Field("fw_cfg_items", fw_cfg.DATA_SIZE),  # builder/fw_cfg.py DIRECTORY's bytes
    Field("fw_cfg_selector", 8),
    Field("fw_cfg_offset", 8),   # the data port's next byte within the selected item
    # The state the VM entry and exit leave alone (builder/vcpu.py)
    *(Field(name, size) for name, size in vcpu.record_fields()),
    Field("msrs", msrs.RECORD_SIZE),    # the MSRs kept here, one slot each (builder/msrs.py)
    Field("state", 1),
    Field("paused", 1),          # non-zero: the control console paused it; the scheduler passes it over
    Field("launched", 1),
    Field("expects_exit", 1),    # non-zero: the config gave expect_exit
    Field("line_length", 1),
    Field("uart_divisor_low", 1),   # divisor latch, read back by drivers that probe it
    Field("uart_divisor_high", 1),
    Field("uart_regs", 8),       # emulated 16550 registers by port offset (0 and 2 unused: THR/RBR,
                                 # IIR/FCR)
    # The virtual PC's interrupts and timers (hv/core/events.s.j2, hv/devices/)
    Field("timer_deadline", 8),  # TSC of the guest's earliest device timer event (NO_DEADLINE: none)
    Field("credit", 8),          # TSC cycles it may still run this round (hv/core/sched.s.j2), signed
    Field("share", 8),           # its weight: a round's credit is share time slices (config share)
    Field("cpu_cycles", 8),      # TSC cycles it ran since boot, its exits' handling included
    Field("intr_line", 1),       # an interrupt or NMI waits for delivery (guest_intr_update)
    Field("intr_tpr_held", 1),   # an APIC interrupt waits that only the TPR holds back
    Field("port_b", 1),          # port 0x61 (PC/AT system control port B): gate 2, speaker
    Field("port_b_refresh", 1),  # its refresh bit, toggled at each read
    Field("pic_master", PIC.size),
    Field("pic_slave", PIC.size),
    Field("pit", PIT_CHANNEL.size * 3),
    Field("lapic", 4 * hw.LAPIC_REGISTERS),   # local APIC registers by number (builder/hw.py LAPIC_*)
    Field("apic_base", 8),       # IA32_APIC_BASE
    Field("tsc_deadline", 8),    # IA32_TSC_DEADLINE (0: disarmed)
    Field("lapic_timer_deadline", 8),   # TSC at which the local APIC timer fires (NO_DEADLINE: never)
    Field("lapic_timer_start", 8),      # TSC at which the count lapic_timer_count was current
    Field("lapic_timer_count", 8),      # the current count then
    Field("lapic_esr_pending", 4),      # errors since the ESR was last written
    Field("pic_int", 1),         # the 8259A pair's INT output
    Field("nmi_pending", 1),     # an NMI waits for delivery
    Field("nmi_blocked", 1),     # SVM: an injected NMI's handler has not finished its IRET
    Field("nmi_iret_seen", 1),   # SVM: that IRET exited; NMIs unblock at the next exit
    Field("ioapic", IOAPIC.size),
    Field("acpi_pm1_enable", 2),    # ACPI PM1_EN as written, reserved bits clear
    Field("acpi_pm1_control", 2),   # ACPI PM1_CNT's read/write bits (BM_RLD, SLP_TYP) as written
    Field("rtc_index", 1),       # the byte last written to port 0x70 (bit 7: NMI disable)
    Field("i8042_command_byte", 1),
    Field("i8042_status", 1),    # OBF: i8042_output waits at port 0x60
    Field("i8042_output", 1),
    Field("i8042_pending_command", 1),   # the command whose data byte port 0x60 takes next, or 0
    Field("system_control_a", 1),
    Field("reset_control", 1),
    # COM1's and the RTC's interrupts (hv/devices/uart.s.j2, rtc.s.j2)
    Field("uart_fcr", 1),           # FCR's FIFO enable and trigger level (UART_FCR_KEPT) as written
    Field("uart_receive_count", 1), # bytes in the receive FIFO (RBR alone without FIFOs)
    Field("uart_receive_head", 1),  # index in uart_receive of the byte RBR reads next
    Field("uart_overrun", 1),       # LSR.OE: a byte came with the FIFO full, until LSR is read
    Field("uart_receive", hw.UART_FIFO_SIZE),   # the receive FIFO, a ring
    Field("uart_thre_pending", 1),  # the THRE interrupt is pending
    Field("uart_irq_line", 1),      # IRQ 4 as the UART drives it (INTRPT gated by MCR OUT2)
    Field("rtc_flags", 1),          # register C: PF, AF, UF since its last read, and IRQF
    Field("rtc_next_event", 8),     # TSC of the RTC's next interrupt event (NO_DEADLINE: none)
    Field("rtc_periodic_count", 8), # periods of the periodic rate since boot, at the last look
    Field("virtio_windows", 8),     # bytes of the virtio windows its devices have (builder/virtio.py)
    Field("virtio", VIRTIO.size * VIRTIO_DEVICES_MAX),
    Field("name", GUEST_NAME_SIZE),
    Field("line", GUEST_LINE_SIZE),
])

# The virtio request the hypervisor is serving (hv/devices/virtio_mmio.s.j2
# virtio_queue_serve, virtio_chain): its descriptor chain as read once from
# the guest's memory and checked, so that nothing the request writes into
# that memory can change what it does next; then what the device
# (virtio_blk.s.j2, virtio_balloon.s.j2) keeps of it.
VIRTIO_REQUEST = Record("REQ", [
    Field("head", 4),            # the chain's first descriptor
    Field("count", 4),           # descriptors in `chain`
    Field("readable", 8),        # bytes of its device-readable descriptors
    Field("writable", 8),        # bytes of its device-writable ones
    Field("status", 8),          # host address of the status byte: the last descriptor's last; 0: none
    Field("reason", 8),          # why the request is refused (a string), 0: it is not
    Field("used_len", 4),        # bytes written into its writable descriptors
    Field("pending", 4),         # available entries left in this notification
    Field("lba", 8),             # the pool disk's next sector
    Field("left", 8),            # sectors still to transfer
    Field("offset", 8),          # the data's next byte within the chain's data
    Field("chunk", 4),           # sectors of the ATA command under way
    Field("chunk_left", 4),      # of which still to transfer
    Field("header", 16),         # struct virtio_blk_outhdr, copied
    Field("chain", 16 * VIRTIO_QUEUE_SIZE),   # the descriptors, copied in chain order
])

# The capability pairs that VMCS init entries are adjusted with: a value v
# written with adjust kind k becomes (v | must_be_one[k]) & may_be_one[k].
CAPS = Record("CAPS", [Field("must_be_one", 8), Field("may_be_one", 8)])

HV = Record("HV", [
    Field("memory_upper_kib", 8),  # multiboot mem_upper, for the memory check
    Field("boot_magic", 8),        # EAX at entry: the multiboot loader's magic
    Field("preemption_rate", 8),   # VMX: the preemption timer counts every 2^rate TSC cycles
    Field("preemption_round", 8),  # VMX: 2^(rate+1) - 1, added to a wait so the timer is never early
    Field("slice_deadline", 8),    # TSC at which the running guest's time slice ends (VMX)
    Field("run_start", 8),         # TSC at which the running guest's run began
    Field("timer_deadline", 8),    # SVM: TSC for which the host PIT's one-shot is armed
    Field("mmio_bytes", 16),       # the instruction behind the MMIO access being emulated
    Field("mmio_access", 16),      # what hv/core/decode.s.j2 made of it (MMIO_ACCESS)
    Field("loaded", 8),            # guest record whose builder/vcpu.py state is on the CPU, or 0
    Field("xfeatures", 8),         # XCR0 bits guests may set: GUEST_XFEATURES the CPU has; 0: no XSAVE
    Field("boot_tick", 8),         # TSC at the hypervisor's first instruction
    Field("current", 8),           # guest record running now, 0 before the first
    Field("vmxon_region", 8),      # VMX: the operand of VMXON
    Field("nrip_supported", 8),    # SVM: the CPU reports the next RIP (NRIPS)
    Field("decode_assists", 8),    # SVM: the CPU gives a nested page fault's instruction bytes
    Field("mmio_prefetched", 8),   # bytes of HV.mmio_bytes the backend filled for this exit, or 0
    Field("svm_shared_asid", 8),   # SVM: too few ASIDs, every guest runs with ASID 1
    Field("features", 8),          # HV_FEATURE_* bits the guests see at CPUID 0x40000001
    Field("emulator", 8),          # non-zero: the firmware is an emulator's (power_off)
    Field("lapic_mode", 8),        # LAPIC_MODE_*: where an EOI for the local APIC goes
    Field("tsc_hz", 8),            # the TSC's rate, measured against the PIT at boot
    Field("sleepers", 8),          # guests in GUEST_SLEEPING (hv/core/events.s.j2)
    Field("idle_halts", 8),        # times every guest slept and the CPU halted
    Field("idle_cycles", 8),       # TSC cycles spent so
    Field("rtc_boot_seconds", 8),  # the real RTC read at boot, as seconds since 1970 (rtc_boot_read)
    Field("rtc_boot_tsc", 8),      # the TSC at that read: guests' clocks count from it
    Field("rtc_uip_start", 8),     # TSC cycles into a second at which register A's UIP rises
    Field("rtc_found", 8),         # non-zero: the real RTC answered (its UIP cleared) at boot
    Field("msr_vendor", 8),        # builder/msrs.py Vendor: whose MSRs guests have (the backend's)
    Field("exit_names", 8),        # the backend's table of exit names, one pointer per counter
    Field("exit_name_count", 8),   # counters per guest that have a name (the summary prints them)
    Field("physical_address_mask", 8),  # 2^MAXPHYADDR - 1 (CPUID 0x80000008), for the MTRR checks
    Field("input_guest", 8),       # guest record whose COM1 receives the console's input
    Field("input_escape", 8),      # non-zero: the last input byte was CONSOLE_INPUT_ESCAPE
    Field("nested_root", 8),       # GUEST_EPT_ROOT or GUEST_NPT_ROOT: the backend's tables
    Field("nested_present", 8),    # the bits that make an entry of them present
    Field("storage_state", 8),     # STORAGE_*: what the ATA driver found (hv/drivers/ata.s.j2)
    Field("storage_sectors", 8),   # the pool disk's sectors (IDENTIFY DEVICE)
    Field("console_typed", 8),     # non-zero: the guest with the input was typed into; its output streams
    Field("console_open", 8),      # guest record whose streamed line is open on COM1, or 0
    Field("console_streaming", 8), # non-zero while that stream prints (console_putc leaves the line open)
    Field("console_port", 8),      # the UART console output goes to: COM1, COM2 for control answers
    Field("control_port", 8),      # the control console's UART (COM2), or 0: the machine has none
    Field("control_length", 8),    # bytes of the command line received so far
    Field("control_overflow", 8),  # non-zero: the line outgrew control_line (its bytes are dropped)
    Field("control_line", control.LINE_SIZE),  # the command line, NUL-terminated once complete
    Field("control_argv", 8 * control.ARGS_MAX),  # its words, split in place (hv/core/control.s.j2)
    Field("virtio_request", VIRTIO_REQUEST.size),
    # The backend chosen at boot, as the core calls it (hv/core/arch.s.j2)
    Field("arch_run_guest", 8),
    Field("arch_resume_guest", 8),
    Field("arch_state_read", 8),
    Field("arch_state_write", 8),
    Field("arch_guest_cr0", 8),
    Field("arch_guest_cr4", 8),
    Field("arch_guest_cpl", 8),
    Field("arch_vcpu_switch", 8),
    Field("arch_guest_reset", 8),
    Field("arch_idle", 8),
    Field("arch_guest_code", 8),
    Field("arch_gpr_read", 8),
    Field("arch_gpr_write", 8),
    Field("arch_skip_instruction", 8),
])

# What hv/core/decode.s.j2's mmio_decode makes of the instruction behind an
# MMIO exit: enough to perform the access on a device model and to step over
# the instruction.  The address is not here: the exit gives it.
MMIO_ACCESS = Record("MMIO_ACCESS", [
    Field("immediate", 8),       # MMIO_OPERAND_IMMEDIATE: the value written (zero above `width` bytes)
    Field("length", 1),          # the instruction's bytes, prefixes included: RIP += length
    Field("width", 1),           # bytes accessed in memory: 1, 2, 4 or 8
    Field("direction", 1),       # MMIO_READ or MMIO_WRITE
    Field("operand", 1),         # MMIO_OPERAND_REGISTER or MMIO_OPERAND_IMMEDIATE
    Field("register", 1),        # 0-15 as the SDM numbers them: 0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP,
                                 # 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15 (not SAVED_REGISTERS' order)
    Field("register_width", 1),  # bytes of that register read or written: 1, 2, 4 or 8
    Field("extend", 1),          # MMIO_EXTEND_*: how a read of `width` bytes widens to register_width
    Field("flags", 1),           # MMIO_FLAG_*
])
MMIO_READ = 0                    # memory -> register
MMIO_WRITE = 1                   # register or immediate -> memory
MMIO_OPERAND_REGISTER = 0
MMIO_OPERAND_IMMEDIATE = 1       # C6/C7: a write of `immediate`
MMIO_EXTEND_NONE = 0             # MOV: width == register_width
MMIO_EXTEND_ZERO = 1             # MOVZX
MMIO_EXTEND_SIGN = 2             # MOVSX
MMIO_FLAG_HIGH_BYTE = 1 << 0     # register 0-3 names AH, CH, DH, BH: bits 15:8
MMIO_FLAG_ZERO_UPPER = 1 << 1    # a 4-byte register write clears bits 63:32 (64-bit mode);
                                 # writes of 1 or 2 bytes, and 4 bytes without it, keep the other bits


def mmio_asm_constants() -> dict[str, int]:
    """MMIO_ACCESS's offsets and the values of its fields, for the templates."""
    return {**MMIO_ACCESS.asm_constants(), "MMIO_READ": MMIO_READ, "MMIO_WRITE": MMIO_WRITE,
            "MMIO_OPERAND_REGISTER": MMIO_OPERAND_REGISTER,
            "MMIO_OPERAND_IMMEDIATE": MMIO_OPERAND_IMMEDIATE,
            "MMIO_EXTEND_NONE": MMIO_EXTEND_NONE, "MMIO_EXTEND_ZERO": MMIO_EXTEND_ZERO,
            "MMIO_EXTEND_SIGN": MMIO_EXTEND_SIGN, "MMIO_FLAG_HIGH_BYTE": MMIO_FLAG_HIGH_BYTE,
            "MMIO_FLAG_ZERO_UPPER": MMIO_FLAG_ZERO_UPPER}
