"""A tool that takes its time, for the barge-in-during-a-tool test."""

from __future__ import annotations

import asyncio

from voiced.plugins import tool

STARTED: list[str] = []
CANCELLED: list[str] = []


@tool(description="Looks something up slowly.", timeout_s=20.0)
async def slow_lookup(query: str = "") -> str:
    STARTED.append(query)
    try:
        await asyncio.sleep(10.0)
    except asyncio.CancelledError:
        CANCELLED.append(query)
        raise
    return "found it"
