"""The Linux test guests: real kernels and a busybox initramfs, made at set-up time.

Nothing here is committed output.  Each asset comes from Debian's packages
on first use and is cached outside the checkout, keyed by its inputs, so a
fresh machine pays for it once (the small kernel: about 17 minutes on two
cores) and every later run finds it:

- small_kernel(): Debian's `linux-source-6.1`, `make tinyconfig`, the
  options of kernel.config beside this file, `make bzImage`;
- stock_kernel(): the image of Debian's `linux-image-amd64`, fetched with
  `apt-get download` and unpacked, not installed;
- initramfs(): Debian's `busybox-static` and an /init script, as a gzipped
  cpio "newc" archive (the format of the kernel's
  Documentation/driver-api/early-userspace/buffer-format.rst).

Run as `python -m guests.linux.assets small|stock|initramfs` to make one
and print its path, or `... link build/linux` (`make linux-assets`) to make
them all and link them there under fixed names.
"""
import contextlib
import fcntl
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNEL_CONFIG = HERE / "kernel.config"
INIT_SCRIPT = HERE / "init"

SOURCE_PACKAGE = "linux-source-6.1"
STOCK_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX = Path("/bin/busybox")
# What `make bzImage` needs beside gcc and make.
BUILD_PACKAGES = [SOURCE_PACKAGE, "flex", "bison", "bc", "libelf-dev", "libssl-dev", "xz-utils"]

# Bumped when the way an asset is made changes, so old cache entries are not reused.
RECIPE = "1"


def cache_root():
    base = os.environ.get("HVBUILD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hvbuild")
    return Path(base)


def say(message):
    print(f"[linux-assets] {message}", file=sys.stderr, flush=True)


def package_version(package):
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                            capture_output=True, text=True)
    fields = result.stdout.split()
    if result.returncode == 0 and fields[:3] == ["install", "ok", "installed"]:
        return fields[3]
    return None


def install_packages(packages):
    missing = [p for p in packages if package_version(p) is None]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"check": True, "env": env, "stdout": subprocess.DEVNULL}
    subprocess.run(sudo + ["apt-get", "update", "-qq"], **quiet)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing], **quiet)


def _key(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _exclusive(name):
    """One maker at a time per asset, across processes (pytest-xdist's
    workers ask at once): the others wait, then find it made."""
    lock_path = cache_root() / "linux" / f".{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _publish(built, final):
    """Move a finished file into the cache in one rename, so a killed build leaves nothing half-written."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(final.name + ".partial")
    shutil.copyfile(built, staging)
    os.replace(staging, final)
    return final


def small_kernel():
    """The tinyconfig kernel of kernel.config, built once per source version and config."""
    with _exclusive("small"):
        return _small_kernel()


def _small_kernel():
    install_packages(BUILD_PACKAGES)
    version = package_version(SOURCE_PACKAGE)
    fragment = KERNEL_CONFIG.read_bytes()
    entry = cache_root() / "linux" / f"small-{version}-{_key(RECIPE, version, fragment)}"
    image = entry / "bzImage"
    if image.exists():
        return image
    tarball = Path("/usr/src") / f"{SOURCE_PACKAGE}.tar.xz"
    entry.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=entry, prefix="build-") as scratch:
        scratch = Path(scratch)
        say(f"building the small Linux test kernel from {SOURCE_PACKAGE} {version} "
            f"(once per machine; about 17 minutes on two cores)")
        say("  unpacking the source")
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(scratch)], check=True)
        tree = scratch / SOURCE_PACKAGE
        make = ["make", "-C", str(tree), f"-j{os.cpu_count() or 1}"]
        say("  configuring: tinyconfig + kernel.config")
        subprocess.run(make + ["tinyconfig"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(tree),
                        str(tree / ".config"), str(KERNEL_CONFIG)],
                       check=True, cwd=tree, stdout=subprocess.DEVNULL)
        subprocess.run(make + ["olddefconfig"], check=True, stdout=subprocess.DEVNULL)
        _check_config(tree / ".config")
        say("  compiling (a line per 500 objects)")
        _make_with_progress(make + ["bzImage"])
        shutil.copyfile(tree / ".config", entry / "config")
        return _publish(tree / "arch/x86/boot/bzImage", image)


def _check_config(config):
    """Every option kernel.config asks for must survive olddefconfig, else the guest is not what it says."""
    have = set(config.read_text().splitlines())
    lost = []
    for line in KERNEL_CONFIG.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, value = line.split("=", 1)
        wanted = f"# {name} is not set" if value == "n" else line
        if wanted not in have and not (value == "n" and f"{name}=y" not in have):
            lost.append(line)
    if lost:
        raise SystemExit(f"kernel.config: olddefconfig dropped {', '.join(lost)} "
                         f"(a dependency is missing)")


def _make_with_progress(command):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    objects = 0
    tail = []
    for line in process.stdout:
        tail = (tail + [line])[-40:]
        if line.lstrip().startswith("CC"):
            objects += 1
            if objects % 500 == 0:
                say(f"  {objects} objects compiled")
    if process.wait() != 0:
        sys.stderr.write("".join(tail))
        raise SystemExit(f"the kernel build failed ({' '.join(command)})")


def stock_kernel():
    """The bzImage of Debian's current linux-image-amd64, unpacked from its package."""
    with _exclusive("stock"):
        return _stock_kernel()


def _stock_kernel():
    depends = subprocess.run(["apt-cache", "depends", STOCK_PACKAGE], capture_output=True,
                             text=True, check=True).stdout
    image_package = next(line.split()[-1] for line in depends.splitlines()
                         if line.strip().startswith("Depends:") and "linux-image-" in line)
    entry = cache_root() / "linux" / f"stock-{image_package}"
    image = entry / "vmlinuz"
    if image.exists():
        return image
    entry.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=entry, prefix="fetch-") as scratch:
        say(f"fetching Debian's {image_package} (once per machine)")
        fetched = subprocess.run(["apt-get", "download", "-q", image_package], cwd=scratch,
                                 capture_output=True, text=True)
        if fetched.returncode != 0:
            raise SystemExit(f"apt-get download {image_package} failed: {fetched.stderr.strip()}")
        deb = next(Path(scratch).glob("*.deb"))
        unpacked = Path(scratch) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        vmlinuz = next((unpacked / "boot").glob("vmlinuz-*"))
        return _publish(vmlinuz, image)


def _cpio_newc(entries):
    """A cpio archive in the "newc" format: a 110-byte ASCII header per entry, 4-byte aligned."""
    out = bytearray()
    for inode, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = [inode if name != "TRAILER!!!" else 0, mode, 0, 0, 1, 0, len(data),
                  0, 0, 0, 0, len(encoded), 0]
        out += b"070701" + b"".join(b"%08X" % field for field in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


S_IFDIR, S_IFREG, S_IFLNK = 0o040000, 0o100000, 0o120000


def initramfs(init=None, output=None):
    """A gzipped initramfs: busybox, its applets as links, and an /init script."""
    with _exclusive("busybox"):
        install_packages([BUSYBOX_PACKAGE])
    init_text = Path(init).read_bytes() if init else INIT_SCRIPT.read_bytes()
    entries = [(d, S_IFDIR | 0o755, b"") for d in ("bin", "dev", "proc", "sys", "tmp")]
    entries.append(("bin/busybox", S_IFREG | 0o755, BUSYBOX.read_bytes()))
    for applet in ("sh", "cat", "echo", "grep", "uname", "head", "poweroff", "reboot",
                   "mount", "sleep", "awk", "seq", "tr", "wc", "sed", "dmesg", "cut"):
        entries.append((f"bin/{applet}", S_IFLNK | 0o777, b"busybox"))
    entries.append(("init", S_IFREG | 0o755, init_text))
    archive = gzip.compress(_cpio_newc(entries), mtime=0)
    if output is None:
        entry = cache_root() / "linux" / f"initramfs-{_key(RECIPE, archive)}.cpio.gz"
        if entry.exists():
            return entry
        output = entry
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(output.name + ".partial")
    staging.write_bytes(archive)
    os.replace(staging, output)
    return output


def link(directory):
    """Every asset made, and linked into `directory` under a fixed name,
    for configs that name them (examples/linux.toml: build/linux/...)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, maker in (("bzImage", small_kernel), ("vmlinuz-debian", stock_kernel),
                        ("initramfs.cpio.gz", initramfs)):
        target = directory / name
        target.unlink(missing_ok=True)
        target.symlink_to(maker())
        print(target)


def main(argv):
    makers = {"small": small_kernel, "stock": stock_kernel, "initramfs": initramfs}
    if len(argv) == 2 and argv[0] == "link":
        return link(argv[1])
    if len(argv) != 1 or argv[0] not in makers:
        raise SystemExit(f"usage: python -m guests.linux.assets {'|'.join(makers)} | link DIRECTORY")
    print(makers[argv[0]]())


if __name__ == "__main__":
    main(sys.argv[1:])
