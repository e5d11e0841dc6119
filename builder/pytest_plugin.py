"""hvbuild's pytest plugin, registered through the `pytest11` entry point
(pyproject.toml): test your own guests from your own repository.

    def test_my_kernel_boots(hvboot):
        boot = hvboot({"guest": [{"name": "mine", "memory": "4M", "multiboot": "kernel.elf"}]})
        boot.expect(r"\\[mine\\] hello")
        boot.run_to_end()
        assert boot.verdicts["mine"].code == 0

`hvboot(config, target=None, timeout=...)` builds the config (a dict in
the config file's shape, TOML text, or the path of a TOML file; relative
paths are the test's working directory's, or the file's) into the test's
tmp_path and boots it on `target`, or on the fastest target the machine
has (hvrun's choice); it returns a Boot, and every emulator it started is
gone when the test ends.  The `hv_target` fixture runs a test once per
target: all of them (TARGETS), or those a `@pytest.mark.hv_targets("qemu",
...)` marker names.  examples/test_with_hvbuild.py is a test file to copy.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TARGETS = ("qemu", "bochs", "bochs-svm")       # the emulated targets; kvm where a machine nests
DEFAULT_TIMEOUT_S = 120.0
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hv_targets(*names): the targets hv_target runs the test on")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hv_target" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("hv_targets")
        names = marker.args if marker else TARGETS
        unknown = [name for name in names if name not in (*TARGETS, "kvm")]
        if unknown:
            raise pytest.UsageError(f"hv_targets: unknown target(s) {', '.join(unknown)}; "
                                    f"one of {', '.join((*TARGETS, 'kvm'))}")
        metafunc.parametrize("hv_target", names)


@dataclass
class Boot:
    """One booted image: its console, and once it ends, its verdicts."""

    run: Any                    # builder.run.Run
    target: str

    def expect(self, pattern: str, timeout: float | None = None) -> str:
        """Wait for a regular expression on the console; return what matched."""
        return self.run.console.expect(pattern, timeout)

    def run_to_end(self, timeout: float | None = None) -> list[str]:
        """Wait until the machine powers off; return every console line."""
        return self.run.console.run_to_end(timeout)

    def lines(self, name: str | None = None) -> list[str]:
        """The console's lines so far, or one guest's (without its "[name] ")."""
        every = self.run.console.lines
        if name is None:
            return every
        prefix = f"[{name}] "
        return [line[len(prefix):] for line in every if line.startswith(prefix)]

    def command(self, line: str) -> str:
        """A control console command (README, "The control console"); its answer."""
        return self.run.control.command(line)

    @property
    def verdicts(self) -> dict:
        """How each guest ended, by name (builder/run.py Verdict), from the summary."""
        from builder.run import verdicts
        return {verdict.guest: verdict for verdict in verdicts(self.run.console.lines)}


def toml_text(value: dict) -> str:
    """A config dict as TOML, in the config file's shape: at the top, dicts
    are tables ([storage]) and lists of dicts arrays of tables ([[guest]]);
    inside them every value is inline (disks = [{ name = "root", ... }])."""
    lines = [f"{_key(k)} = {_toml_value(v)}" for k, v in value.items() if not _table(v)]
    for key, item in value.items():
        if isinstance(item, dict):
            lines += ["", f"[{_key(key)}]", *(f"{_key(k)} = {_toml_value(v)}" for k, v in item.items())]
        elif _table(item):
            for table in item:
                lines += ["", f"[[{_key(key)}]]", *(f"{_key(k)} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines).strip() + "\n"


def _table(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and bool(value)
                                       and all(isinstance(item, dict) for item in value))


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"a config value cannot be {type(value).__name__}: {value!r}")


@pytest.fixture
def hvboot(tmp_path: Path, request: pytest.FixtureRequest):
    """Build and boot a config; see the module's documentation."""
    from builder import build, config      # imported when used: a plugin loads before every test run
    from builder.run import TARGETS as RUN_TARGETS
    from builder.run import Run, choose_target
    runs = contextlib.ExitStack()
    booted = 0

    def boot(source: dict | str | Path, target: str | None = None,
             timeout: float = DEFAULT_TIMEOUT_S) -> Boot:
        nonlocal booted
        directory = tmp_path / f"boot{booted}"
        booted += 1
        directory.mkdir()
        if isinstance(source, Path):
            toml = source
        else:
            text = toml_text(source) if isinstance(source, dict) else source
            toml = directory / "hv.toml"
            toml.write_text(_absolute_paths(text, Path.cwd()) if isinstance(source, dict) else text)
        chosen = RUN_TARGETS[target] if target else None
        result = build.build(config.load(toml))
        iso = chosen is None or chosen.emulator == "bochs"
        build.write_outputs(result, directory / "out", iso=iso)
        elf = directory / "out" / "hv.elf"
        if chosen is None:
            chosen, _ = choose_target(None, elf)
        run = Run(elf, chosen, timeout)
        runs.enter_context(run)
        return Boot(run, chosen.name)

    with runs:
        yield boot


_PATH_KEYS = re.compile(r'^(linux|initrd|multiboot|elf|flat|pool) = "(?!/)([^"]*)"$', re.MULTILINE)


def _absolute_paths(text: str, base: Path) -> str:
    """The config's file paths made absolute against `base` (a dict's paths
    are the test's working directory's, not the scratch folder's)."""
    return _PATH_KEYS.sub(lambda m: f'{m[1]} = "{(base / m[2]).resolve()}"', text)
