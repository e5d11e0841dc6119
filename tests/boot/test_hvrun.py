"""hvrun, the command: it picks the fastest target that runs the image,
says which, streams the console and exits 0 after a normal power-off."""

import subprocess
import sys

import pytest
from harness import binutils_guest, build_image, guest_table

from builder.config import DEFAULT_CONFIG
from builder.run import kvm_nested_backend

pytestmark = pytest.mark.boot


def hvrun(*args):
    return subprocess.run([sys.executable, "-m", "builder.run", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_hvrun_picks_the_fastest_target_and_shows_both_guests(tmp_path):
    elf = build_image(tmp_path, DEFAULT_CONFIG.read_text())
    done = hvrun(elf)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    nested, _ = kvm_nested_backend()
    expected = "kvm" if nested else "qemu"
    assert lines[0].startswith(f"hvrun: target {expected}: ")
    assert "[alpha] heartbeat 1" in lines and "[beta] heartbeat 1" in lines
    assert lines[-1] == "[hv] powering off"


def test_hvrun_fails_when_the_hypervisor_cannot_run(tmp_path):
    elf = build_image(tmp_path, '[hypervisor]\nbackend = "vmx"\n[[guest]]\nname = "a"\nbuiltin = "heartbeat"\n')
    done = hvrun(elf, "--target", "qemu")
    assert done.returncode == 1
    assert "[hv] fatal: this image was built for the vmx backend only" in done.stdout
    assert "hvrun: the hypervisor could not run the guests" in done.stderr


def test_hvrun_refuses_a_missing_image(tmp_path):
    done = hvrun(tmp_path / "nothing.elf")
    assert done.returncode == 2
    assert done.stderr.strip() == f"hvrun: error: {tmp_path / 'nothing.elf'}: no such image (run hvbuild first)"


def verdict_config(tmp_path, expected_triple_fault_code):
    hello = binutils_guest(tmp_path, "elf32_hello.S", bits=32)                 # exits with code 7
    crash = binutils_guest(tmp_path, "misbehave.S", bits=32, defines=("TRIPLE_FAULT",))
    return (guest_table("hello", "64K", elf=hello, expect_exit=7)
            + guest_table("beats", "128K", builtin="heartbeat", heartbeats=1, expect_exit=0)
            + guest_table("crash", "64K", elf=crash, **({"expect_exit": expected_triple_fault_code}
                                                       if expected_triple_fault_code is not None else {})))


def test_hvrun_prints_a_verdict_table_and_fails_when_a_guest_ends_otherwise(tmp_path):
    elf = build_image(tmp_path, verdict_config(tmp_path, 0))
    done = hvrun(elf, "--target", "qemu")
    assert done.returncode == 1, done.stderr
    table = done.stdout.split("hvrun: verdicts\n")[1].splitlines()
    assert [row.split()[0] for row in table] == ["guest", "hello", "beats", "crash"]
    assert table[1].split() == ["hello", "exited", "7", "7", table[1].split()[4], "ok"]
    assert table[2].split()[1:4] == ["exited", "0", "0"] and table[2].split()[-1] == "ok"
    assert table[3].split()[:5] == ["crash", "stopped:", "SHUTDOWN", "-", "0"] and table[3].endswith("FAILED")
    assert "hvrun: 1 guest(s) did not end as expected: crash" in done.stderr


def test_hvrun_passes_when_every_expected_exit_code_is_met(tmp_path):
    elf = build_image(tmp_path, verdict_config(tmp_path, None))
    done = hvrun(elf, "--target", "qemu")
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("hvrun: verdicts\n")[1].splitlines()
    assert table[3].split()[-1] == "-"          # no expectation: no verdict


def test_hvrun_boots_your_own_kernel_with_no_config(tmp_path):
    """hvrun --kernel, as qemu-system-x86_64 -kernel: the small Linux test
    kernel with its initrd, a heartbeat guest beside it, in an image built
    on the fly (builder/quick.py)."""
    from guests.linux import assets
    done = hvrun("--kernel", assets.small_kernel(), "--initrd", assets.initramfs(), "--memory", "48M",
                 "--append", "console=ttyS0 init.work=10", "--beside", "heartbeat", "--target", "qemu")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "[kernel] init: cmdline console=ttyS0 init.work=10" in lines
    assert "[hv] kernel powered off (ACPI S5)" in lines
    assert "[beside] heartbeat 10" in lines
    assert lines[-1] == "[hv] powering off"


def test_hvrun_boots_a_multiboot_kernel_with_its_command_line(tmp_path):
    elf = binutils_guest(tmp_path, "acpi_kernel.S", bits=32, link_address=0x100000)
    done = hvrun("--kernel", elf, "--memory", "2M", "--append", "hello", "--target", "qemu")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "[hv] kernel powered off (ACPI S5)" in lines, lines[-12:]
    refused = hvrun("--kernel", elf, "--beside", "nobody")
    assert refused.returncode == 2 and "--beside: unknown builtin guest 'nobody'" in refused.stderr


@pytest.mark.parametrize("args, message", [
    (("--kernel", "README.md"), "README.md: not a kernel hvrun can boot: neither a Linux bzImage"),
    (("--kernel", "nothing.bin"), "nothing.bin: No such file or directory"),
    (("--initrd", "x"), "--initrd, --append, --memory and --beside go with --kernel"),
    (("build/hv.elf", "--kernel", "README.md"), "give an image or --kernel, not both"),
])
def test_hvrun_kernel_refuses_what_it_cannot_boot(args, message):
    done = hvrun(*args)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr


def test_hvrun_boots_a_plain_elf_kernel_in_the_mode_of_its_class(tmp_path):
    elf = binutils_guest(tmp_path, "elf64_hello.S", bits=64)
    done = hvrun("--kernel", elf, "--memory", "4M", "--target", "qemu")
    assert done.returncode == 0, done.stderr
    assert "[hv] kernel exited with code 0" in done.stdout.splitlines()
    refused = hvrun("--kernel", elf, "--append", "x")
    assert refused.returncode == 2 and "a plain ELF kernel takes no command line" in refused.stderr
