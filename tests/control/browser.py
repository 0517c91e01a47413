"""A real Chromium (the system's, never a download) driven by playwright, for the kiosk page tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The system Chromium, or skip: ``scripts/setup.sh --test`` installs it."""
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("no chromium: run scripts/setup.sh --test (apt-get install chromium)")
    return found


pytest.importorskip("playwright.async_api", reason="no playwright: run scripts/setup.sh --test")

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

__all__ = ["Browser", "Page", "chromium", "expect"]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless system Chromium, closed on exit."""
    path = chromium_path()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
