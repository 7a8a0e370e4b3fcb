from __future__ import annotations

from pathlib import Path

import pytest

from chatstats.sample.generate import make_library
from chatstats.sample.truth import Truth

PROFILES = ["sequoia", "sonoma", "legacy"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def small_lib(tmp_path: Path) -> Path:
    """A small library of this test's own (sequoia: every column), for tests that add
    messages to it."""
    root = tmp_path / "lib"
    make_library(root, messages=150, seed=9, profile="sequoia")
    return root


@pytest.fixture(scope="session")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Truth]]:
    """One generated library per chat.db schema profile, shared by the import tests."""
    out = {}
    for i, profile in enumerate(PROFILES):
        root = tmp_path_factory.mktemp(f"lib-{profile}")
        out[profile] = (root, make_library(root, messages=1500, seed=11 + i, profile=profile))
    return out


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the test item, so fixtures (the browser tests' screenshot
    on failure) can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
