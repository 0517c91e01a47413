"""Misbehaving plugins for the reliability suite.

Loaded with ``[plugins] modules = ["tests.reliability.fault_plugins"]`` and listed in ``enabled``.
"""

from __future__ import annotations

import asyncio
import time

from voiced.plugins import tool


@tool(description="Never answers (async).", timeout_s=0.3)
async def hang() -> str:
    await asyncio.sleep(3600)
    return "unreachable"


@tool(description="Blocks its thread well past its timeout (sync).", timeout_s=0.3)
def hang_sync() -> str:
    time.sleep(1.5)
    return "too late"


@tool(description="Always raises.")
def boom() -> str:
    raise RuntimeError("the plugin exploded")


@tool(description="Raises CancelledError by itself.")
async def self_cancel() -> str:
    raise asyncio.CancelledError
