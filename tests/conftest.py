"""Shared pytest configuration: the soak flag and the timing factor. Fixtures live beside the tests
that use them."""

from __future__ import annotations

import pytest

from tests.support.timing import TIMING


def pytest_configure(config: pytest.Config) -> None:
    # A slow board (VOICED_TEST_TIMING) gets proportionally more time before a test is declared hung.
    timeout = getattr(config.option, "timeout", None)
    if timeout and TIMING > 1:
        config.option.timeout = float(timeout) * TIMING


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="run the long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TIMING > 1:
        for item in items:
            marker = item.get_closest_marker("timeout")
            if marker is not None and marker.args:
                item.add_marker(pytest.mark.timeout(float(marker.args[0]) * TIMING), append=False)
    if config.getoption("--soak"):
        return
    skip_soak = pytest.mark.skip(reason="long soak: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip_soak)
