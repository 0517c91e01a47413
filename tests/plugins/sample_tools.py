"""Tools the plugin tests load through ``[plugins] modules = ["tests.plugins.sample_tools"]``.

Tests hand probes (events, counters) to these tools through ``[plugins.tools.NAME] options``, which
reach the tool as ``ctx.settings`` — no globals shared between tests.
"""

from __future__ import annotations

import asyncio
import enum
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from voiced.plugins import PluginContext, ToolError, tool


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@tool(description="Paint something.")
def paint(
    ctx: PluginContext,
    *,
    colour: Colour,
    shade: Literal["light", "dark"] = "light",
    coats: Annotated[int, Field(ge=1, description="How many coats.")] = 1,
    thinned: bool = False,
    tags: list[str] | None = None,
    ratio: float | None = None,
) -> dict[str, object]:
    return {"colour": colour.value, "shade": shade, "coats": coats, "thinned": thinned, "tags": tags}


class LampRequest(BaseModel):
    room: str = Field(description="Which room's lamp.")
    on: bool = True


@tool(name="lamp", description="Switch a lamp.")
async def lamp(request: LampRequest) -> str:
    return f"{request.room} lamp {'on' if request.on else 'off'}"


@tool(description="Sleep, then answer.")
async def sleepy(seconds: float) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept_s": seconds}


@tool(description="Sleep in a thread, then answer.")
def sleepy_sync(seconds: float) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept_s": seconds}


@tool(description="Never answers.", timeout_s=0.3)
async def hang_async() -> str:
    await asyncio.sleep(3600)
    return "unreachable"


@tool(description="Blocks its thread until the test releases it.", timeout_s=0.3)
def hang_sync(ctx: PluginContext) -> str:
    release = ctx.settings["release"]
    assert isinstance(release, threading.Event)
    release.wait(10)
    return "released"


@tool(description="Always fails.")
def explode(reason: str = "boom") -> str:
    raise ValueError(reason)


@tool(description="Fails the expected way.")
async def refuse() -> str:
    raise ToolError("the lamp is not reachable")


@tool(description="Returns far too much.")
def flood(size: int) -> str:
    return "x" * size


@tool(description="Returns far too much JSON.")
def flood_json(size: int) -> dict[str, str]:
    return {"data": "é" * size}


@tool(description="Returns something that is not JSON.")
def not_json() -> object:
    return object()


@dataclass
class Probe:
    """Watches a call of ``watched``: did it start, was it cancelled."""

    started: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)


@tool(description="Waits until cancelled, reporting to the probe.", timeout_s=30.0)
async def watched(ctx: PluginContext, seconds: float = 30.0) -> str:
    probe = ctx.settings["probe"]
    assert isinstance(probe, Probe)
    probe.started.set()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        probe.cancelled.set()
        raise
    return "finished"


@tool(description="Answers from a child process.", isolated=True, timeout_s=10.0)
def isolated_echo(ctx: PluginContext, text: str) -> dict[str, object]:
    print("plugin chatter on stdout must not corrupt the answer")
    return {"text": text, "pid": os.getpid(), "options": ctx.settings, "zone": ctx.timezone.key}


@tool(description="Writes its pid, then blocks forever.", isolated=True, timeout_s=1.0)
def isolated_block(pid_file: str) -> str:
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(1)


@tool(description="Kills its own process.", isolated=True, timeout_s=5.0)
def isolated_exit() -> str:
    os._exit(1)


@tool(description="Raises in a child process.", isolated=True, timeout_s=5.0)
async def isolated_raise() -> str:
    raise KeyError("missing")


#: For an entry point that names a list of tools rather than a module.
PAIR_OF_TOOLS = [sleepy, refuse]
