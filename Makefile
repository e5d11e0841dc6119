# The two commands of the README: `make run` and `make test`.  Each sets up
# what it needs on a fresh Debian/Ubuntu machine: the Debian packages of
# the emulators and the ISO tools, and a Python venv with hvbuild in it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Emulators (Bochs: VMX, QEMU), GRUB ISO tools, GNU binutils for the
# tests' ELF guests, and ACPICA's tools (iasl, acpiexec), which the tests
# read the guests' ACPI tables with.
DEBIAN_PACKAGES := bochs bochsbios vgabios bochs-term grub-pc-bin xorriso mtools \
                   qemu-system-x86 binutils acpica-tools
TEST_WORKERS ?= 2

.PHONY: setup system-packages run test bench fuzz clean linux-assets

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; \
	for package in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; \
	done; \
	$(PYTHON) -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 'hvbuild needs Python 3.11 or newer (set PYTHON=...)')"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/hvbuild -o build
	$(BIN)/hvrun build/hv.elf

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) -q

bench: setup
	$(BIN)/python -m bench

# The Linux test guests (guests/linux/assets.py), linked into build/linux
# for examples/linux.toml.  The first run builds a kernel: ~10 minutes.
linux-assets: setup
	$(BIN)/python -m guests.linux.assets link build/linux

# The guest fuzzer (docs/FUZZING.md), e.g. make fuzz FUZZ_ARGS="--count 200 --seed 1 --target qemu"
FUZZ_ARGS ?= --duration 5m
fuzz: setup
	$(BIN)/python -m fuzz $(FUZZ_ARGS)

clean:
	rm -rf build bench/results.json .pytest_cache
