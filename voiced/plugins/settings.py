"""The ``[plugins]`` table of ``config/voiced.toml``: which tools may run, and their limits.

Nothing runs unless its name is in ``enabled`` (the allowlist). Installed packages are still
imported to discover the tools they offer, so only install plugin packages you trust to import.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The built-in tools, enabled unless the config says otherwise; none of them changes the system
#: beyond voiced itself.
DEFAULT_ENABLED_TOOLS = ("current_time", "get_volume", "set_volume", "device_status")


class ToolOverride(BaseModel):
    """``[plugins.tools.NAME]``: per-tool limits and the free-form options handed to the plugin."""

    model_config = ConfigDict(extra="forbid")

    #: Replaces the tool's own timeout (seconds) when set.
    timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    #: Forces the tool into (``true``) or out of (``false``) a killable subprocess when set.
    isolated: bool | None = None
    #: Passed unchanged to the plugin as ``ctx.settings``.
    options: dict[str, Any] = Field(default_factory=dict)


class PluginSettings(BaseModel):
    """The ``[plugins]`` table. Build it from the parsed TOML table; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")

    #: The allowlist: tool names that may run. A tool not listed is reported but never called.
    enabled: list[str] = Field(default_factory=lambda: list(DEFAULT_ENABLED_TOOLS))
    #: Importable modules to collect tools from, in addition to the ``voiced.plugins`` entry points.
    modules: list[str] = Field(default_factory=list)
    #: The timeout of a tool that declares none (seconds).
    timeout_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    #: How many tool calls run at once; further calls of the same chat wait for a free slot.
    max_concurrency: int = Field(default=4, ge=1)
    #: The cap on one tool output in UTF-8 bytes; longer outputs are truncated with a marker.
    max_output_bytes: int = Field(default=8192, ge=256)
    #: The IANA time zone the time built-in speaks in, e.g. ``"Europe/Berlin"``.
    timezone: str = "UTC"
    #: How long importing one plugin module may take at start (seconds); a slower one is skipped.
    import_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    #: The address-space limit of an isolated tool's process (MiB); past it, allocations fail.
    isolated_memory_mb: int = Field(default=1024, ge=128)
    #: Per-tool overrides, keyed by tool name.
    tools: dict[str, ToolOverride] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
                " (on Debian the zone data comes from the tzdata package)"
            ) from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone as a :class:`ZoneInfo`."""
        return ZoneInfo(self.timezone)

    def override(self, tool_name: str) -> ToolOverride:
        """The overrides for ``tool_name`` (an empty override when the config has none)."""
        return self.tools.get(tool_name) or ToolOverride()
