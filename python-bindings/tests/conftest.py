"""Fixtures of the attnc Python package tests: the float64 references of test/e2e on sys.path,
a fresh seed per test, and the package itself (from the build tree via PYTHONPATH under ctest,
or installed)."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "test" / "e2e"))


@pytest.fixture
def rng_seed(request):
    """A fresh seed per test ($ATTNC_TEST_SEED reproduces a failure); reported on failure."""
    s = os.environ.get("ATTNC_TEST_SEED")
    seed = int(s) if s else int(np.random.SeedSequence().entropy % (1 << 63))
    request.node.user_properties.append(("seed", seed))
    return seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, value in item.user_properties:
            if name == "seed":
                report.sections.append(("seed", f"ATTNC_TEST_SEED={value} reproduces this"))
