"""The control console (hv/core/control.s.j2, README "The control
console"): commands on COM2 that manage the running guests, each answered
with one line, from the test's end of the line (builder/run.py
ControlLine), from `hvctl` through hvrun's socket, and from hvrun's
Ctrl-A c prompt.  Two heartbeat guests run long enough to be managed."""

import re
import subprocess
import sys
from contextlib import contextmanager

import pexpect
import pytest
from harness import build_image, guest_lines, guest_table, machine

from builder.control import parse_list
from builder.run import verdicts

pytestmark = pytest.mark.boot

MEMORY = "256K"
MEMORY_BYTES = 256 * 1024
BEATS = 100_000                 # far more than a test waits for: the control console ends the run
CONFIG = (guest_table("alpha", MEMORY, builtin="heartbeat", heartbeats=BEATS)
          + guest_table("beta", MEMORY, builtin="heartbeat", heartbeats=BEATS, share=2))
STOP_REASON = "a stop command on the control console"
QUIT_REASON = "the control console's quit"


def listed(control) -> dict[str, dict]:
    return {guest["name"]: guest for guest in parse_list(control.command("list"))}


def beats(console, name: str) -> int:
    """Heartbeats `name` has printed so far."""
    return sum(line.startswith("heartbeat") for line in guest_lines(console.lines, name))


def wait_beats(console, name: str, count: int) -> None:
    """Wait until `name` has printed `count` more heartbeats."""
    until = beats(console, name) + count
    while beats(console, name) < until:
        console.expect(rf"\[{name}\] heartbeat \d+\r?\n")


@contextmanager
def running(tmp_path, target):
    """CONFIG booted, both guests under way: yields (console, control)."""
    with machine(build_image(tmp_path, CONFIG), target) as run:
        wait_beats(run.console, "beta", 1)
        yield run.console, run.control


def test_commands_manage_the_running_guests(tmp_path, target):
    with running(tmp_path, target) as (console, control):
        guests = listed(control)
        assert [(g["name"], g["state"], g["share"], g["memory"], g["disks"]) for g in guests.values()] == [
            ("alpha", "running", 1, MEMORY_BYTES, 0), ("beta", "running", 2, MEMORY_BYTES, 0)]
        assert all(g["exits"] > 0 and g["cpu"] > 0 for g in guests.values())

        # pause: alpha runs no more, beta goes on; resume: alpha goes on.
        assert control.command("pause alpha") == "ok alpha paused"
        paused_at = listed(control)["alpha"]
        wait_beats(console, "beta", 3)
        now = listed(control)
        assert now["alpha"]["state"] == "paused" and now["alpha"]["cpu"] == paused_at["cpu"]
        assert now["beta"]["cpu"] > paused_at["cpu"]
        assert control.command("pause alpha") == "error: alpha is already paused"
        assert control.command("resume alpha") == "ok alpha resumed"
        wait_beats(console, "alpha", 1)
        assert control.command("resume alpha") == "error: alpha is not paused"
        lines = console.lines                # COM1 shows whole guest lines, in the order they came
        paused = lines[lines.index("[hv] control: pause alpha"):lines.index("[hv] control: resume alpha")]
        assert not [line for line in paused if line.startswith("[alpha]")], "a paused guest printed"
        assert [line for line in paused if line.startswith("[beta] heartbeat")], "beta stood still"

        # share, stats
        assert control.command("share beta 5") == "ok beta share 5"
        assert listed(control)["beta"]["share"] == 5
        stats = control.command("stats alpha")
        assert re.fullmatch(r"ok alpha exits=\d+ cpu=\d+( [A-Z_]+ \d+)+", stats), stats

        # stop: the guest ends, and stays ended; restart brings it back.
        assert control.command("stop beta") == "ok beta stopped"
        console.expect(re.escape(f"[hv] beta stopped: {STOP_REASON}"))
        assert listed(control)["beta"]["state"] == "stopped"
        for command in ("stop beta", "pause beta"):
            assert control.command(command) == "error: beta has ended (restart starts it again)"
        assert control.command("restart beta") == "ok beta restarted"
        console.expect(re.escape("[hv] beta restarted from the control console"))
        console.expect(r"\[beta\] planted a secret")          # its first line, from its image as built
        wait_beats(console, "beta", 1)
        after = listed(control)["beta"]
        assert after["state"] == "running" and after["share"] == 5, "a restart keeps the share it was given"

        # quit: every guest stops, the summary says why, the machine powers off.
        assert control.command("quit") == "ok powering off"
        lines = console.run_to_end()
    assert "[hv] powering off" in lines
    assert [(v.guest, v.ended) for v in verdicts(lines)] == [
        ("alpha", f"stopped: {QUIT_REASON}"), ("beta", f"stopped: {QUIT_REASON}")]
    assert "[hv] control: restart beta" in lines


# A bad command answers an error and changes nothing.
BAD_COMMANDS = [
    (b"frobnicate\n", "error: unknown command 'frobnicate' (help lists the commands)"),
    (b"list everything\n", "error: usage: list"),
    (b"pause\n", "error: usage: pause NAME"),
    (b"pause alpha beta\n", "error: usage: pause NAME"),
    (b"stop nobody\n", "error: no guest named 'nobody'"),
    (b"stop ALPHA\n", "error: no guest named 'ALPHA'"),
    (b"share alpha\n", "error: usage: share NAME N"),
    (b"share alpha 0\n", "error: a share is a whole number from 1 to 10000"),
    (b"share alpha 10001\n", "error: a share is a whole number from 1 to 10000"),
    (b"share alpha -3\n", "error: a share is a whole number from 1 to 10000"),
    (b"share alpha 99999999999\n", "error: a share is a whole number from 1 to 10000"),
    (b"share alpha 2x\n", "error: a share is a whole number from 1 to 10000"),
    (b"memory alpha 1M\n", f"error: alpha has no balloon device: its memory stays {MEMORY_BYTES} bytes"),
    (b"disk alpha root grow 1M\n", "error: alpha has no disk of that name"),
    (b"disk alpha grow 1M\n", "error: usage: disk NAME DISK grow SIZE"),
    (b"disk alpha root shrink 1M\n", "error: usage: disk NAME DISK grow SIZE"),
    (b"a b c d e f\n", "error: too many words"),
    (b"q" * 200 + b"\n", "error: the line is too long"),
    (b"quit\x00\n", "error: the line holds a byte that is not printable ASCII"),
    (b"stop\x1b[Aalpha\r", "error: the line holds a byte that is not printable ASCII"),
    (b"\xffquit\n", "error: the line holds a byte that is not printable ASCII"),
    (b"   list   \n", None),                                  # spaces around words are no words
]


def test_bad_commands_change_nothing(tmp_path, target):
    with running(tmp_path, target) as (console, control):
        before = listed(control)
        for line, answer in BAD_COMMANDS:
            got = control.exchange(line)
            if answer is None:
                assert got.startswith("ok alpha running"), (line, got)
            else:
                assert got == answer, line
        after = listed(control)
        assert [(g["state"], g["share"], g["memory"]) for g in after.values()] == [
            (g["state"], g["share"], g["memory"]) for g in before.values()]
        wait_beats(console, "alpha", 1)                         # both still run
        wait_beats(console, "beta", 1)
        assert control.command("quit") == "ok powering off"
        lines = console.run_to_end()
    assert not any("stopped:" in line and "quit" not in line for line in lines)


def test_with_every_guest_paused_the_machine_idles_and_still_answers(tmp_path, target):
    """Paused guests neither run nor end the run: the CPU halts, and a
    command on COM2 wakes it (its IRQ 3, routed as an NMI while idle)."""
    with running(tmp_path, target) as (console, control):
        assert control.command("pause alpha") == "ok alpha paused"
        assert control.command("pause beta") == "ok beta paused"
        first = listed(control)
        second = listed(control)
        assert [g["state"] for g in second.values()] == ["paused", "paused"]
        assert [g["cpu"] for g in second.values()] == [g["cpu"] for g in first.values()]
        assert control.command("resume beta") == "ok beta resumed"
        wait_beats(console, "beta", 1)
        assert control.command("quit") == "ok powering off"
        lines = console.run_to_end()
    assert "[hv] powering off" in lines


def test_hvctl_and_the_hvrun_prompt(tmp_path):
    """hvrun serves the control console on a socket for hvctl, and at
    Ctrl-A c on its own terminal; hvctl's exit status tells ok (0), an
    error answer (1) and no hvrun (2)."""
    image = build_image(tmp_path, CONFIG)
    socket_path = tmp_path / "control.sock"

    def hvctl(*words: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "builder.hvctl", "--socket", str(socket_path), *words],
                              capture_output=True, text=True, timeout=120)

    hvrun = pexpect.spawn(sys.executable, ["-m", "builder.run", str(image), "--target", "qemu",
                                           "--control-socket", str(socket_path)],
                          encoding="utf-8", timeout=120)
    try:
        hvrun.expect(r"\[beta\] heartbeat 1\b")
        table = hvctl("list")
        assert table.returncode == 0, table.stderr
        rows = [line.split() for line in table.stdout.splitlines()]
        assert rows[0] == ["name", "state", "share", "memory", "disks", "exits", "cpu"]
        assert [row[:5] for row in rows[1:]] == [["alpha", "running", "1", "256K", "0"],
                                                 ["beta", "running", "2", "256K", "0"]]
        hvrun.send("\x01c")
        hvrun.expect_exact("(hv) ")
        hvrun.send("pause alpha\r")
        hvrun.expect_exact("ok alpha paused")
        hvrun.send("stats nobody\r")
        hvrun.expect_exact("error: no guest named 'nobody'")
        hvrun.send("\r")
        hvrun.expect_exact("hvrun: back to the guests' console")
        raw = hvctl("--raw", "list")
        assert raw.returncode == 0 and raw.stdout.startswith("ok alpha paused share=1 "), raw.stdout
        bad = hvctl("share", "alpha", "0")
        assert (bad.returncode, bad.stdout.strip()) == (1, "error: a share is a whole number from 1 to 10000")
        done = hvctl("quit")
        assert (done.returncode, done.stdout.strip()) == (0, "ok powering off")
        hvrun.expect(pexpect.EOF)
    finally:
        hvrun.close(force=True)
    assert hvrun.exitstatus == 0, hvrun.before
    assert not socket_path.exists(), "hvrun leaves its socket behind"
    gone = hvctl("list")
    assert gone.returncode == 2 and "no hvrun answers there" in gone.stderr


def test_the_isolation_proof_holds_at_run_time(tmp_path, target):
    """check walks the tables the CPU uses now (hv/core/isolation.s.j2)."""
    with running(tmp_path, target) as (console, control):
        assert control.command("check") == (f"ok isolation: {2 * MEMORY_BYTES // 4096} frames of guest memory "
                                            "reached, each by one guest once; no other frame")
        assert control.command("check now") == "error: usage: check"


def test_the_run_time_check_finds_a_frame_that_two_guests_reach(tmp_path, target):
    """A test hook maps beta's first page to alpha's first frame just before
    the walk: the check must name it, so that it can fail."""
    image = build_image(tmp_path, CONFIG, test_hooks=frozenset({"isolation_break"}))
    report = (image.parent / "build-report.txt").read_text()
    alpha = int(re.search(r"(0x[0-9a-f]+)-0x[0-9a-f]+ +\d+  guest alpha memory\n", report)[1], 16)
    with machine(image, target) as run:
        wait_beats(run.console, "beta", 1)
        assert run.control.command("check") == (
            f"error: isolation: beta reaches a frame that is reached already ({alpha:#x})")
