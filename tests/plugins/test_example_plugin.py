"""The example third-party package under examples/ loads and runs without being installed."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from voiced.plugins import ENTRY_POINT_GROUP, PluginRegistry, PluginSettings, ToolOverride, ToolRunner
from voiced.protocol.models import FunctionCall, ToolCall

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "voiced-plugin-hello"


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))


@pytest.mark.usefixtures("example_on_path")
async def test_the_example_loads_from_its_module_path_and_runs() -> None:
    settings = PluginSettings(
        enabled=["say_hello", "roll_dice"],
        modules=["voiced_plugin_hello"],
        tools={"say_hello": ToolOverride(options={"greeting": "Hi there, {name}!"})},
    )
    registry = PluginRegistry.load(settings)
    assert registry.errors == []
    runner = ToolRunner(registry, settings)
    hello, hallo, dice, bad = await runner.run(
        "chat-1",
        [
            _call("1", "say_hello", '{"name": "Ada"}'),
            _call("2", "say_hello", '{"name": "Ada", "language": "de"}'),
            _call("3", "roll_dice", '{"sides": 6, "count": 3}'),
            _call("4", "roll_dice", '{"sides": 13}'),
        ],
    )
    assert hello.output == "Hi there, Ada!"
    assert hallo.output == "Hallo, Ada!"
    rolls = json.loads(dice.output)
    assert len(rolls["rolls"]) == 3 and rolls["total"] == sum(rolls["rolls"])
    assert json.loads(bad.output)["error"] == "nobody owns a thirteen-sided die"


@pytest.mark.usefixtures("example_on_path")
def test_the_declared_entry_point_finds_the_tools() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"][ENTRY_POINT_GROUP]
    eps = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in declared.items()]
    registry = PluginRegistry.load(PluginSettings(enabled=["say_hello"]), entry_points_=eps)
    assert [info.name for info in registry.all()] == ["roll_dice", "say_hello"]
    assert registry.all()[0].source == "entry point 'hello' (voiced_plugin_hello)"
    schema = json.loads(registry.schema_json())
    assert schema[0]["parameters"]["properties"]["language"]["enum"] == ["en", "de", "zh"]


def _call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))
