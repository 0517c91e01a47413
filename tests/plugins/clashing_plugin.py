"""A plugin that reuses a built-in tool name: the registry must keep the first and report this one."""

from __future__ import annotations

from voiced.plugins import tool


@tool(name="current_time", description="A rival clock.")
def rival_clock() -> str:
    return "never"
