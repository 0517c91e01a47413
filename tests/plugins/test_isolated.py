"""Isolated plugins run in a child process that is killed at the deadline; the daemon survives."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from tests.support.timing import patience_s
from voiced.plugins import PluginRegistry, PluginSettings, ToolInfo, ToolOverride, ToolRunner, tool, tool_spec
from voiced.protocol.models import FunctionCall, ToolCall

SAMPLE = "tests.plugins.sample_tools"


def call(name: str, arguments: str = "") -> ToolCall:
    return ToolCall(id=f"call-{name}", function=FunctionCall(name=name, arguments=arguments))


def make_runner(enabled: list[str], **settings: object) -> ToolRunner:
    plugin_settings = PluginSettings.model_validate({"enabled": enabled, "modules": [SAMPLE], **settings})
    return ToolRunner(PluginRegistry.load(plugin_settings), plugin_settings)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_an_isolated_plugin_answers_from_another_process() -> None:
    runner = make_runner(
        ["isolated_echo"],
        timezone="Europe/Berlin",
        tools={"isolated_echo": ToolOverride(options={"greeting": "hi"})},
    )
    (output,) = await runner.run("chat-1", [call("isolated_echo", '{"text": "héllo"}')])
    answer = json.loads(output.output)
    assert answer["text"] == "héllo"
    assert answer["pid"] != os.getpid()
    assert answer["options"] == {"greeting": "hi"} and answer["zone"] == "Europe/Berlin"


async def test_an_isolated_plugin_that_blocks_forever_is_killed_at_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # A child Python takes about a second to start on a Pi Zero 2 W: the limit scales with the machine.
    limit_s = patience_s(1.0)
    runner = make_runner(["isolated_block"], tools={"isolated_block": ToolOverride(timeout_s=limit_s)})
    started = time.monotonic()
    (output,) = await runner.run("chat-1", [call("isolated_block", json.dumps({"pid_file": str(pid_file)}))])
    elapsed_s = time.monotonic() - started
    assert elapsed_s < limit_s + patience_s(0.5)
    assert json.loads(output.output)["error"] == f"tool 'isolated_block' timed out after {limit_s:g} s"
    child_pid = int(pid_file.read_text())
    assert not pid_exists(child_pid), "the child must be killed and reaped"


async def test_an_isolated_plugin_that_exits_gives_an_error_output() -> None:
    runner = make_runner(["isolated_exit", "isolated_raise"])
    died, raised = await runner.run("chat-1", [call("isolated_exit"), call("isolated_raise")])
    assert json.loads(died.output)["error"] == "the plugin process died before answering (exit code 1)"
    assert json.loads(raised.output)["error"] == "KeyError: 'missing'"


async def test_a_normal_tool_can_be_isolated_by_config() -> None:
    runner = make_runner(["explode"], tools={"explode": ToolOverride(isolated=True, timeout_s=5.0)})
    (output,) = await runner.run("chat-1", [call("explode", '{"reason": "in a child"}')])
    assert json.loads(output.output)["error"] == "ValueError: in a child"


async def test_a_tool_defined_in_a_function_cannot_be_isolated() -> None:
    @tool(description="local", isolated=True)
    def local_tool() -> str:
        return "x"

    settings = PluginSettings(enabled=["local_tool"], modules=[])
    spec = tool_spec(local_tool)
    assert spec is not None
    info = ToolInfo("local_tool", "local", "test", True, {}, True, 2.0, spec)
    runner = ToolRunner(PluginRegistry([info], settings=settings), settings)
    (output,) = await runner.run("chat-1", [call("local_tool")])
    assert "define it at the top level" in json.loads(output.output)["error"]


async def test_cancelling_an_isolated_call_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = make_runner(["isolated_block"], tools={"isolated_block": ToolOverride(timeout_s=30.0)})
    task = asyncio.create_task(
        runner.run("chat-1", [call("isolated_block", json.dumps({"pid_file": str(pid_file)}))])
    )
    for _ in range(500):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.01)
    child_pid = int(pid_file.read_text())
    assert pid_exists(child_pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not pid_exists(child_pid)
