"""The guests' virtual PC as its boot tables describe it: how the ISA
interrupt lines reach the I/O APIC.

The MP table (builder/mptable.py) lists every route; the ACPI MADT
(builder/acpi.py) lists only those that differ from the identity mapping
ISA IRQ n -> GSI n with the bus's own polarity and trigger, as interrupt
source overrides (ACPI 6.4 5.2.12.5).  Both read the one list here, so
they cannot describe two different machines.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder import hw


@dataclass(frozen=True)
class IsaRoute:
    irq: int        # ISA IRQ (the 8259A input)
    pin: int        # I/O APIC input (INTIN#); the GSI, as GUEST_IOAPIC_GSI_BASE is 0
    flags: int      # MPS INTI flags: polarity and trigger mode

    @property
    def overridden(self) -> bool:
        """Does ACPI need an interrupt source override to say so?"""
        return self.pin != self.irq or self.flags != hw.MPS_INTI_CONFORMS


def _route(irq: int) -> IsaRoute:
    if irq == hw.ISA_IRQ_PIT:
        return IsaRoute(irq, hw.IOAPIC_PIT_PIN, hw.MPS_INTI_CONFORMS)
    if irq == hw.ISA_IRQ_SCI:     # level-triggered, active high, as on PCs (ACPI 6.4 5.2.9: SCI_INT)
        return IsaRoute(irq, irq, hw.MPS_INTI_POLARITY_ACTIVE_HIGH | hw.MPS_INTI_TRIGGER_LEVEL)
    return IsaRoute(irq, irq, hw.MPS_INTI_CONFORMS)


# IRQ 2 has no route: it is the slave 8259A's cascade input, and its pin
# carries the PIT's IRQ 0.
ISA_ROUTES: tuple[IsaRoute, ...] = tuple(_route(irq) for irq in range(hw.ISA_IRQ_COUNT)
                                         if irq != hw.ISA_IRQ_CASCADE)
assert all(route.pin < hw.GUEST_IOAPIC_PINS for route in ISA_ROUTES)
