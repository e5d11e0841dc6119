"""hvbuild's pytest plugin (builder/pytest_plugin.py, the pytest11 entry
point) in a researcher's own test run: pytester runs examples/
test_with_hvbuild.py as a copied file, and a test that must fail."""

import pytest

from builder.render import PROJECT_ROOT

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.boot

FAILING = '''
def test_a_line_that_never_comes(hvboot):
    boot = hvboot({"guest": [{"name": "mine", "memory": "256K", "builtin": "heartbeat", "heartbeats": 1}]},
                  target="qemu")
    boot.run_to_end()
    assert "heartbeat 2" in boot.lines("mine")
'''


def test_the_example_passes_in_its_own_repository_and_a_wrong_expectation_fails(pytester):
    pytester.makepyfile(test_with_hvbuild=(PROJECT_ROOT / "examples" / "test_with_hvbuild.py").read_text(),
                        test_failing=FAILING)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # the example: one test on each of the three targets, one on qemu; and the one that must fail
    result.assert_outcomes(passed=4, failed=1)
    assert "FAILED test_failing.py::test_a_line_that_never_comes" in result.stdout.str()


def test_an_unknown_target_is_a_usage_error(pytester):
    pytester.makepyfile('''
import pytest

@pytest.mark.hv_targets("vmware")
def test_nothing(hv_target):
    pass
''')
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret != 0
    assert "hv_targets: unknown target(s) vmware" in result.stderr.str() + result.stdout.str()
