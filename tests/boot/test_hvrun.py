"""hvrun, the command: it picks the fastest target that runs the image,
says which, streams the console and exits 0 after a normal power-off."""

import subprocess
import sys

import pytest
from harness import build_image

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
