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

from builder import hw


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
    PortDevice("debug_exit", hw.QEMU_DEBUG_EXIT_PORT, 1, None, "guest_debug_exit",
               "debug exit (QEMU's isa-debug-exit): a write of V ends the guest with exit code V"),
    # The FADT's PM1a event block, then its PM1a control block (builder/acpi.py)
    PortDevice("acpi_pm", hw.ACPI_PM1A_EVT_BLK, hw.ACPI_PM1_EVT_LEN + hw.ACPI_PM1_CNT_LEN,
               "guest_acpi_pm_read", "guest_acpi_pm_write",
               "ACPI PM1a event and control blocks: PM1_STS, PM1_EN, PM1_CNT; S5 powers the guest off"),
)


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
    names = {}
    for device in PORT_DEVICES:
        names[f"DEVICE_{device.name.upper()}_FIRST"] = device.first
        names[f"DEVICE_{device.name.upper()}_COUNT"] = device.count
    return names


check()
