"""The guest's PC devices (builder/devices.py, hv/devices/), each checked
from inside a guest by a multiboot test kernel (tests/guests/) as a test
suite's kernel checks a machine, on every target: the MC146818A clock and
CMOS, QEMU's fw_cfg, the three reset paths under both fault policies, and
what a careless or hostile driver feeds them."""

import datetime
import re

import pytest
from harness import TSC_HZ, binutils_guest, boot_to_end, build_image, guest_lines, guest_table

pytestmark = pytest.mark.boot

KERNEL_BASE = 0x100000
HEARTBEAT_WITNESS = guest_table("witness", "128K", builtin="heartbeat", heartbeats=3)
ONE_SECOND = datetime.timedelta(seconds=1)
ALL_PASSED = "checks done, 0x00000000 failed"
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def kernel(tmp_path, source, **keys):
    return binutils_guest(tmp_path, source, bits=32, link_address=KERNEL_BASE, **keys)


def fields(text):
    """The numbers of "YYYY-MM-DD HH:MM:SS" (any of them may be out of range)."""
    return tuple(int(n) for n in re.fullmatch(r"(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)", text).groups())


def moment(text):
    return datetime.datetime(*fields(text))


def carried(year, month, day, hour, minute, second):
    """The moment fields out of their range name, each carrying into the
    next (README: a written value out of range carries)."""
    first = datetime.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    return first + datetime.timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second)


def hv_clock(lines):
    """The hypervisor's reading of the real clock at boot, its third line."""
    assert lines[0].startswith("[hv] hvbuild hypervisor: ") and lines[1].startswith("[hv] TSC: "), lines[:3]
    return moment(re.fullmatch(r"\[hv\] RTC: (.*)", lines[2])[1])


def memory_line(memory):
    """What the kernel prints of the CMOS memory-size bytes (the PC/AT map)."""
    kib = memory // 1024
    extended = min(max(kib - 1024, 0), 0xFFFF)
    above_16m = max(memory - 16 * 2**20, 0) // 2**16
    return (f"cmos memory: base {min(kib, 640):04x} extended {extended:04x} post {extended:04x} "
            f"above 16M {above_16m:04x} above 4G 000000 equipment 02 checksum ok")


# --- the real-time clock ---------------------------------------------------

def test_boot_reads_the_real_clock_across_a_leap_day(tmp_path, target):
    """The emulator's clock starts half a minute before the end of
    2024-02-29; the hypervisor's line shows that moment plus the boot (Bochs'
    BIOS and GRUB take some 12 s of its time)."""
    start = datetime.datetime(2024, 2, 29, 23, 59, 30)
    lines = boot_to_end(build_image(tmp_path, HEARTBEAT_WITNESS), target, rtc_start=start)
    assert start <= hv_clock(lines) <= start + datetime.timedelta(seconds=60)
    assert "[hv] witness exited with code 0" in lines


def test_a_guest_reads_its_clock_sets_it_and_no_other_guest_sees_that(tmp_path, target):
    # Between two polls while it waits for a tick it spins 100 us (the UIP
    # window is 244 us); Bochs' TSC counts the hypervisor's instructions
    # too, and there a poll's four exits alone take some 185 us, so it
    # spins only 25 us.
    poll_us = 25 if target.startswith("bochs") else 100
    ticks = {"POLL_TICKS": TSC_HZ[target] * poll_us // 1_000_000}
    config = (guest_table("clock", "20M", multiboot=kernel(tmp_path, "rtc.S", values=ticks), expect_exit=0)
              + guest_table("neighbour", "4M", expect_exit=0,
                            multiboot=kernel(tmp_path, "rtc.S", defines=("NEIGHBOUR",), values=ticks)))
    lines = boot_to_end(build_image(tmp_path, config), target)
    booted = hv_clock(lines)
    said = guest_lines(lines, "clock")
    assert said[0] == "power-on registers A 26 B 02 D 80"
    start = re.fullmatch(rf"clock at start ({DATE}) day (\d\d)", said[1])
    assert start, said[1]
    at, weekday = moment(start[1]), int(start[2])
    assert booted <= at <= booted + 5 * ONE_SECOND
    assert weekday == at.isoweekday() % 7 + 1                  # Sunday is 1
    assert said[2:8] == [
        "BCD and binary readings agree",
        "clock set to 1999-12-31 23:59:59",
        "the seconds turned over after UIP",
        "register C after the tick 10, read again 00",        # UF, cleared by the read
        "after the tick 2000-01-01 00:00:00 day 07",          # century, year ... turn over; Saturday
        # 13:00, 00:00, 12:00, 23:00, 09:00 in 12-hour BCD, then 23:00, 00:00, 12:00
        # in 12-hour binary; 12 AM, 12 PM, 5 PM, 1 AM (BCD) and 11 PM (binary)
        # written in 12-hour mode, read in 24-hour BCD
        "12-hour: 81 12 92 91 09 8b 0c 8c; written: 00 12 17 01 23",
    ]
    carries = [re.fullmatch(r"set (.*) reads (.*) day 01", line) for line in said[8:17]]
    assert all(carries), said[8:17]
    for line in carries:
        expected = carried(*fields(line[1]))
        assert moment(line[2]) in (expected, expected + ONE_SECOND), line[0]
    assert [line[1] for line in carries][:3] == ["2100-02-29 12:00:30", "2000-02-29 12:00:30",
                                                 "1900-02-29 12:00:30"]
    assert said[17] == memory_line(20 * 2**20)
    assert re.fullmatch(r"clock at the end 9999-12-31 23:59:3\d day 01", said[18]), said[18]
    assert said[19:] == [ALL_PASSED]

    # The neighbour reads its clock after the other set its own to 1999 (and
    # wrote CMOS byte 0x40), and sets its own before the other's last look.
    beside = guest_lines(lines, "neighbour")
    assert lines.index("[clock] clock set to 1999-12-31 23:59:59") < lines.index(f"[neighbour] {beside[0]}")
    own = re.fullmatch(rf"clock ({DATE}) day \d\d", beside[0])
    assert own and booted <= moment(own[1]) <= booted + 5 * ONE_SECOND, beside[0]
    assert beside[1:3] == [memory_line(4 * 2**20), "cmos marker byte 00"]
    assert re.fullmatch(r"own clock set, reads 2077-07-07 07:07:0[78] day 01", beside[3]), beside[3]
    assert beside[4:] == [ALL_PASSED]
    assert lines.index(f"[neighbour] {beside[3]}") < lines.index(f"[clock] {said[18]}")
    assert "[hv] clock exited with code 0" in lines and "[hv] neighbour exited with code 0" in lines


# --- fw_cfg ------------------------------------------------------------------

def test_fw_cfg_gives_the_signature_the_memory_size_and_one_cpu(tmp_path, target):
    config = guest_table("firmware", "6M", multiboot=kernel(tmp_path, "fw_cfg.S")) + HEARTBEAT_WITNESS
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert guest_lines(lines, "firmware") == [
        "signature QEMU",
        "past the end: 00 00",
        "id 0x00000001",                                    # the traditional interface, no DMA
        f"ram size high 0x00000000 low {6 * 2**20:#010x}",
        "cpus 0x00000001 max cpus 0x00000001",
        "file directory: 0x00000000 files",
        "unknown selector: 0x00000000",
        "byte-wide selector: id 01",
        ALL_PASSED,
    ]
    assert "[hv] firmware exited with code 0" in lines
    assert "[hv] witness exited with code 0" in lines


# --- resets ------------------------------------------------------------------

RESET_PATHS = {
    "I8042": ("i8042 self-test 55", "reset through the i8042 (port 0x64 <- 0xfe)"),
    "RESET_CONTROL": ("reset control reads back 02",
                      "reset through the reset control register (port 0xcf9 <- 0x6)"),
    "PORT_A": ("port A 02", "reset through system control port A (port 0x92 <- 0x3)"),
}


@pytest.mark.parametrize("path", list(RESET_PATHS))
def test_a_guest_that_resets_itself_restarts_or_stays_stopped_by_its_policy(tmp_path, target, path):
    """Two guests reset themselves the same way: one with on_fault =
    "restart" runs again (its restart count at CPUID 0x40000001, its CMOS as
    it left it), the other, with the default policy, stays stopped with the
    report; neither disturbs the witness."""
    resets = kernel(tmp_path, "resets.S", defines=(path,))
    config = (guest_table("phoenix", "4M", multiboot=resets, on_fault="restart", max_restarts=2)
              + guest_table("plain", "4M", multiboot=resets) + HEARTBEAT_WITNESS)
    lines = boot_to_end(build_image(tmp_path, config), target)
    before, report = RESET_PATHS[path]
    assert guest_lines(lines, "phoenix") == ["run 00", before, "run 01", "cmos marker byte a5", ALL_PASSED]
    assert [line for line in lines if line.startswith("[hv] phoenix ")] == [
        f"[hv] phoenix stopped: {report}",
        "[hv] phoenix restarted (restart 1 of 2)",
        "[hv] phoenix exited with code 0",
    ]
    assert guest_lines(lines, "plain") == ["run 00", before]
    assert [line for line in lines if line.startswith("[hv] plain ")] == [f"[hv] plain stopped: {report}"]
    reason = report.split(" (")[0]
    summary = f"[hv] summary: plain stopped by the hypervisor: {reason}, "
    assert any(line.startswith(summary) for line in lines)
    assert "[hv] witness exited with code 0" in lines


# --- hostile input -------------------------------------------------------------

def test_bad_indexes_odd_sizes_and_write_only_registers_get_what_the_chips_give(tmp_path, target):
    config = guest_table("edges", "4M", multiboot=kernel(tmp_path, "device_edges.S")) + HEARTBEAT_WITNESS
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert guest_lines(lines, "edges") == [
        "rtc: hostile accesses checked",
        "fw_cfg: hostile accesses checked",
        "i8042: hostile accesses checked",
        "port A and reset control: hostile accesses checked",
        ALL_PASSED,
    ]
    assert "[hv] edges exited with code 0" in lines
    assert not any(" stopped: " in line for line in lines)
    assert "[hv] witness exited with code 0" in lines
