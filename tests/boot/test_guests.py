"""Guests from files and guests that misbehave, booted for real on every
target (the `target` fixture, tests/boot/conftest.py)."""

import re

import pexpect
import pytest
from harness import (
    BACKEND_OF,
    EXPECTED_EXITS,
    TSC_HZ,
    binutils_guest,
    boot_to_end,
    booted,
    build_image,
    guest_lines,
    guest_table,
)

pytestmark = pytest.mark.boot

HEARTBEAT_WITNESS = guest_table("witness", "128K", builtin="heartbeat", heartbeats=6)


def witness_ran_to_the_end(lines):
    beats = [line for line in guest_lines(lines, "witness") if line.startswith("heartbeat")]
    return beats == [f"heartbeat {n}" for n in range(1, 7)] and "[hv] witness exited with code 0" in lines


def test_forbidden_port_msr_and_vmxon_get_their_documented_outcome(tmp_path, target):
    elf = build_image(tmp_path, guest_table("prober", "128K", builtin="prober", heartbeats=2)
                      + HEARTBEAT_WITNESS)
    lines = boot_to_end(elf, target)
    said = guest_lines(lines, "prober")
    assert "port probe: in from an unemulated port read 0x000000ff" in said
    # Had the write reached Bochs' shutdown port, the run would have ended here.
    assert "port probe: wrote Shutdown to the emulator's shutdown port, still running" in said
    assert "caught #GP; msr probe: rdmsr of IA32_PERF_STATUS done" in said
    assert "msr probe: IA32_SYSENTER_ESP reads back 0x5eed1000" in said
    assert "caught #UD; vmx probe: vmxon done" in said
    assert "probe: no fault" not in said
    cpuid = next(line for line in said if line.startswith("cpuid probe"))
    ecx = int(re.search(r"leaf 1 ecx 0x([0-9a-f]+)", cpuid).group(1), 16)
    assert ecx & (1 << 5) == 0, "VMX must be hidden"
    assert ecx & (1 << 31), "the hypervisor-present bit must be set"
    assert cpuid.endswith(", hypervisor signature HVBUILD  VMM")
    assert "[hv] prober exited with code 0" in lines
    assert witness_ran_to_the_end(lines)


def test_an_elf32_guest_built_by_gnu_ld_runs_in_protected_mode(tmp_path, target):
    guest = binutils_guest(tmp_path, "elf32_hello.S", bits=32)
    lines = boot_to_end(build_image(tmp_path, guest_table("elf32", "64K", elf=guest) + HEARTBEAT_WITNESS),
                        target)
    assert guest_lines(lines, "elf32") == ["hello from an ELF32 guest"]
    assert "[hv] elf32 exited with code 7" in lines
    assert witness_ran_to_the_end(lines)


def test_an_elf64_guest_starts_in_long_mode(tmp_path, target):
    guest = binutils_guest(tmp_path, "elf64_hello.S", bits=64)
    lines = boot_to_end(build_image(tmp_path, guest_table("elf64", "2M", elf=guest)), target)
    assert guest_lines(lines, "elf64") == ["hello from an ELF64 guest", "EFER.LMA is set: 64-bit mode"]
    assert "[hv] elf64 exited with code 0" in lines


def test_a_flat_binary_starts_in_real_mode(tmp_path, target):
    guest = binutils_guest(tmp_path, "real_hello.S", bits=16, flat=True, link_address=0x7C00)
    real = guest_table("real", "64K", flat=guest, load_address=0x7C00, mode="real")
    lines = boot_to_end(build_image(tmp_path, real + HEARTBEAT_WITNESS), target)
    assert guest_lines(lines, "real") == ["hello from a real-mode guest"]
    assert "[hv] real exited with code 16" in lines
    assert witness_ran_to_the_end(lines)


@pytest.mark.parametrize("misdeed", ["TRIPLE_FAULT"])
def test_an_unhandled_exit_stops_only_that_guest_with_a_report(tmp_path, target, misdeed):
    guest = binutils_guest(tmp_path, "misbehave.S", bits=32, defines=(misdeed,))
    lines = boot_to_end(build_image(tmp_path, guest_table("bad", "64K", elf=guest) + HEARTBEAT_WITNESS),
                        target)
    assert guest_lines(lines, "bad") == ["about to misbehave"]
    expected = EXPECTED_EXITS[target][misdeed.lower()]
    assert any(re.fullmatch(rf"\[hv\] bad stopped: {expected}, rip 0x[0-9a-f]+", line)
               for line in lines), lines
    assert witness_ran_to_the_end(lines)


def test_a_real_mode_guest_cannot_reach_past_its_memory(tmp_path, target):
    guest = binutils_guest(tmp_path, "real_escape.S", bits=16, flat=True, link_address=0x7C00)
    real = guest_table("real", "64K", flat=guest, load_address=0x7C00, mode="real")
    lines = boot_to_end(build_image(tmp_path, real + HEARTBEAT_WITNESS), target)
    assert guest_lines(lines, "real") == ["real mode: reading guest-physical 0x10000"]
    expected = EXPECTED_EXITS[target]["out_of_bounds"].split(",")[0]
    assert any(re.fullmatch(rf"\[hv\] real stopped: {expected}, exit \d+, qualification 0x[0-9a-f]+, "
                            r"guest-physical 0x10000, rip 0x[0-9a-f]+", line) for line in lines), lines
    assert witness_ran_to_the_end(lines)


@pytest.mark.parametrize("backend", ["vmx", "svm"])
def test_a_forced_backend_on_a_cpu_without_it_fails_with_a_clear_message(tmp_path, target, backend):
    if BACKEND_OF[target] == backend:
        pytest.skip(f"{target} has {backend}: nothing to refuse")
    lines = boot_to_end(build_image(tmp_path, f'[hypervisor]\nbackend = "{backend}"\n' + HEARTBEAT_WITNESS),
                        target)
    extension = "Intel VT-x" if backend == "vmx" else "AMD-V"
    fatal = f'this image was built for the {backend} backend only (config: backend = "{backend}")'
    assert lines == [f"[hv] {backend}: this CPU has no {backend.upper()} ({extension})",
                     f"[hv] fatal: {fatal}",
                     "[hv] powering off"]


def test_boot_reports_the_tsc_rate_it_measured(tmp_path, target):
    """The TSC rate is measured against the PIT at boot (guests' clocks are
    derived from it; harness.TSC_HZ: what each emulator's TSC runs at); the
    real clock's reading follows it (tests/boot/test_devices.py)."""
    lines = boot_to_end(build_image(tmp_path, HEARTBEAT_WITNESS), target)
    khz = int(re.fullmatch(r"\[hv\] TSC: (\d+) kHz, measured against the PIT", lines[1]).group(1))
    expected = TSC_HZ[target] // 1000
    assert abs(khz - expected) <= expected // 100
    assert re.fullmatch(r"\[hv\] RTC: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", lines[2]), lines[2]


def test_svm_finds_the_next_rip_with_and_without_nrips(tmp_path, target):
    """QEMU's software CPU has no NRIPS, Bochs' AMD model has it: the same
    guests run either way (the other tests), and the hypervisor says which."""
    if BACKEND_OF[target] != "svm":
        pytest.skip("SVM only")
    lines = boot_to_end(build_image(tmp_path, HEARTBEAT_WITNESS), target)
    expected = {"qemu": "[hv] svm: no NRIPS: next RIP from the exit information or fixed instruction "
                        "lengths",
                "bochs-svm": "[hv] svm: the CPU reports each exit's next RIP (NRIPS)"}[target]
    assert lines[3] == expected
    assert witness_ran_to_the_end(lines)


def test_a_hypervisor_fault_prints_a_crash_report_naming_the_symbol(tmp_path, target):
    elf = build_image(tmp_path, HEARTBEAT_WITNESS, test_hooks=frozenset({"hv_fault"}))
    with booted(elf, target) as console:
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    panic = next(line for line in lines if "PANIC" in line)
    assert re.fullmatch(r"\[hv\] PANIC: exception #PF page fault \(vector 14\), error code 0x0, "
                        r"rip 0x[0-9a-f]+ <boot_test_fault\+0x0>", panic)
    assert any(line.startswith("[hv] cr2 0x0 ") for line in lines)
    assert any(line.startswith("[hv] rax 0x") for line in lines)
    assert not guest_lines(lines, "witness")


def test_without_an_emulators_firmware_the_hypervisor_halts_instead_of_writing_power_off_ports(tmp_path,
                                                                                                target):
    """On a PC the emulators' exit ports could belong to anything: where
    boot finds no emulator's firmware (a test hook pretends so), the end of
    the run halts the CPU with a message, and the emulator keeps running."""
    elf = build_image(tmp_path, guest_table("alpha", "64K", builtin="heartbeat", heartbeats=1),
                      test_hooks=frozenset({"no_emulator"}))
    with booted(elf, target) as console:
        console.expect(r"\[hv\] halting: no emulator's firmware found, so no power-off port is known")
        # Had it written Bochs' or QEMU's exit port, the emulator would end
        # at once and close the console.
        assert console.spawn.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=3) == 1


def test_sixteen_guests_run_on_a_cpu_with_sixteen_asids(tmp_path, target):
    """QEMU's SVM has 16 ASIDs, one of them the host's: the guests then
    share one ASID, flushed at every switch, and all run (elsewhere each
    has its own; VMX has VPIDs enough)."""
    names = [f"g{n:02}" for n in range(16)]
    elf = build_image(tmp_path, "".join(guest_table(name, "64K", builtin="heartbeat", heartbeats=1)
                                        for name in names))
    lines = boot_to_end(elf, target)
    shared = "[hv] svm: 16 ASIDs for 16 guests: they share one, flushed at every switch"
    assert (shared in lines) == (target == "qemu")
    assert all(f"[hv] {name} exited with code 0" in lines for name in names)


def test_a_host_interrupt_is_ended_on_the_controller_that_delivered_it(tmp_path, target):
    """The 8259A pair is moved to vectors 0x20-0x2F; a test hook lets the
    PIT's IRQ 0 through while a guest computes with IF = 1.  Each arrives
    as an external-interrupt exit with vector 0x20, and keeps arriving:
    without the EOI on the master PIC its in-service bit would hold back
    every later one."""
    if BACKEND_OF[target] != "vmx":
        pytest.skip("SVM does not intercept host interrupts: they wait behind GIF = 0")
    guest = binutils_guest(tmp_path, "interruptible.S", bits=32)
    lines = boot_to_end(build_image(tmp_path, guest_table("alpha", "64K", elf=guest),
                                    test_hooks=frozenset({"unmask_pit"})), target)
    interrupts = [line for line in lines if line.startswith("[hv] external interrupt")]
    assert len(interrupts) >= 3 and set(interrupts) == {"[hv] external interrupt, vector 0x20"}
    assert guest_lines(lines, "alpha") == ["computed with interrupts on"]
    assert "[hv] alpha exited with code 0" in lines


@pytest.mark.parametrize("width, code", [((), 42), (("WORD",), 0x1234), (("DWORD",), 0x12345678)])
def test_a_write_to_the_debug_exit_port_ends_that_guest_with_its_value(tmp_path, target, width, code):
    guest = binutils_guest(tmp_path, "debug_exit.S", bits=32, defines=width)
    lines = boot_to_end(build_image(tmp_path, guest_table("dx", "64K", elf=guest) + HEARTBEAT_WITNESS), target)
    assert guest_lines(lines, "dx") == ["ending through port 0xf4"]
    assert f"[hv] dx exited with code {code}" in lines
    assert witness_ran_to_the_end(lines)
