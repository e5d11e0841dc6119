"""Interrupts from the virtual PC's devices, seen from inside a guest as
drivers use them (tests/guests/uart_irq.S, rtc_irq.S): COM1's THRE
interrupt on IRQ 4, gated by MCR OUT2, driving interrupt-driven output;
the MC146818A's periodic, update-ended and alarm interrupts on IRQ 8,
through the 8259A cascade, with HLT sleeping until they come.  On every
target."""

import re

import pytest
from harness import boot_to_end, build_image, guest_lines, guest_table
from test_pc import PC_SUCCESS, assert_all_passed, hv_tsc_khz, pc_kernel

pytestmark = pytest.mark.boot

UART_CHECKS = 20
RTC_CHECKS = 25
BYTE_MESSAGE = "sent by the THRE handler, a byte per interrupt"
LINUX_MESSAGE = "sent Linux's way: up to 16 bytes per THRE interrupt, until IIR reads none"
HEARTBEAT_WITNESS = guest_table("witness", "128K", builtin="heartbeat", heartbeats=3)


def test_com1_interrupts_drive_output_and_obey_out2(tmp_path, target):
    config = (guest_table("uart", "4M", multiboot=pc_kernel(tmp_path, "uart_irq.S"), expect_exit=PC_SUCCESS)
              + HEARTBEAT_WITNESS)
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert_all_passed(lines, "uart", UART_CHECKS)
    said = guest_lines(lines, "uart")
    # a byte per interrupt: one THRE interrupt per byte (newline included),
    # and one more that finds the string done
    assert f"thre interrupts {len(BYTE_MESSAGE) + 2}, iir and c2 or c2" in said
    assert BYTE_MESSAGE in said
    # 16 bytes per THRE, IIR read until "no interrupt": all five bursts in
    # one interrupt (five THREs and the final "none"), then the one request
    # the THR writes latched in the 8259A, which finds nothing (one read)
    assert "linux-style: 2 interrupts, 1 found nothing, iir reads 7" in said
    assert LINUX_MESSAGE in said
    assert "garbage: interrupts 1" in said
    assert "[hv] witness exited with code 0" in lines


def test_the_rtc_interrupts_through_the_cascade_at_its_rates_and_wakes_hlt(tmp_path, target):
    """Alone, so that while it waits for IRQ 8 in HLT the CPU halts: the
    idle summary counts at least one halt per measured periodic interrupt.
    The kernel resets itself at the end and checks, restarted, that the
    RESET cleared its interrupt enables."""
    kernel = pc_kernel(tmp_path, "rtc_irq.S")
    config = guest_table("rtc", "4M", multiboot=kernel, on_fault="restart", max_restarts=1,
                         expect_exit=PC_SUCCESS)
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert_all_passed(lines, "rtc", RTC_CHECKS)
    khz = hv_tsc_khz(lines)
    said = guest_lines(lines, "rtc")
    for hz in (1024, 64):
        cycles = int(next(re.fullmatch(rf"{hz} hz: cycles per interrupt (\d+), expected \d+", line)[1]
                          for line in said if line.startswith(f"{hz} hz:")))
        # the period against the TSC rate the hypervisor measured: within 3 %
        assert abs(cycles * hz - khz * 1000) * 33 <= khz * 1000, (hz, cycles, khz)
    assert [line for line in lines if line.startswith("[hv] rtc ")] == [
        "[hv] rtc stopped: reset through the reset control register (port 0xcf9 <- 0x6)",
        "[hv] rtc restarted (restart 1 of 1)",
        f"[hv] rtc exited with code {PC_SUCCESS}",
    ]
    idle = next(re.fullmatch(r"\[hv\] idle: the CPU halted (\d+) times, for (\d+) cycles, "
                             r"while every guest slept", line)
                for line in lines if line.startswith("[hv] idle:"))
    halts, cycles = int(idle.group(1)), int(idle.group(2))
    assert halts >= 64 + 16
    # half of the two measurements' 62.5 and 250 ms at least
    assert cycles * 2 >= khz * (62 + 250)
