"""The runner answers every call with exactly one output, on time, whatever the plugin does."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.plugins.sample_tools import Probe
from voiced.plugins import (
    PluginContext,
    PluginRegistry,
    PluginSettings,
    ToolInfo,
    ToolOverride,
    ToolRunner,
    make_context_factory,
)
from voiced.protocol.models import FunctionCall, ToolCall

# Generous: CI machines stall. The point is "on time", not "exactly on time".
MARGIN_S = 0.5

SAMPLE = "tests.plugins.sample_tools"


def call(name: str, arguments: str = "", call_id: str | None = None) -> ToolCall:
    return ToolCall(id=call_id or f"call-{name}", function=FunctionCall(name=name, arguments=arguments))


def make_runner(enabled: list[str], **settings: Any) -> ToolRunner:
    plugin_settings = PluginSettings(enabled=enabled, modules=[SAMPLE], **settings)
    return ToolRunner(PluginRegistry.load(plugin_settings), plugin_settings)


def error_of(output: str) -> str:
    decoded = json.loads(output)
    assert set(decoded) == {"error", "tool"}
    message: str = decoded["error"]
    return message


async def test_a_result_is_serialised_as_json_and_a_string_as_is() -> None:
    runner = make_runner(["sleepy", "lamp"])
    outputs = await runner.run(
        "chat-1", [call("sleepy", '{"seconds": 0}'), call("lamp", '{"room": "hall", "on": false}')]
    )
    assert [o.tool_call_id for o in outputs] == ["call-sleepy", "call-lamp"]
    assert json.loads(outputs[0].output) == {"slept_s": 0}
    assert outputs[1].output == "hall lamp off"


async def test_two_calls_run_concurrently_and_keep_their_order() -> None:
    runner = make_runner(["sleepy", "sleepy_sync"])
    started = time.monotonic()
    outputs = await runner.run(
        "chat-1",
        [
            call("sleepy", '{"seconds": 0.3}', "a"),
            call("sleepy_sync", '{"seconds": 0.3}', "b"),
            call("sleepy", '{"seconds": 0.0}', "c"),
        ],
    )
    elapsed_s = time.monotonic() - started
    assert elapsed_s < 0.55, f"calls ran one after another ({elapsed_s:.2f} s)"
    assert [o.tool_call_id for o in outputs] == ["a", "b", "c"]


async def test_the_concurrency_limit_holds() -> None:
    runner = make_runner(["sleepy"], max_concurrency=1)
    started = time.monotonic()
    await runner.run(
        "chat-1", [call("sleepy", '{"seconds": 0.2}', "a"), call("sleepy", '{"seconds": 0.2}', "b")]
    )
    assert time.monotonic() - started >= 0.38


async def test_a_hanging_async_plugin_times_out_on_time() -> None:
    runner = make_runner(["hang_async", "sleepy"])
    started = time.monotonic()
    outputs = await runner.run("chat-1", [call("hang_async"), call("sleepy", '{"seconds": 0}')])
    elapsed_s = time.monotonic() - started
    assert elapsed_s < 0.3 + MARGIN_S
    assert error_of(outputs[0].output) == "tool 'hang_async' timed out after 0.3 s"
    assert json.loads(outputs[1].output) == {"slept_s": 0}


async def test_a_hanging_sync_plugin_answers_on_time_and_keeps_only_its_thread() -> None:
    release = threading.Event()
    runner = make_runner(["hang_sync"], tools={"hang_sync": ToolOverride(options={"release": release})})
    try:
        started = time.monotonic()
        with capture_logs() as logs:
            (output,) = await runner.run("chat-1", [call("hang_sync")])
        assert time.monotonic() - started < 0.3 + MARGIN_S
        assert "timed out after 0.3 s" in error_of(output.output)
        assert runner.plugin_threads_alive == 1, "the thread cannot be killed and is still there"
        (line,) = [e for e in logs if "timed out" in e["event"]]
        assert "isolated = true" in line["hint"]
        # The event loop was never blocked: other coroutines ran meanwhile.
        await asyncio.sleep(0)
    finally:
        release.set()
    for _ in range(100):
        if runner.plugin_threads_alive == 0:
            break
        await asyncio.sleep(0.01)
    assert runner.plugin_threads_alive == 0


async def test_the_loop_keeps_running_while_a_sync_plugin_blocks() -> None:
    runner = make_runner(["sleepy_sync"])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async with asyncio.TaskGroup() as group:
        ticking = group.create_task(ticker())
        await runner.run("chat-1", [call("sleepy_sync", '{"seconds": 0.3}')])
        ticking.cancel()
    assert ticks >= 10


async def test_an_exception_becomes_an_error_output_and_the_traceback_goes_to_the_log() -> None:
    runner = make_runner(["explode", "refuse"])
    with capture_logs() as logs:
        outputs = await runner.run("chat-1", [call("explode", '{"reason": "fuse blown"}'), call("refuse")])
    assert error_of(outputs[0].output) == "ValueError: fuse blown"
    assert "Traceback" not in outputs[0].output
    assert error_of(outputs[1].output) == "the lamp is not reachable", "ToolError: message only"
    (raised,) = [e for e in logs if e["event"] == "tool raised"]
    assert isinstance(raised["exc_info"], ValueError) and raised["tool"] == "explode"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"seconds": ', "arguments are not valid JSON"),
        ('{"seconds": "soon"}', "seconds: Input should be a valid number"),
        ("{}", "seconds: Field required"),
        ("", "seconds: Field required"),
        ('{"seconds": 1, "loud": true}', "loud: unknown argument"),
    ],
)
async def test_invalid_arguments_say_what_is_wrong(arguments: str, expected: str) -> None:
    runner = make_runner(["sleepy"])
    (output,) = await runner.run("chat-1", [call("sleepy", arguments)])
    assert expected in error_of(output.output)
    assert json.loads(output.output)["tool"] == "sleepy"


async def test_unknown_and_not_enabled_tools_get_error_outputs() -> None:
    runner = make_runner(["sleepy"])
    outputs = await runner.run(
        "chat-1", [call("open_garage"), call("explode"), call("sleepy", '{"seconds": 0}')]
    )
    assert error_of(outputs[0].output) == "unknown tool 'open_garage': this device has no such tool"
    assert error_of(outputs[1].output) == "tool 'explode' is not enabled on this device"
    assert json.loads(outputs[2].output) == {"slept_s": 0}


async def test_an_oversized_output_is_truncated_within_the_cap() -> None:
    runner = make_runner(["flood", "flood_json"], max_output_bytes=1000)
    text, as_json = await runner.run(
        "chat-1", [call("flood", '{"size": 5000}'), call("flood_json", '{"size": 5000}')]
    )
    assert len(text.output.encode()) <= 1000 and text.output.endswith("…[truncated]")
    assert len(as_json.output.encode()) <= 1000
    wrapped = json.loads(as_json.output)
    assert wrapped["truncated"] is True and wrapped["original_bytes"] > 10000
    assert wrapped["partial"].startswith('{"data":"ééé')


async def test_a_result_that_is_not_json_is_an_error() -> None:
    runner = make_runner(["not_json"])
    (output,) = await runner.run("chat-1", [call("not_json")])
    assert "not JSON" in error_of(output.output)


async def test_cancelling_run_cancels_every_plugin_and_raises() -> None:
    settings = PluginSettings(enabled=["watched"], modules=[SAMPLE])
    probes = [Probe(), Probe()]
    unused = iter(probes)
    plain = make_context_factory(settings)

    def one_probe_per_call(info: ToolInfo) -> PluginContext:
        context = plain(info)
        context.settings = {"probe": next(unused)}
        return context

    runner = ToolRunner(PluginRegistry.load(settings), settings, one_probe_per_call)
    task = asyncio.create_task(runner.run("chat-1", [call("watched", "", "a"), call("watched", "", "b")]))
    for probe in probes:
        assert await asyncio.to_thread(probe.started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(probe.cancelled.is_set() for probe in probes)


async def test_duplicate_call_ids_get_one_output() -> None:
    runner = make_runner(["sleepy"])
    outputs = await runner.run(
        "chat-1", [call("sleepy", '{"seconds": 0}', "x"), call("sleepy", '{"seconds": 1}', "x")]
    )
    assert [o.tool_call_id for o in outputs] == ["x"]


async def test_an_empty_list_of_calls_gives_no_outputs() -> None:
    assert await make_runner([]).run("chat-1", []) == []


async def test_a_timeout_is_told_apart_from_a_failure() -> None:
    runner = make_runner(["hang_async", "sleepy"])
    hung, slept = await runner.run_detailed("chat-1", [call("hang_async"), call("sleepy", '{"seconds": 0}')])
    assert not hung.ok and hung.timed_out
    assert slept.ok and not slept.timed_out
