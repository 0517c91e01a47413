"""One timing factor for every wait in the tests (as the websockets test suite does).

Waits that bound how long something may take are multiplied by ``TIMING``: 1 on a PC, more on a slow
board (``VOICED_TEST_TIMING=4`` on a Pi Zero 2 W, where a child Python alone takes about a second to
start). What a test asserts about the product stays the same; only its patience changes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

TIMING = max(1.0, float(os.environ.get("VOICED_TEST_TIMING", "1")))


def patience_s(seconds: float) -> float:
    """``seconds`` scaled by the machine's timing factor."""
    return seconds * TIMING


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 20 ms; AssertionError naming ``what`` after ``timeout_s`` (scaled)."""
    deadline = time.monotonic() + patience_s(timeout_s)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
