"""hvbuild as a package (issue 12): a wheel built from the checkout,
installed into a fresh virtual environment, runs outside the checkout:
its templates and emulator definitions come from inside the package
(builder/resources.py), and it builds and boots the default demo."""

import shutil
import subprocess
import sys
import sysconfig

import pytest

from builder.render import PROJECT_ROOT

pytestmark = pytest.mark.boot

LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", "*.egg-info", ".pytest_cache")


def run(*argv, cwd=None):
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_wheel_installed_outside_the_checkout_builds_and_boots_the_demo(tmp_path):
    source = tmp_path / "source"                 # a copy: building leaves nothing in the checkout
    shutil.copytree(PROJECT_ROOT, source, ignore=LEFT_OUT)
    run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", tmp_path / "wheels")
    wheel = next((tmp_path / "wheels").glob("hvbuild-*.whl"))
    env = tmp_path / "env"
    run(sys.executable, "-m", "venv", "--without-pip", env)
    run(sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install", "--no-deps", "-q", wheel)
    # Its dependencies from this environment's site-packages (no index
    # needed), whose own .pth files, the editable hvbuild among them, a
    # path added this way does not run.
    purelib = run(env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (tmp_path / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.move(tmp_path / "deps.pth", purelib.strip())
    work = tmp_path / "work"
    work.mkdir()
    where = run(env / "bin" / "python", "-c", "import builder.resources as r; print(r.root())", cwd=work)
    assert where.strip().startswith(str(env)), where       # the package's own files, not the checkout's
    version = run(env / "bin" / "hvbuild", "--version", cwd=work)
    assert version.strip() == f"hvbuild {run(sys.executable, '-c', 'import builder.resources as r; print(r.version())').strip()}"
    run(env / "bin" / "hvbuild", "-o", "out", cwd=work)
    booted = run(env / "bin" / "hvrun", "out/hv.elf", "--target", "qemu", cwd=work)
    assert "[hv] powering off" in booted
    assert "[alpha] heartbeat 10" in booted                # the demo's two guests, as test_demo.py has them
    assert "[beta] scanned all 262144 bytes of my memory for the secret: matches found: 0" in booted
