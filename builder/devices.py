"""The guest's virtual PC: which device answers which I/O port, defined once.

Every guest has its own copy of every device (its state lives in the
guest's record, builder/structs.py GUEST); the hypervisor's port dispatch
(hv/core/guest_io.s.j2) is generated from `PORT_DEVICES`, and the README's
table of the guest's ports is checked against it by a unit test.  A port
no device claims reads as all ones and ignores writes, as an ISA bus with
nothing attached does.

A device's handlers (hv/devices/<file>.s.j2) are entered with RBX = the
guest's record, EDX = the port's offset from the device's first port,
ECX = the access size in bytes (1, 2 or 4), and for a write EAX = the
value; a read returns the value in EAX.  They may clobber RAX, RCX, RDX,
RSI, RDI and R8-R11.  A device that only takes writes reads as all ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import hw, platform, virtio
from builder.structs import GUEST, IOAPIC, NO_DEADLINE, PIC, PIT_CHANNEL


@dataclass(frozen=True)
class PortDevice:
    name: str           # short identifier: labels and constants use it
    first: int          # first port
    count: int          # ports from `first` on that the device decodes
    read: str | None    # handler label; None: reads as all ones
    write: str | None   # handler label; None: writes are ignored
    description: str    # the README's wording

    @property
    def last(self) -> int:
        return self.first + self.count - 1


# Most used first: the dispatch tries them in this order.
PORT_DEVICES: tuple[PortDevice, ...] = (
    PortDevice("com1", hw.COM1_BASE, hw.UART_PORT_COUNT, "guest_uart_read", "guest_uart_write",
               "COM1, a 16550 UART: the guest's console"),
    PortDevice("pic_master", hw.PIC_MASTER_CMD, 2, "guest_pic_master_read", "guest_pic_master_write",
               "8259A interrupt controller, master (IRQ 0-7)"),
    PortDevice("pic_slave", hw.PIC_SLAVE_CMD, 2, "guest_pic_slave_read", "guest_pic_slave_write",
               "8259A interrupt controller, slave (IRQ 8-15, cascaded on IRQ 2)"),
    PortDevice("pit", hw.PIT_CHANNEL0, 4, "guest_pit_read", "guest_pit_write",
               "8254 timer: channel 0 on IRQ 0, channel 2 gated by port 0x61"),
    PortDevice("port_b", hw.SYSTEM_CONTROL_B, 1, "guest_port_b_read", "guest_port_b_write",
               "system control port B: PIT channel 2 gate and output, speaker bit"),
    PortDevice("elcr", hw.ELCR_MASTER, 2, "guest_elcr_read", "guest_elcr_write",
               "edge/level control of the 8259A pair (stored)"),
    PortDevice("debug_exit", hw.QEMU_DEBUG_EXIT_PORT, 1, None, "guest_debug_exit",
               "debug exit (QEMU's isa-debug-exit): a write of V ends the guest with exit code V"),
    # The FADT's PM1a event block, then its PM1a control block (builder/acpi.py)
    PortDevice("acpi_pm", hw.ACPI_PM1A_EVT_BLK, hw.ACPI_PM1_EVT_LEN + hw.ACPI_PM1_CNT_LEN,
               "guest_acpi_pm_read", "guest_acpi_pm_write",
               "ACPI PM1a event and control blocks: PM1_STS, PM1_EN, PM1_CNT; S5 powers the guest off"),
    PortDevice("acpi_pm_timer", hw.ACPI_PM_TMR_BLK, hw.ACPI_PM_TMR_LEN, "guest_acpi_pm_timer_read", None,
               "ACPI PM timer: 32 bits at 3.579545 MHz, from the TSC"),
    PortDevice("rtc", hw.RTC_INDEX_PORT, hw.RTC_PORT_COUNT, "guest_rtc_read", "guest_rtc_write",
               "MC146818A real-time clock and CMOS memory: index 0x70, data 0x71"),
    PortDevice("fw_cfg", hw.FW_CFG_PORT_SELECTOR, hw.FW_CFG_PORT_COUNT, "guest_fw_cfg_read",
               "guest_fw_cfg_write", "QEMU's fw_cfg, traditional interface: selector 0x510, data 0x511"),
    PortDevice("i8042_data", hw.I8042_DATA_PORT, 1, "guest_i8042_data_read", "guest_i8042_data_write",
               "8042 keyboard controller, data port"),
    PortDevice("i8042_command", hw.I8042_COMMAND_PORT, 1, "guest_i8042_status_read",
               "guest_i8042_command_write", "8042 keyboard controller, status (read) and command (write)"),
    PortDevice("system_control_a", hw.SYSTEM_CONTROL_A, 1, "guest_system_control_a_read",
               "guest_system_control_a_write", "PS/2 system control port A: A20 and fast reset"),
    PortDevice("reset_control", hw.RESET_CONTROL, 1, "guest_reset_control_read",
               "guest_reset_control_write", "reset control register (PIIX3/ICH)"),
)

@dataclass(frozen=True)
class MmioDevice:
    name: str
    base: int           # guest-physical address of its window
    size: int
    read: str           # handlers: EDX = offset in the window, ECX = size (RAX: value)
    write: str
    description: str
    guest_size: str | None = None   # a GUEST field that bounds the window per guest (bytes), if any


# Pages no guest memory covers (guest memory ends below 1 GiB): an access
# exits (EPT violation, nested page fault) and hv/core/mmio.s.j2 decodes it.
MMIO_DEVICES: tuple[MmioDevice, ...] = (
    MmioDevice("lapic", hw.LAPIC_BASE, hw.PAGE_SIZE, "guest_lapic_read", "guest_lapic_write",
               "local APIC (xAPIC), APIC ID 0"),
    MmioDevice("ioapic", hw.IOAPIC_BASE, hw.IOAPIC_PAGE_SIZE, "ioapic_mmio_read", "ioapic_mmio_write",
               "I/O APIC (82093AA), ID 1, 24 pins"),
    MmioDevice("virtio", virtio.BASE, virtio.WINDOWS_SIZE, "virtio_mmio_read", "virtio_mmio_write",
               "virtio 1.x devices over MMIO, a page each: the guest's disks (builder/virtio.py)",
               guest_size="virtio_windows"),
)


def isa_irq_pins() -> list[int]:
    """The I/O APIC pin of each ISA IRQ, as the boot tables route them
    (builder/platform.py), ISA_IRQ_NO_PIN for none."""
    pins = [hw.ISA_IRQ_NO_PIN] * hw.ISA_IRQ_COUNT
    for route in platform.ISA_ROUTES:
        pins[route.irq] = route.pin
    return pins

# The 8259A pair as a PC's firmware leaves it (IBM PC/AT BIOS: IRQ 0-7 at
# vectors 0x08-0x0F, IRQ 8-15 at 0x70-0x77, 8086 mode), every input masked
# but the cascade.  The 8254's counters start unprogrammed (its data sheet
# leaves them undefined at power-on): nothing ticks until the guest loads a
# count, so a guest that never uses the PIT costs no timer exits.
PIC_MASTER_RESET_VECTOR = 0x08
PIC_SLAVE_RESET_VECTOR = 0x70
PIC_MASTER_RESET_IMR = 0xFF & ~(1 << hw.PIC_CASCADE_IRQ)
PIC_SLAVE_RESET_IMR = 0xFF


LAPIC_REGISTER_NAMES = ("ID", "VERSION", "TPR", "APR", "PPR", "EOI", "RRD", "LDR", "DFR", "SVR", "ISR",
                        "TMR", "IRR", "ESR", "LVT_CMCI", "ICR_LOW", "ICR_HIGH", "LVT_TIMER",
                        "LVT_THERMAL", "LVT_PERFORMANCE", "LVT_LINT0", "LVT_LINT1", "LVT_ERROR",
                        "TIMER_INITIAL_COUNT", "TIMER_CURRENT_COUNT", "TIMER_DIVIDE")


def reset_fields() -> dict[str, int | bytes]:
    """The device state of a guest's record as the guest starts."""
    master = PIC.pack(vector=PIC_MASTER_RESET_VECTOR, imr=PIC_MASTER_RESET_IMR, icw4=hw.PIC_ICW4_8086,
                      icw1=hw.PIC_ICW1_INIT & ~hw.PIC_ICW1_SNGL)
    slave = PIC.pack(vector=PIC_SLAVE_RESET_VECTOR, imr=PIC_SLAVE_RESET_IMR, icw4=hw.PIC_ICW4_8086,
                     icw1=hw.PIC_ICW1_INIT & ~hw.PIC_ICW1_SNGL)
    channel = PIT_CHANNEL.pack(next_edge=NO_DEADLINE, reload=hw.PIT_COUNT_RANGE, access=hw.PIT_ACCESS_WORD)
    # 82093AA 3.2.4: every redirection entry masked; the ID the boot tables give
    ioapic = IOAPIC.pack(entries=hw.IOAPIC_ENTRY_RESET.to_bytes(8, "little") * hw.GUEST_IOAPIC_PINS,
                         id=hw.GUEST_IOAPIC_ID)
    return {"pic_master": master, "pic_slave": slave, "pit": channel * hw.PIT_CHANNELS,
            "timer_deadline": NO_DEADLINE, "rtc_next_event": NO_DEADLINE, "ioapic": ioapic, "lapic": lapic_reset(), "lapic_timer_deadline": NO_DEADLINE,
            "apic_base": hw.LAPIC_BASE | hw.APIC_BASE_BSP | hw.APIC_BASE_ENABLE}


def lapic_reset() -> bytes:
    """The local APIC's registers as a PC's firmware leaves them (SDM Vol.
    3A 11.4.7.1 for the power-up values; then the BIOS's set-up, which
    Firecracker repeats): software-enabled with spurious vector 0xFF, LINT0
    in ExtINT mode so that the 8259A's interrupts arrive, LINT1 as the NMI
    input, the other LVT entries masked."""
    registers = bytearray(4 * hw.LAPIC_REGISTERS)

    def put(offset: int, value: int) -> None:
        index = offset >> hw.LAPIC_REGISTER_SHIFT
        registers[4 * index:4 * index + 4] = value.to_bytes(4, "little")

    put(hw.LAPIC_ID, hw.GUEST_LAPIC_ID << hw.LAPIC_ID_SHIFT)
    put(hw.LAPIC_VERSION, hw.GUEST_LAPIC_VERSION | (hw.LAPIC_LVT_ENTRIES - 1) << hw.LAPIC_VERSION_MAX_LVT_SHIFT)
    put(hw.LAPIC_DFR, hw.LAPIC_DFR_FLAT)
    put(hw.LAPIC_SVR, hw.LAPIC_SVR_ENABLE | hw.LAPIC_SPURIOUS_VECTOR)
    for lvt in (hw.LAPIC_LVT_TIMER, hw.LAPIC_LVT_THERMAL, hw.LAPIC_LVT_PERFORMANCE, hw.LAPIC_LVT_ERROR):
        put(lvt, hw.LAPIC_LVT_MASKED)
    put(hw.LAPIC_LVT_LINT0, hw.LAPIC_DELIVERY_EXTINT)
    put(hw.LAPIC_LVT_LINT1, hw.LAPIC_DELIVERY_NMI)
    return bytes(registers)


def check(devices: tuple[PortDevice, ...] = PORT_DEVICES) -> None:
    """No two devices claim one port, and every range is a real port range."""
    claimed: dict[int, str] = {}
    for device in devices:
        if device.count < 1 or device.last > hw.PORT_LAST:
            raise ValueError(f"device {device.name}: ports {device.first:#x}+{device.count} out of range")
        for port in range(device.first, device.last + 1):
            if port in claimed:
                raise ValueError(f"port {port:#x} claimed by {claimed[port]} and {device.name}")
            claimed[port] = device.name


def asm_constants() -> dict[str, int]:
    names = {**PIC.asm_constants(), **PIT_CHANNEL.asm_constants(), **IOAPIC.asm_constants(),
             "NO_DEADLINE": NO_DEADLINE}
    for device in MMIO_DEVICES:
        names[f"MMIO_{device.name.upper()}_BASE"] = device.base
        names[f"MMIO_{device.name.upper()}_SIZE"] = device.size
    # GUEST_APIC_<register>: where the local APIC register is kept in the record
    for name in LAPIC_REGISTER_NAMES:
        offset = getattr(hw, f"LAPIC_{name}")
        names[f"GUEST_APIC_{name}"] = GUEST.offsets["lapic"] + (offset >> hw.LAPIC_REGISTER_SHIFT) * 4
    for device in PORT_DEVICES:
        names[f"DEVICE_{device.name.upper()}_FIRST"] = device.first
        names[f"DEVICE_{device.name.upper()}_COUNT"] = device.count
    return names


check()
