"""A hung benchmark fails with a message and the stacks instead of idling forever."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.__main__ import EXIT_HUNG

_HANG = """
import time
from benchmarks.__main__ import Watchdog
with Watchdog("sleepy_bench", 0.5):
    time.sleep(60)
"""


def test_watchdog_ends_a_hung_module_with_a_message() -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _HANG], check=False, capture_output=True, text=True, timeout=30
    )
    assert time.monotonic() - started < 20
    assert out.returncode == EXIT_HUNG
    assert "benchmark sleepy_bench hung: no result after" in out.stderr
    assert "time.sleep" in out.stderr or "line 5" in out.stderr  # the stack shows where it hung


def test_watchdog_is_silent_when_the_module_finishes() -> None:
    code = "from benchmarks.__main__ import Watchdog\nwith Watchdog('fast_bench', 5):\n    print('done')"
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and out.stdout.strip() == "done" and out.stderr == ""
