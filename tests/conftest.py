from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# The tests import crossent from the installed wheel, never from the source tree; their own
# helpers (reference.py) are importable from this folder.
sys.path.insert(0, str(Path(__file__).parent))

import crossent

# CI explores a fixed set of examples, so that a red run is reproducible and never flaky;
# local runs draw new examples every time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CROSSENT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set CROSSENT_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def threads() -> Iterator[None]:
    """Restores the thread count after a test that changes it."""
    before = crossent.get_num_threads()
    yield
    crossent.set_num_threads(before)
