"""Shared pytest configuration: the opt-in flags (soak, debootstrap) and the timing factor. Fixtures
live beside their tests."""

from __future__ import annotations

import pytest

from tests.support.timing import TIMING

# marker -> (option that runs the tests carrying it, why they are skipped without it)
OPT_IN = {
    "soak": ("--soak", "long soak: run with --soak"),
    "debootstrap": (
        "--debootstrap",
        "installs into a fresh Debian root (minutes, root): run with --debootstrap",
    ),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="run the long soak tests")
    parser.addoption(
        "--debootstrap",
        action="store_true",
        default=False,
        help="run the service install in a fresh Debian root (debootstrap; root, minutes the first time)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "debootstrap: installs into a fresh Debian root, run with --debootstrap"
    )
    # A slow board (VOICED_TEST_TIMING) gets proportionally more time before a test is declared hung.
    timeout = getattr(config.option, "timeout", None)
    if timeout and TIMING > 1:
        config.option.timeout = float(timeout) * TIMING


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TIMING > 1:
        for item in items:
            limit = item.get_closest_marker("timeout")
            if limit is not None and limit.args:
                item.add_marker(pytest.mark.timeout(float(limit.args[0]) * TIMING), append=False)
    for marker, (option, reason) in OPT_IN.items():
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
