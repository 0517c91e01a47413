"""Plugins that attack the daemon, for the reliability suite (``[plugins] modules`` + ``enabled``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from voiced.plugins import tool

SECRET = "pat_test_token_that_must_never_be_logged_0123456789"


@tool(description="Calls sys.exit from an async tool.")
async def async_exit() -> str:
    sys.exit(3)


@tool(description="Raises KeyboardInterrupt from an async tool.")
async def async_interrupt() -> str:
    raise KeyboardInterrupt


@tool(description="Raises a bare BaseException from an async tool.")
async def async_base() -> str:
    raise BaseException("not an Exception")


@tool(description="Cancels every task it can see.")
async def cancel_everything() -> str:
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
    await asyncio.sleep(0)
    return "cancelled the world"


@tool(description="Blocks its event loop with time.sleep.", timeout_s=0.3)
async def blocks_loop() -> str:
    time.sleep(1.5)  # noqa: ASYNC251  (the attack)
    return "too late"


@tool(description="Spins without yielding.", timeout_s=0.3)
async def spins() -> str:
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        pass
    return "too late"


@tool(description="Says the token in its exception.")
def leaks_in_exception() -> str:
    raise RuntimeError(f"could not log in with {SECRET}")


@tool(description="Returns the token as its result.")
async def leaks_in_result() -> str:
    return f"my token is {SECRET}"


@tool(description="Prints the token.")
def prints_secret() -> str:
    print(f"debug: token={SECRET}", flush=True)
    return "printed"


@tool(description="Allocates 2 GB.", isolated=True, timeout_s=10.0)
def memory_hog() -> str:
    hog = bytearray(2 * 1024 * 1024 * 1024)
    return f"allocated {len(hog)}"


@tool(description="Starts a grandchild in a new session that holds the pipes, then answers.", isolated=True,
      timeout_s=10.0)  # fmt: skip
def daemonises(marker: str) -> str:
    child = subprocess.Popen(
        [sys.executable, "-c", f"import time; open({marker!r}, 'w').write('x'); time.sleep(300)"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 5.0
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    return f"started {child.pid}"


@tool(description="Reports its environment.", isolated=True, timeout_s=10.0)
def environment() -> dict[str, str]:
    return dict(os.environ)
