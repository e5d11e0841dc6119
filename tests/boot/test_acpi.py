"""A multiboot kernel finds the ACPI and MP tables the builder placed in
its BIOS area (builder/boot_tables.py) as an OS searches for them, checks
them, measures the PM timer against the TSC, and powers itself off
through the FADT's PM1a control port: the
hypervisor reports the power-off and the guest ends with code 0 while a
witness beside it beats on.  Booted on every target."""

import re

import pytest
from harness import binutils_guest, boot_to_end, build_image, guest_lines, guest_table
from test_pc import hv_tsc_khz

from builder import acpi, mptable
from builder.run import Verdict, verdicts

pytestmark = pytest.mark.boot

BEATS = 12          # the kernel is done before the last; the ones after show the machine still on


def test_a_kernel_finds_its_tables_and_powers_off_through_acpi(tmp_path, target):
    kernel = binutils_guest(tmp_path, "acpi_kernel.S", bits=32, link_address=0x100000)
    config = (guest_table("kernel", "2M", multiboot=kernel, expect_exit=0)
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=BEATS))
    lines = boot_to_end(build_image(tmp_path, config), target)
    at = acpi.tables(0xF0000).addresses
    # the PM timer counts at 3.579545 MHz: over 2^22 TSC cycles, within 1 %
    pm_line = next(line for line in guest_lines(lines, "kernel") if line.startswith("pm timer "))
    ticks, cycles = (int(v, 16) for v in re.fullmatch(
        r"pm timer 0x608 length 0x4 ticks (0x[0-9a-f]+) in tsc cycles (0x[0-9a-f]+)", pm_line).groups())
    want = cycles * 3_579_545 / (hv_tsc_khz(lines) * 1000)
    assert abs(ticks - want) * 100 <= want, (ticks, want)
    pm_timer = pm_line
    mp = -(-(at["APIC"] + len(acpi.madt())) // 16) * 16
    assert guest_lines(lines, "kernel") == [
        "rsdp 0xf0000 revision 0x2 oem HVBLD  length 0x24 checksum ok",
        f"xsdt {at['XSDT']:#x} XSDT checksum ok entries 0x2",
        f"table FACP at {at['FACP']:#x} length 0x114 checksum ok",
        f"table APIC at {at['APIC']:#x} length 0x5a checksum ok",
        # flags: WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, FIX_RTC, TMR_VAL_EXT
        f"fadt dsdt {at['DSDT']:#x} facs {at['FACS']:#x} sci 0x9 pm1a_evt 0x600 pm1a_cnt 0x604 flags 0x175",
        pm_timer,
        "dsdt DSDT checksum ok _S5 elements 0x4 slp_typa 0x5",
        "madt lapic 0xfee00000 flags 0x1",
        "madt cpu 0x0 apic id 0x0 flags 0x1",
        "madt ioapic id 0x1 at 0xfec00000 gsi base 0x0",
        "madt override irq 0x0 gsi 0x2 flags 0x0",
        "madt override irq 0x9 gsi 0x9 flags 0xd",          # the SCI: level, active high
        "madt nmi cpu 0xff lint 0x1",
        f"mp floating pointer {mp:#x} spec 0x4",
        f"mp config PCMP at {mp + mptable.FLOATING_POINTER.size:#x} checksum ok entries 0x14 lapic 0xfee00000",
        "mp ioapic id 0x1 version 0x20 at 0xfec00000",
        "mp irq 0x0 -> ioapic 0x1 pin 0x2 flags 0x0",
        "mp irq 0x9 -> ioapic 0x1 pin 0x9 flags 0xd",
        "mp lint 0x0 type 0x3",                             # ExtINT
        "mp lint 0x1 type 0x1",                             # NMI
        "mp cpus 0x1 buses 0x1 ioapics 0x1 irqs 0xf lints 0x2",
        "pm1a_cnt reads 0x1",                               # SCI_EN: always in ACPI mode
        "writing 0x3400 to pm1a_cnt",
    ]
    assert "[hv] kernel powered off (ACPI S5)" in lines
    kernel_verdict = verdicts(lines)[0]           # hvrun's verdict table reads it as an exit
    assert kernel_verdict == Verdict("kernel", "exited", 0, 0, kernel_verdict.exits) and kernel_verdict.passed
    off = lines.index("[hv] kernel powered off (ACPI S5)")
    assert f"[witness] heartbeat {BEATS}" in lines[off:], "the witness beats on after the power-off"
    assert "[hv] witness exited with code 0" in lines
