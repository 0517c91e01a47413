"""``current_time``: the local time and date, in the zone of ``[plugins] timezone``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from voiced.plugins.api import tool
from voiced.plugins.context import PluginContext

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]  # fmt: skip
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty"}


def spoken_time(hour: int, minute: int, clock: Literal["12h", "24h"] = "12h") -> str:
    """``17:42`` as a TTS voice should say it: ``"five forty-two PM"`` (12h) or ``"17:42"`` (24h)."""
    if clock == "24h":
        return f"{hour:02d}:{minute:02d}"
    period = "AM" if hour < 12 else "PM"
    hour12 = hour % 12 or 12
    if minute == 0:
        minutes = "o'clock"
    elif minute < 10:
        minutes = f"oh {_ONES[minute]}"
    else:
        minutes = _number_words(minute)
    return f"{_ONES[hour12]} {minutes} {period}"


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"


@tool(name="current_time", description="The current local time and date on the device.", timeout_s=2.0)
async def current_time(ctx: PluginContext) -> dict[str, object]:
    """Option ``clock = "24h"`` in ``[plugins.tools.current_time.options]`` speaks ``17:42``."""
    now = datetime.now(ctx.timezone)
    clock: Literal["12h", "24h"] = "24h" if ctx.settings.get("clock") == "24h" else "12h"
    return {
        "iso": now.isoformat(timespec="seconds"),
        "spoken": spoken_time(now.hour, now.minute, clock),
        "date": f"{now:%A} {now.day} {now:%B %Y}",
        "timezone": ctx.timezone.key,
    }
