import pytest
from harness import BOOT_TARGETS


@pytest.fixture(params=BOOT_TARGETS)
def target(request):
    """Each boot test runs once per target (see harness.BOOT_TARGETS)."""
    return request.param
