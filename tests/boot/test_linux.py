"""Linux as a guest, unmodified, beside other guests (README, "Linux
guests"): real kernels from Debian's packages, made at set-up time and
cached outside the checkout (guests/linux/assets.py), started by the boot
protocol with a busybox initramfs whose /init (guests/linux/init) reports
what the kernel found and powers off through ACPI S5.

The small kernel runs on every target; Debian's stock kernel on the qemu
target (on Bochs only under `-m slow`: minutes of wall time there)."""

import re

import pexpect
import pytest
from harness import booted, build_image, guest_lines, guest_table, machine

from builder import pool
from guests.linux import assets

pytestmark = pytest.mark.boot

CONSOLE = "console=ttyS0"
LINUX_MEMORY = "48M"                 # the small kernel decompresses at 16 MiB and needs ~12 MiB there
STOCK_MEMORY = "256M"
WITNESS = guest_table("witness", "128K", builtin="heartbeat", heartbeats=3)
# A disk from the storage pool, for guest tables that end with DISK
STORAGE = '[storage]\npool = "pool.img"\nsize = "16M"\n\n'
DISK = 'disks = [{ name = "root", size = "8M" }]\n'
DISK_SERIAL = "init: disk serial root sectors 16384"
# Wall-time bounds for a whole run (not figures: `make bench` counts them).
LINUX_TIMEOUT_S = {"qemu": 300, "bochs": 600, "bochs-svm": 600}


@pytest.fixture(scope="session")
def small_kernel():
    return assets.small_kernel()


@pytest.fixture(scope="session")
def stock_kernel():
    return assets.stock_kernel()


@pytest.fixture(scope="session")
def initramfs():
    return assets.initramfs()


def boot_linux(tmp_path, config, target):
    with booted(build_image(tmp_path, config), target, timeout=LINUX_TIMEOUT_S[target]) as console:
        try:
            console.expect(r"\[hv\] powering off")
        except pexpect.TIMEOUT:
            tail = "\n".join(console.lines[-30:])
            raise AssertionError(f"no power-off in {LINUX_TIMEOUT_S[target]} s; the console's last lines:\n{tail}") \
                from None
        return console.run_to_end()


def report(lines, name):
    """What the guest's /init said: {"uname": "...", "interrupts": [...], ...}."""
    said = {}
    for line in guest_lines(lines, name):
        if line.startswith("init: "):
            key, _, value = line[len("init: "):].partition(" ")
            if key in ("interrupts", "dmesg"):
                said.setdefault(key, []).append(value)
            else:
                said[key] = value
    return said


def interrupts(said, label):
    """The count of /proc/interrupts' line ending in `label` (or starting with it)."""
    for line in said.get("interrupts", []):
        fields = line.split()
        if fields[0] == label or fields[-1] == label:
            return int(fields[1])
    raise AssertionError(f"no /proc/interrupts line {label!r} in {said.get('interrupts')}")


def assert_booted_and_reported(lines, name, target):
    said = report(lines, name)
    assert said.get("uname", "").startswith("Linux 6.1"), guest_lines(lines, name)[-30:]
    # the TSC's rate, found by the kernel through the PIT (no hint on the
    # command line), within 1 % of the hypervisor's own measurement
    khz = int(next(re.fullmatch(r"\[hv\] TSC: (\d+) kHz, measured against the PIT", line)[1]
                   for line in lines if line.startswith("[hv] TSC: ")))
    assert abs(float(said["mhz"]) * 1000 - khz) * 100 <= khz, (said["mhz"], khz)
    # Under Bochs' 4 MHz TSC a tick costs a large share of its period, some
    # come late, and Linux's watchdog, which checks the TSC against the
    # ticks, declares the TSC unstable: the ACPI PM timer (from the same
    # TSC) takes over.
    allowed = ("tsc", "tsc-early") if target == "qemu" else ("tsc", "tsc-early", "acpi_pm")
    assert said["clocksource"] in allowed, said["clocksource"]
    assert interrupts(said, "LOC:") > 0                       # the local APIC timer ticks
    assert interrupts(said, "ttyS0") > 0                      # COM1 drives its console by IRQ 4
    assert said["work"] == "2668667000"                       # user space computed: sum of squares to 2000
    assert said["powering"] == "off"
    assert f"[hv] {name} powered off (ACPI S5)" in lines


def test_the_small_kernel_boots_to_init_and_powers_off_beside_a_witness(tmp_path, target, small_kernel,
                                                                         initramfs):
    config = guest_table("linux", LINUX_MEMORY, linux=small_kernel, initrd=initramfs, cmdline=CONSOLE,
                         expect_exit=0) + WITNESS
    lines = boot_linux(tmp_path, config, target)
    assert_booted_and_reported(lines, "linux", target)
    assert "[hv] witness exited with code 0" in lines
    beats = [line for line in guest_lines(lines, "witness") if line.startswith("heartbeat")]
    assert beats == ["heartbeat 1", "heartbeat 2", "heartbeat 3"]


def test_two_linux_guests_and_a_witness_side_by_side_one_reboots_and_finds_its_disk(tmp_path, target,
                                                                                   small_kernel, initramfs):
    """Each Linux guest has its own command line and initramfs and prints
    its own report; the third reboots (the i8042 or ACPI reset, which its
    fault policy turns into a restart from its pristine image, once) and
    nobody else notices.  The third has a disk from the storage pool: its
    first boot formats it and keeps a note there, its second finds it."""
    second_init = tmp_path / "init"
    second_init.write_text(assets.INIT_SCRIPT.read_text().replace(
        'say "uname', 'say "hello from the second initramfs"\nsay "uname', 1))
    second = assets.initramfs(init=second_init, output=tmp_path / "second.cpio.gz")
    config = (STORAGE
              + guest_table("one", LINUX_MEMORY, linux=small_kernel, initrd=initramfs,
                            cmdline=f"{CONSOLE} init.work=100", expect_exit=0)
              + guest_table("two", LINUX_MEMORY, linux=small_kernel, initrd=second,
                            cmdline=f"{CONSOLE} init.work=200", expect_exit=0)
              + guest_table("rebooter", LINUX_MEMORY, linux=small_kernel, initrd=initramfs,
                            cmdline=f"{CONSOLE} init.then=reboot init.disk=1", on_fault="restart",
                            max_restarts=1) + DISK
              + WITNESS)
    lines = boot_linux(tmp_path, config, target)
    one, two = report(lines, "one"), report(lines, "two")
    assert one["work"] == "338350" and two["work"] == "2686700"         # sums of squares to 100 and 200
    assert one["cmdline"] == f"{CONSOLE} init.work=100" and two["cmdline"] == f"{CONSOLE} init.work=200"
    assert "hello from the second initramfs" not in guest_lines(lines, "one")
    assert "init: hello from the second initramfs" in guest_lines(lines, "two")
    for name in ("one", "two"):
        assert f"[hv] {name} powered off (ACPI S5)" in lines
    rebooter = [line for line in lines if line.startswith("[hv] rebooter ")]
    assert len(rebooter) == 4, rebooter
    assert rebooter[0].startswith("[hv] rebooter stopped: reset through ")
    assert rebooter[1] == "[hv] rebooter restarted (restart 1 of 1)"
    assert rebooter[2].startswith("[hv] rebooter stopped: reset through ")
    assert rebooter[3] == "[hv] rebooter stays stopped: its 1 restarts are used up"
    said = guest_lines(lines, "rebooter")
    assert said.count("init: rebooting") == 2
    disk = [line for line in said if line.startswith("init: disk ")]
    assert disk == [DISK_SERIAL, "init: disk formatted", "init: disk synced boot 1",
                    DISK_SERIAL, "init: disk found boot 1", "init: disk synced boot 2"], said[-40:]
    assert "[hv] witness exited with code 0" in lines


def test_a_linux_guests_file_survives_a_kill_after_sync_and_the_next_boot_reads_it(tmp_path, small_kernel,
                                                                                  initramfs):
    """The emulator is killed the moment the guest's `sync` returned; the
    next boot mounts the disk and reads the file, and the pool file holds
    what it wrote last."""
    config = STORAGE + guest_table("linux", LINUX_MEMORY, linux=small_kernel, initrd=initramfs,
                                   cmdline=f"{CONSOLE} init.disk=1") + DISK
    image = build_image(tmp_path, config)
    with booted(image, "qemu", timeout=LINUX_TIMEOUT_S["qemu"]) as console:
        console.expect(r"init: disk synced boot 1")
    with booted(image, "qemu", timeout=LINUX_TIMEOUT_S["qemu"]) as console:
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    said = report(lines, "linux")
    assert "init: disk found boot 1" in guest_lines(lines, "linux")
    assert "init: disk synced boot 2" in guest_lines(lines, "linux")
    assert interrupts(said, "virtio0") > 0                   # its completions came by IRQ 5
    assert "[hv] linux powered off (ACPI S5)" in lines
    extent = pool.read(tmp_path / "pool.img").extents[0]
    with open(tmp_path / "pool.img", "rb") as stream:
        stream.seek(extent.start)
        assert b"boot 2\n" in stream.read(extent.size)


def test_debians_stock_kernel_boots_to_init_unmodified(tmp_path, stock_kernel, initramfs):
    """Debian's linux-image-amd64, modules and all, on the qemu target."""
    config = guest_table("debian", STOCK_MEMORY, linux=stock_kernel, initrd=initramfs, cmdline=CONSOLE,
                         expect_exit=0) + WITNESS
    lines = boot_linux(tmp_path, config, "qemu")
    assert_booted_and_reported(lines, "debian", "qemu")
    assert report(lines, "debian")["uname"].endswith("-amd64 x86_64")
    assert "[hv] witness exited with code 0" in lines


@pytest.mark.slow
@pytest.mark.parametrize("slow_target", ["bochs", "bochs-svm"])
def test_debians_stock_kernel_boots_to_init_on_bochs(tmp_path, stock_kernel, initramfs, slow_target):
    config = guest_table("debian", STOCK_MEMORY, linux=stock_kernel, initrd=initramfs, cmdline=CONSOLE)
    with booted(build_image(tmp_path, config), slow_target, timeout=3600) as console:
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert_booted_and_reported(lines, "debian", slow_target)


SHELL_READY_TRIES = 10
SHELL_READY_WAIT_S = 15          # per try: a loaded machine (the other worker in Bochs) is slow


def shell_ready(console, name):
    """Wait until `name`'s shell runs what it is given: what comes before
    busybox sh has set up its line editing may be lost, as on a terminal."""
    for attempt in range(SHELL_READY_TRIES):
        console.send(f"echo {name} ready {attempt} $((2 + 2))\n")
        try:
            console.expect(rf"\[{name}\] {name} ready {attempt} 4\b", timeout=SHELL_READY_WAIT_S)
            return
        except pexpect.TIMEOUT:
            continue
    raise AssertionError(f"{name}'s shell never answered")


def test_a_user_types_into_one_linux_shell_at_a_time(tmp_path, small_kernel, initramfs):
    """The console's input goes to one guest at a time (README, "Console
    input"): a command typed into the first Linux guest's shell runs
    there, Ctrl-A n gives the keyboard to the second, and neither shell
    sees what was typed into the other; the shell's prompt shows before
    its line is done (the typed-into guest's output streams).  On the
    qemu target: the same
    hypervisor paths as test_console_input.py on every target, with a real
    shell and its tty behind the UART."""
    shell = f"{CONSOLE} init.then=shell"
    config = (guest_table("left", LINUX_MEMORY, linux=small_kernel, initrd=initramfs, cmdline=shell)
              + guest_table("right", LINUX_MEMORY, linux=small_kernel, initrd=initramfs, cmdline=shell))
    with booted(build_image(tmp_path, config), "qemu", timeout=LINUX_TIMEOUT_S["qemu"]) as console:
        started = set()
        while len(started) < 2:                  # in whichever order the kernels get there
            started.add(re.match(r"\[(\w+)\]", console.expect(r"\[(?:left|right)\] init: shell"))[1])
        shell_ready(console, "left")
        console.send("echo typed into $((6 * 7))\n")
        console.expect(r"\[left\] typed into 42")
        # typed into, the guest's output streams: its next prompt shows at
        # once, with no newline after it
        console.expect(r"\r?\n\[left\] / # ")
        console.send("\x01n")
        console.expect(re.escape("[hv] input goes to right"))
        shell_ready(console, "right")
        console.send("echo other shell $((5 * 5))\n")
        console.expect(r"\[right\] other shell 25")
        console.send("poweroff -f\n")
        console.expect(r"\[hv\] right ")
        console.send("\x01n")
        console.expect(re.escape("[hv] input goes to left"))
        console.send("poweroff -f\n")
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert not [line for line in guest_lines(lines, "right") if "typed" in line or "left" in line]
    assert not [line for line in guest_lines(lines, "left") if "other" in line or "right" in line]


def test_a_running_linux_guest_sees_its_disk_grow(tmp_path, small_kernel, initramfs):
    """The control console's disk command while Linux runs: its virtio_blk
    driver takes the configuration change interrupt and the new capacity,
    and the block device is larger at once, without a reboot."""
    config = STORAGE + guest_table("linux", LINUX_MEMORY, linux=small_kernel, initrd=initramfs,
                                   cmdline=f"{CONSOLE} init.then=shell") + DISK
    with machine(build_image(tmp_path, config), "qemu", timeout=LINUX_TIMEOUT_S["qemu"]) as run:
        console = run.console
        console.expect(r"\[linux\] init: shell")
        shell_ready(console, "linux")
        assert run.control.command("disk linux root grow 4M") == "ok linux root 12582912 bytes"
        console.expect(re.escape("[vda] new size: 24576 512-byte logical blocks"))
        console.send("echo size $(cat /sys/block/vda/size)\n")
        console.expect(r"\[linux\] size 24576\b")
        console.send("poweroff -f\n")
        console.expect(r"\[hv\] powering off")
        lines = console.run_to_end()
    assert "[hv] linux powered off (ACPI S5)" in lines
