"""The plugin's config dicts (builder/pytest_plugin.py): written as the
TOML a config file would be, with file paths made absolute."""

import tomllib

from builder.pytest_plugin import _absolute_paths, toml_text


def test_a_config_dict_is_the_toml_of_a_config_file():
    config = {"hypervisor": {"time_slice": 200000, "backend": "auto"},
              "storage": {"pool": "pool.img", "size": "8M"},
              "guest": [{"name": "a", "memory": "1M", "builtin": "heartbeat", "expect_exit": 0,
                         "disks": [{"name": "root", "size": "2M"}]},
                        {"name": "b", "memory": "48M", "linux": "bzImage", "cmdline": 'say "hi" \\ bye'}]}
    text = toml_text(config)
    assert tomllib.loads(text) == config
    assert "[[guest]]" in text and 'disks = [{ name = "root", size = "2M" }]' in text


def test_its_file_paths_are_the_tests_working_directorys(tmp_path):
    text = toml_text({"storage": {"pool": "p.img"}, "guest": [{"name": "a", "linux": "k/bzImage",
                                                                "initrd": "/abs/initrd"}]})
    loaded = tomllib.loads(_absolute_paths(text, tmp_path))
    assert loaded["storage"]["pool"] == str(tmp_path / "p.img")
    assert loaded["guest"][0]["linux"] == str(tmp_path / "k" / "bzImage")
    assert loaded["guest"][0]["initrd"] == "/abs/initrd"
