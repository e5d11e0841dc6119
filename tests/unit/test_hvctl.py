"""The control console's host side: the command table the hypervisor's
parser is generated from, hvctl's reading of `list`, and the hvctl and
hvrun ends of the socket (the boot tests drive the real machine)."""

import socket

import pytest

from builder import control, hvctl
from builder.errors import BuildError
from builder.run import ControlServer


def test_every_command_has_its_usage_and_fits_the_parser():
    assert all(usage.split()[0] == name for name, usage in control.COMMANDS.items())
    assert control.ARGS_MAX == 5                      # disk NAME DISK grow SIZE
    assert all(len(usage) < control.LINE_SIZE for usage in control.COMMANDS.values())


def test_a_list_answer_reads_as_one_row_per_guest():
    answer = ("ok alpha running share=1 memory=262144 disks=0 exits=12 cpu=345; "
              "beta paused share=3 memory=50331648 disks=0 exits=7 cpu=89")
    assert control.parse_list(answer) == [
        {"name": "alpha", "state": "running", "share": 1, "memory": 262144, "disks": 0, "exits": 12, "cpu": 345},
        {"name": "beta", "state": "paused", "share": 3, "memory": 50331648, "disks": 0, "exits": 7, "cpu": 89}]
    assert hvctl.list_table(answer).splitlines() == [
        "name   state    share  memory  disks  exits  cpu",
        "alpha  running  1      256K    0      12     345",
        "beta   paused   3      48M     0      7      89"]
    with pytest.raises(ValueError, match="not an ok answer"):
        control.parse_list("error: no guest named 'x'")


class FakeControl:
    """Stands in for the machine's end only: the socket is what is tested."""

    def __init__(self):
        self.lines = []

    def command(self, line):
        self.lines.append(line)
        return f"ok {line}"


def test_hvctl_sends_one_line_and_prints_the_answer(tmp_path, capsys):
    path = tmp_path / "control.sock"
    machine = FakeControl()
    with ControlServer(path, machine):
        assert hvctl.main(["--socket", str(path), "share", "beta", "4"]) == 0
        assert capsys.readouterr().out == "ok share beta 4\n"
    assert machine.lines == ["share beta 4"]
    assert not path.exists()
    assert hvctl.main(["--socket", str(path), "list"]) == hvctl.EXIT_NO_HVRUN
    assert "no hvrun answers there" in capsys.readouterr().err


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path):
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                                     # left behind by an hvrun that was killed
    with ControlServer(path, FakeControl()):
        with pytest.raises(BuildError, match="another hvrun is listening there"):
            ControlServer(path, FakeControl())
    (tmp_path / "file").write_text("mine")
    with pytest.raises(BuildError, match="exists and is not a socket"):
        ControlServer(tmp_path / "file", FakeControl())
    assert (tmp_path / "file").read_text() == "mine"
