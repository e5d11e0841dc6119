"""Console input (README, "Console input"): what is typed on the real COM1
(by a test, or at hvrun's terminal)
reaches the guest that has the input, through its virtual 16550's
receiver and IRQ 4 (tests/guests/uart_rx.S), and Ctrl-A n moves the input
to the next guest.  A guest waiting in HLT for input, with no timer armed,
sleeps until input comes (the CPU halts meanwhile); one that nothing at
all can wake is stopped.  On every target."""

import re
import sys

import pexpect
import pytest
from harness import booted, build_image, guest_lines, guest_table
from test_pc import PC_SUCCESS, assert_all_passed, pc_kernel

pytestmark = pytest.mark.boot

CHECKS_ONE_GUEST = 9
CTRL_A = "\x01"
HEARTBEAT_WITNESS = guest_table("witness", "128K", builtin="heartbeat", heartbeats=3)


def tagged(name, text):
    return rf"\[{name}\] {re.escape(text)}\r?\n"


def test_typed_lines_reach_the_guest_by_interrupt_and_overrun_without_fifos(tmp_path, target):
    """The witness ends early; from then on the CPU halts between the
    lines, since the guest waits for input with no timer armed."""
    config = (guest_table("rx", "4M", multiboot=pc_kernel(tmp_path, "uart_rx.S"), expect_exit=PC_SUCCESS)
              + HEARTBEAT_WITNESS)
    with booted(build_image(tmp_path, config), target) as console:
        console.expect(tagged("rx", "ready"))
        console.expect(r"\[hv\] witness exited with code 0")
        console.send("hello, hypervisor\n")
        console.expect(tagged("rx", "received: hello, hypervisor"))
        console.send("overrun\r")
        console.expect(tagged("rx", "ready for overrun"))
        console.send("xy")
        console.expect(tagged("rx", "overrun: lsr 63, rbr x, lsr 60"))
        console.send("exit\n")
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert_all_passed(lines, "rx", CHECKS_ONE_GUEST)
    said = [line for line in guest_lines(lines, "rx") if not line.startswith("ok ")]
    assert said[said.index("ready"):-1] == [
        "ready", "received: hello, hypervisor", "received: overrun", "ready for overrun",
        "overrun: lsr 63, rbr x, lsr 60", "received: exit"]
    # which of received data (0100) and timeout (1100) came depends on how
    # many bytes each poll of the real UART found: check 4 allows only those
    assert re.fullmatch(r"iir ids seen \d+", said[-1])
    assert f"[hv] rx exited with code {PC_SUCCESS}" in lines
    halts = int(next(re.match(r"\[hv\] idle: the CPU halted (\d+) times", line)[1]
                     for line in lines if line.startswith("[hv] idle: ")))
    # it has no timer: before the idle path knew input, it was stopped;
    # now the CPU halts (how often depends on the typing's timing)
    assert halts >= 1


def test_ctrl_a_n_moves_the_input_and_a_guest_nothing_can_wake_is_stopped(tmp_path, target):
    kernel = pc_kernel(tmp_path, "uart_rx.S")
    config = (guest_table("first", "4M", multiboot=kernel) + guest_table("second", "4M", multiboot=kernel))
    with booted(build_image(tmp_path, config), target) as console:
        console.expect(tagged("first", "ready"))
        console.expect(tagged("second", "ready"))
        console.send("one\n")
        console.expect(tagged("first", "received: one"))
        console.send(CTRL_A + "n")
        console.expect(r"\[hv\] input goes to second\r?\n")
        console.send("two\n")
        console.expect(tagged("second", "received: two"))
        console.send("exit\n")
        console.expect(rf"\[hv\] second exited with code {PC_SUCCESS}")
        console.send(CTRL_A + "n")
        console.expect(r"\[hv\] input goes to first\r?\n")
        console.send(CTRL_A + CTRL_A + CTRL_A + "x" + "three\n")    # Ctrl-A sent once; Ctrl-A x: nothing
        console.expect(tagged("first", "received: .three"))
        console.send("sleep\n")
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert guest_lines(lines, "first")[-2:] == ["received: .three", "received: sleep"]
    assert "received: two" not in guest_lines(lines, "first")
    assert "received: one" not in guest_lines(lines, "second")
    assert ("[hv] first stopped: halted with interrupts enabled, and no timer or input can wake it"
            in lines)


def test_hvrun_types_what_its_terminal_gets(tmp_path, target):
    """`hvrun` from a terminal: keys go to the guest as they are typed
    (cbreak mode: nothing echoed, no line editing), and the run ends."""
    image = build_image(tmp_path, guest_table("rx", "4M", multiboot=pc_kernel(tmp_path, "uart_rx.S"),
                                              expect_exit=PC_SUCCESS))
    hvrun = pexpect.spawn(sys.executable, ["-m", "builder.run", str(image), "--target", target],
                          encoding="utf-8", timeout=120)
    try:
        hvrun.expect(r"\[rx\] ready")
        hvrun.send("typed at a terminal\r")
        hvrun.expect(r"\[rx\] received: typed at a terminal")
        hvrun.send("exit\r")
        hvrun.expect(pexpect.EOF)
    finally:
        hvrun.close(force=True)
    assert hvrun.exitstatus == 0, hvrun.before
    assert f"[hv] rx exited with code {PC_SUCCESS}" in hvrun.before
