"""Discovery from entry points and configured modules, the allowlist, and broken plugins."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint, entry_points

from structlog.testing import capture_logs

from voiced.plugins import ENTRY_POINT_GROUP, PluginRegistry, PluginSettings, ToolOverride

BUILTINS = {"current_time", "get_volume", "set_volume", "device_status"}


def test_the_installed_builtin_entry_point_is_discovered_and_enabled_by_default() -> None:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert "builtin" in names, "voiced must be installed (editable) for its entry point to exist"

    registry = PluginRegistry.load(PluginSettings())
    assert {info.name for info in registry.enabled()} == BUILTINS
    clock = registry.get("current_time")
    assert clock is not None
    assert clock.source == "entry point 'builtin' (voiced.plugins.builtin)"
    assert registry.errors == []


def test_modules_from_config_are_loaded_but_only_the_allowlist_is_enabled() -> None:
    settings = PluginSettings(enabled=["sleepy", "current_time"], modules=["tests.plugins.sample_tools"])
    registry = PluginRegistry.load(settings)
    names = {info.name for info in registry.all()}
    assert {"sleepy", "paint", "lamp", "explode"} <= names and names >= BUILTINS
    assert [info.name for info in registry.enabled()] == ["current_time", "sleepy"]
    paint = registry.get("paint")
    assert paint is not None and not paint.enabled
    assert paint.source == "module tests.plugins.sample_tools"


def test_an_entry_point_may_name_a_list_or_a_single_tool() -> None:
    eps = [
        EntryPoint("pair", "tests.plugins.sample_tools:PAIR_OF_TOOLS", ENTRY_POINT_GROUP),
        EntryPoint("one", "tests.plugins.sample_tools:explode", ENTRY_POINT_GROUP),
    ]
    registry = PluginRegistry.load(PluginSettings(enabled=[]), entry_points_=eps)
    assert [info.name for info in registry.all()] == ["explode", "refuse", "sleepy"]
    assert registry.enabled() == []


def test_a_module_that_raises_at_import_is_skipped_with_one_log_line() -> None:
    settings = PluginSettings(
        enabled=["sleepy"], modules=["tests.plugins.broken_plugin", "tests.plugins.sample_tools"]
    )
    with capture_logs() as logs:
        registry = PluginRegistry.load(settings)
    assert registry.get("sleepy") is not None, "the other plugins still load"
    (error,) = registry.errors
    assert error.source == "module tests.plugins.broken_plugin"
    assert "ImportError: this plugin needs libfoo" in error.message
    skipped = [entry for entry in logs if entry["event"] == "plugin skipped: it failed to load"]
    assert len(skipped) == 1
    assert skipped[0]["log_level"] == "error"
    assert "remove it from [plugins] modules" in skipped[0]["hint"]


def test_a_broken_entry_point_and_a_missing_module_are_skipped_too() -> None:
    eps = [EntryPoint("gone", "voiced_plugin_that_does_not_exist", ENTRY_POINT_GROUP)]
    registry = PluginRegistry.load(
        PluginSettings(modules=["no_such_module_here", "tests.plugins.toolless_plugin"]), entry_points_=eps
    )
    assert registry.all() == []
    sources = [e.source for e in registry.errors]
    assert sources == [
        "entry point 'gone' (voiced_plugin_that_does_not_exist)",
        "module no_such_module_here",
        "module tests.plugins.toolless_plugin",
    ]
    assert "no @tool functions" in registry.errors[2].message


def test_enabled_names_that_do_not_exist_are_logged() -> None:
    with capture_logs() as logs:
        PluginRegistry.load(PluginSettings(enabled=["current_time", "open_garage"]))
    missing = [e for e in logs if e["event"] == "enabled plugin tool not found"]
    assert [e["tool"] for e in missing] == ["open_garage"]


def test_overrides_change_timeout_and_isolation() -> None:
    settings = PluginSettings(
        enabled=["sleepy"],
        modules=["tests.plugins.sample_tools"],
        timeout_s=7.0,
        tools={"sleepy": ToolOverride(timeout_s=0.5, isolated=True), "current_time": ToolOverride()},
    )
    registry = PluginRegistry.load(settings)
    sleepy, explode, clock = registry.get("sleepy"), registry.get("explode"), registry.get("current_time")
    assert sleepy is not None and explode is not None and clock is not None
    assert (sleepy.timeout_s, sleepy.isolated) == (0.5, True)
    assert (explode.timeout_s, explode.isolated) == (7.0, False), "no own timeout: the default"
    assert clock.timeout_s == 2.0, "its own timeout wins over the default"


def test_a_second_tool_with_the_same_name_is_skipped_and_reported() -> None:
    eps = [
        EntryPoint("builtin", "voiced.plugins.builtin", ENTRY_POINT_GROUP),
        EntryPoint("clash", "tests.plugins.clashing_plugin", ENTRY_POINT_GROUP),
    ]
    registry = PluginRegistry.load(PluginSettings(), entry_points_=eps)
    clock = registry.get("current_time")
    assert clock is not None and clock.source.startswith("entry point 'builtin'")
    assert any("already provided by entry point 'builtin'" in e.message for e in registry.errors)


def test_schema_json_declares_exactly_the_enabled_tools() -> None:
    registry = PluginRegistry.load(PluginSettings(enabled=["set_volume", "current_time"]))
    declared = json.loads(registry.schema_json())
    assert [d["name"] for d in declared] == ["current_time", "set_volume"]
    assert set(declared[1]) == {"name", "description", "parameters"}
    assert declared[1]["parameters"]["required"] == ["volume_pct"]
