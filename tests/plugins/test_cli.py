"""``voiced plugins list | schema | call`` through add_arguments() and run()."""

from __future__ import annotations

import argparse
import io
import json

from voiced.plugins import PluginSettings
from voiced.plugins.cli import add_arguments, run

SAMPLE = "tests.plugins.sample_tools"


def invoke(argv: list[str], settings: PluginSettings) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="voiced plugins")
    add_arguments(parser)
    out = io.StringIO()
    code = run(parser.parse_args(argv), settings, out)
    return code, out.getvalue()


def test_list_shows_every_tool_its_state_and_source() -> None:
    code, text = invoke(
        ["list"], PluginSettings(enabled=["current_time"], modules=[SAMPLE, "tests.plugins.broken_plugin"])
    )
    assert code == 0
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert "enabled" in lines["current_time"] and "entry point 'builtin'" in lines["current_time"]
    assert "disabled" in lines["sleepy"] and "module tests.plugins.sample_tools" in lines["sleepy"]
    assert "isolated" in lines["isolated_block"]
    assert "skipped: module tests.plugins.broken_plugin: ImportError" in text


def test_list_as_json() -> None:
    code, text = invoke(["list", "--json"], PluginSettings())
    listing = json.loads(text)
    assert code == 0
    assert {row["name"] for row in listing["tools"] if row["enabled"]} == {
        "current_time",
        "get_volume",
        "set_volume",
        "device_status",
    }
    assert listing["errors"] == []


def test_schema_prints_valid_json_of_the_enabled_tools() -> None:
    code, text = invoke(["schema"], PluginSettings(enabled=["set_volume", "paint"], modules=[SAMPLE]))
    assert code == 0
    declared = json.loads(text)
    assert [d["name"] for d in declared] == ["paint", "set_volume"]
    assert declared[0]["parameters"]["properties"]["colour"]["enum"] == ["red", "green"]


def test_call_prints_the_output_and_exits_by_success() -> None:
    settings = PluginSettings(enabled=["sleepy", "explode"], modules=[SAMPLE])
    code, text = invoke(["call", "sleepy", "--args", '{"seconds": 0}'], settings)
    assert (code, json.loads(text)) == (0, {"slept_s": 0})
    code, text = invoke(["call", "explode"], settings)
    assert code == 1 and json.loads(text)["error"] == "ValueError: boom"
    code, text = invoke(["call", "sleepy", "--args", "{"], settings)
    assert code == 1 and "not valid JSON" in text


def test_call_refuses_a_disabled_tool_unless_asked() -> None:
    settings = PluginSettings(enabled=[], modules=[SAMPLE])
    code, text = invoke(["call", "paint", "--args", '{"colour": "red"}'], settings)
    assert code == 1 and "not enabled" in text
    code, text = invoke(["call", "paint", "--args", '{"colour": "red"}', "--allow-disabled"], settings)
    assert code == 0 and json.loads(text)["colour"] == "red"
