"""The virtual PC's interrupt controllers and timer, seen from inside a
guest as an OS uses them (tests/guests/pic_pit.S): the 8259A pair, the
8254 with channel 2 behind port 0x61, interrupts injected honouring
RFLAGS.IF and the STI shadow, and HLT sleeping until the next tick while
a neighbour computes.  On every target."""

import re
import subprocess
import sys

import pytest
from harness import binutils_guest, boot_to_end, build_image, guest_lines, guest_table

pytestmark = pytest.mark.boot

PC_SUCCESS = 0x31
PIC_PIT_CHECKS = 17


def pc_kernel(tmp_path, source):
    return binutils_guest(tmp_path, source, bits=32, link_address=0x100000)


def hv_tsc_khz(lines):
    return int(next(re.fullmatch(r"\[hv\] TSC: (\d+) kHz, measured against the PIT", line).group(1)
                    for line in lines if line.startswith("[hv] TSC: ")))


def assert_all_passed(lines, name, checks):
    seen = guest_lines(lines, name)
    failed = [line for line in seen if line.startswith("FAIL")]
    assert not failed, seen
    assert [line.split()[1] for line in seen if line.startswith("ok ")] == [str(n) for n in range(1, checks + 1)]
    assert f"[hv] {name} exited with code {PC_SUCCESS}" in lines


def test_the_8259a_and_8254_work_as_an_os_uses_them(tmp_path, target):
    kernel = pc_kernel(tmp_path, "pic_pit.S")
    config = (guest_table("pc", "4M", multiboot=kernel) + f"expect_exit = {PC_SUCCESS}\n"
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=3))
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert_all_passed(lines, "pc", PIC_PIT_CHECKS)
    # the guest's own calibration against its PIT's channel 2 finds the TSC
    # rate the hypervisor measured against the real one, within 1%
    khz = int(next(line.split()[-1] for line in guest_lines(lines, "pc") if line.startswith("tsc khz")))
    assert abs(khz - hv_tsc_khz(lines)) * 100 <= hv_tsc_khz(lines)
    assert "[hv] witness exited with code 0" in lines


def test_a_lone_sleeping_guest_halts_the_cpu_until_its_tick(tmp_path, target):
    """Alone, the kernel sleeps in HLT between its ticks with nothing else
    to run: the CPU halts until the tick's deadline instead of spinning,
    and the ticks still come on time (check 5)."""
    kernel = pc_kernel(tmp_path, "pic_pit.S")
    lines = boot_to_end(build_image(tmp_path, guest_table("pc", "4M", multiboot=kernel)), target)
    assert_all_passed(lines, "pc", PIC_PIT_CHECKS)
    idle = next(re.fullmatch(r"\[hv\] idle: the CPU halted (\d+) times, for (\d+) cycles, "
                             r"while every guest slept", line) for line in lines if line.startswith("[hv] idle:"))
    halts, cycles = int(idle.group(1)), int(idle.group(2))
    assert halts >= 10                    # at least once per tick of check 5
    assert cycles * 2 >= 10 * hv_tsc_khz(lines) * 10   # half of those ten 10-ms ticks, at least


LAPIC_CHECKS = 31


def test_the_local_apic_works_as_an_os_uses_it(tmp_path, target):
    """tests/guests/lapic.S: every register access is MMIO, decoded by the
    hypervisor; self-IPIs by priority, the TPR, the ESR, the timer in its
    three modes against the TSC, an NMI, LINT0 carrying the 8259A, the
    I/O APIC's registers, its pin 2 carrying the PIT and pin 4 COM1."""
    kernel = pc_kernel(tmp_path, "lapic.S")
    config = (guest_table("pc", "4M", multiboot=kernel) + f"expect_exit = {PC_SUCCESS}\n"
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=3))
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert_all_passed(lines, "pc", LAPIC_CHECKS)
    assert "[hv] witness exited with code 0" in lines


def test_cr8_is_the_tpr_and_lowering_it_lets_a_held_interrupt_in_at_once(tmp_path, target):
    """tests/guests/tpr.S, in long mode: on VMX a MOV CR8 exits; on SVM it
    changes V_TPR without an exit, and a virtual interrupt request of the
    held interrupt's priority class makes the CPU exit as CR8 drops below
    it, so the interrupt comes before any exit of the guest's own."""
    kernel = binutils_guest(tmp_path, "tpr.S", bits=64)
    lines = boot_to_end(build_image(tmp_path, guest_table("tpr", "2M", elf=kernel, expect_exit=PC_SUCCESS)),
                        target)
    assert_all_passed(lines, "tpr", 9)
    assert f"[hv] tpr exited with code {PC_SUCCESS}" in lines


def test_a_device_access_the_decoder_refuses_stops_the_guest_with_its_bytes(tmp_path, target):
    """`lock or dword ptr [0xFEE00080], 0` (F0 83 0D 80 00 E0 FE 00) is no
    instruction a kernel uses on a device: the guest is stopped, the report
    shows the bytes, the neighbour goes on."""
    kernel = binutils_guest(tmp_path, "lapic.S", bits=32, link_address=0x100000, defines=("UNDECODABLE",))
    config = (guest_table("pc", "4M", multiboot=kernel)
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=3))
    lines = boot_to_end(build_image(tmp_path, config), target)
    report = [line for line in lines if line.startswith("[hv] pc stopped: ")]
    assert len(report) == 1, lines
    assert re.match(r"\[hv\] pc stopped: a device access the MMIO decoder does not take at "
                    r"guest-physical 0xfee00080, code at 0x1[0-9a-f]{5}, instruction bytes "
                    r"f0 83 0d 80 00 e0 fe 00 ", report[0]), report
    assert "[hv] witness exited with code 0" in lines


def test_test_kernels_side_by_side_keep_their_devices_apart_and_get_a_verdict_table(tmp_path, target):
    """Two local-APIC kernels, the 8259A/8254 kernel and a kernel that
    exits with 42, in one boot: each programs its own PIC, PIT, local and
    I/O APIC (a register of one guest's device seen by another would fail
    its checks), and hvrun's verdict table says every one ended as
    expected.  Short slices: a sleeper that has used its credit waits for
    the round, whose length its neighbours' slices set, and the kernels'
    timer checks allow a few percent, not lost ticks."""
    lapic = pc_kernel(tmp_path, "lapic.S")
    pic_pit = pc_kernel(tmp_path, "pic_pit.S")
    forty_two = binutils_guest(tmp_path, "debug_exit.S", bits=32)
    config = ("[hypervisor]\ntime_slice = 10000\n"
              + guest_table("apic1", "4M", multiboot=lapic, expect_exit=PC_SUCCESS)
              + guest_table("apic2", "4M", multiboot=lapic, expect_exit=PC_SUCCESS)
              + guest_table("legacy", "4M", multiboot=pic_pit, expect_exit=PC_SUCCESS)
              + guest_table("answer", "64K", elf=forty_two, expect_exit=42))
    elf = build_image(tmp_path, config)
    done = subprocess.run([sys.executable, "-m", "builder.run", str(elf), "--target", target,
                           "--timeout", "300"], capture_output=True, text=True, timeout=360, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    lines = done.stdout.splitlines()
    for name, checks in (("apic1", LAPIC_CHECKS), ("apic2", LAPIC_CHECKS), ("legacy", PIC_PIT_CHECKS)):
        assert_all_passed(lines, name, checks)
    table = done.stdout.split("hvrun: verdicts\n")[1].splitlines()
    assert [row.split()[0] for row in table] == ["guest", "apic1", "apic2", "legacy", "answer"]
    assert all(row.split()[-1] == "ok" for row in table[1:]), table


def test_device_accesses_decode_through_the_guests_own_paging(tmp_path, target):
    """tests/guests/mmio_paging.S: the APICs at linear addresses that are
    not their physical ones, under 32-bit paging (4 KiB and 4 MiB pages) and
    PAE (2 MiB pages), in several addressing forms; 64-bit 4-level paging
    is the hostile memory probe's (test_hostile.py)."""
    kernel = pc_kernel(tmp_path, "mmio_paging.S")
    config = (guest_table("pc", "4M", multiboot=kernel) + f"expect_exit = {PC_SUCCESS}\n"
              + guest_table("witness", "128K", builtin="heartbeat", heartbeats=3))
    lines = boot_to_end(build_image(tmp_path, config), target)
    assert_all_passed(lines, "pc", 6)
