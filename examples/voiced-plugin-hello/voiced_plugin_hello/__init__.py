"""Two example tools for voiced: ``say_hello`` and ``roll_dice``.

Install next to voiced (``.venv/bin/pip install ./examples/voiced-plugin-hello``), add the tool names
to ``[plugins] enabled`` in config/voiced.toml, and declare them on the bot with the output of
``voiced plugins schema``.
"""

from __future__ import annotations

import random
from typing import Annotated, Literal

from pydantic import Field

from voiced.plugins import PluginContext, ToolError, tool

_GREETINGS = {"en": "Hello, {name}!", "de": "Hallo, {name}!", "zh": "你好，{name}！"}


@tool(description="Greet someone by name, in English, German or Chinese.", timeout_s=1.0)
async def say_hello(
    ctx: PluginContext,
    name: Annotated[str, Field(min_length=1, max_length=40, description="Who to greet.")] = "world",
    language: Literal["en", "de", "zh"] = "en",
) -> str:
    """A str result goes to the bot as is."""
    # [plugins.tools.say_hello.options] greeting = "Hi, {name}!" overrides the English text.
    template = _GREETINGS[language]
    if language == "en":
        template = str(ctx.settings.get("greeting", template))
    ctx.logger.info("greeting", language=language)
    return template.format(name=name)


@tool(description="Roll dice and report each die and the total.", timeout_s=1.0)
def roll_dice(
    sides: Annotated[int, Field(ge=2, le=100, description="Faces per die.")] = 6,
    count: Annotated[int, Field(ge=1, le=10, description="How many dice.")] = 1,
) -> dict[str, object]:
    """A dict result goes to the bot as JSON. A sync tool runs in a thread."""
    if sides == 13:
        # ToolError: an expected failure; only the message reaches the bot.
        raise ToolError("nobody owns a thirteen-sided die")
    rolls = [random.randint(1, sides) for _ in range(count)]
    return {"rolls": rolls, "total": sum(rolls)}
