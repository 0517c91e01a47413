"""What a plugin receives besides its arguments: :class:`PluginContext`, and the error it may raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import structlog
from structlog.typing import FilteringBoundLogger


@runtime_checkable
class VolumeControl(Protocol):
    """voiced's own playback volume, implemented by the daemon (never the system mixer)."""

    def get_volume_pct(self) -> int:
        """The current playback volume, 0..100."""
        ...

    def set_volume_pct(self, volume_pct: int) -> int:
        """Set the playback volume; returns the value applied (clamped to 0..100)."""
        ...


@dataclass
class PluginContext:
    """Handed to a tool that declares a parameter typed ``PluginContext`` (the bot never sees it).

    A tool running isolated (in a subprocess) gets ``volume=None``: the volume lives in the daemon.
    """

    #: voiced's playback volume, or ``None`` when the daemon has none (or the tool runs isolated).
    volume: VolumeControl | None
    #: The configured time zone (``[plugins] timezone``).
    timezone: ZoneInfo
    #: ``time.monotonic()`` when voiced started; ``time.monotonic() - this`` is voiced's uptime.
    started_at_monotonic_s: float
    #: A logger bound to the tool name; log through it so lines carry ``tool=NAME``.
    logger: FilteringBoundLogger = field(default_factory=lambda: structlog.get_logger("voiced.plugins"))
    #: The free-form ``[plugins.tools.NAME] options`` table of this tool.
    settings: dict[str, Any] = field(default_factory=dict)


class ToolError(Exception):
    """Raise this for an expected failure; its message alone (no type name) goes to the bot.

    Write the message for the bot and the listener, e.g. ``"the lamp is not reachable"``.
    """
