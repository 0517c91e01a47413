"""``get_volume`` / ``set_volume``: voiced's own playback volume (never the system mixer)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from voiced.plugins.api import tool
from voiced.plugins.context import PluginContext, ToolError, VolumeControl

# Both are async on purpose: they then run on the event loop, the thread that owns the daemon's
# volume, instead of touching it from a plugin thread.


def _volume(ctx: PluginContext) -> VolumeControl:
    if ctx.volume is None:
        raise ToolError("voiced has no playback volume control in this setup")
    return ctx.volume


@tool(
    name="get_volume", description="The speaker's current playback volume in percent (0-100).", timeout_s=1.0
)
async def get_volume(ctx: PluginContext) -> dict[str, int]:
    """Reads ``ctx.volume``; fails with a clear output when the daemon has no volume control."""
    return {"volume_pct": _volume(ctx).get_volume_pct()}


@tool(name="set_volume", description="Set the speaker's playback volume in percent (0-100).", timeout_s=1.0)
async def set_volume(
    ctx: PluginContext,
    volume_pct: Annotated[int, Field(ge=0, le=100, description="The new volume, 0 (mute) to 100 (loudest).")],
) -> dict[str, int]:
    """Returns the volume actually applied."""
    return {"volume_pct": _volume(ctx).set_volume_pct(volume_pct)}
