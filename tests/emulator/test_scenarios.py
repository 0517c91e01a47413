"""Scenario files: bundled ones load, errors name the file and key, templates never evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiced.emulator.scenarios import (
    DEFAULT_FALLBACK,
    ScenarioError,
    TemplateError,
    TurnCursor,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    render_template,
)


def test_bundled_scenarios() -> None:
    assert {"demo", "echo", "tools", "long"} <= set(bundled_scenarios())
    demo = load_scenario("demo")
    first = demo.turns[0]
    assert first.transcript == "What time is it right now?"
    assert [(t.name, t.arguments_json()) for t in first.tool_calls] == [("current_time", "{}")]
    assert first.reply == ["It is {current_time.spoken}."]
    tools = load_scenario("tools").turns[0]
    assert [t.name for t in tools.tool_calls] == ["current_time", "device_status"]
    assert len(load_scenario("long").turns[0].reply) >= 8


def test_load_by_path_and_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text('[fallback]\nreply = ["Hi."]\n')
    assert load_scenario(good).name == "mine"
    assert load_scenario(str(good)).fallback is not None
    bad = tmp_path / "bad.toml"
    bad.write_text('[[turns]]\nreply = ["It is {oops."]\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml: turns\[0\]\.reply.*reply\[0\]"):
        load_scenario(bad)
    bad.write_text('[[turns]]\nreply = ["x"]\nrepyl = 1\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml: turns\[0\]\.repyl"):
        load_scenario(bad)
    bad.write_text("this is = = not toml")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match=r"bundled: .*demo"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_templates_are_substitution_only() -> None:
    values = {"current_time": '{"spoken": "noon", "nested": {"x": 1}}', "raw": "plain text", "n": None}
    assert render_template("It is {current_time.spoken}.", values) == "It is noon."
    assert (
        render_template("{current_time.nested.x} {raw} {n} {raw.field}", values)
        == "1 plain text unknown plain text"
    )
    # A tool output that is not a JSON object is spoken as it is, whatever field the template asks for.
    text_outputs = {"t": "17:45", "q": '"quoted"', "num": "42", "obj": '{"other": 1}'}
    assert render_template("{t} {t.spoken} {q.spoken} {num.spoken}", text_outputs) == "17:45 17:45 quoted 42"
    assert render_template("{obj.spoken}", text_outputs) == "unknown"
    assert render_template("{{literal}} {__class__} {missing.deep}", values) == "{literal} unknown unknown"
    with pytest.raises(TemplateError):
        render_template("{current_time['spoken']}", values)
    with pytest.raises(TemplateError):
        render_template("unbalanced }", values)


def test_turn_selection() -> None:
    scenario = parse_scenario(
        """
        [[turns]]
        keywords = ["weather"]
        reply = ["Sunny."]
        transcript = "How is the weather?"
        [[turns]]
        reply = ["Second."]
        transcript = "Second turn."
        [fallback]
        reply = ["Fallback."]
        """,
        "inline.toml",
    )
    cursor = TurnCursor(scenario)
    assert cursor.for_text("what's the WEATHER like").reply == ["Sunny."]
    # The ordered cursor points at a keyword turn, so an unmatched text gets the fallback.
    assert cursor.for_text("hello").reply == ["Fallback."]
    assert cursor.for_audio().transcript == "How is the weather?"
    assert cursor.for_text("anything").reply == ["Second."]
    assert cursor.for_audio().reply == ["Fallback."]
    empty = TurnCursor(parse_scenario("", "empty.toml"))
    assert empty.for_text("hi") is DEFAULT_FALLBACK and empty.for_audio() is DEFAULT_FALLBACK
