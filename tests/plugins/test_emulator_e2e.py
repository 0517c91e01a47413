"""Tool calls end to end: a real WebSocket on loopback to the emulator, answered by the ToolRunner.

The client here does what the daemon does on ``conversation.chat.requires_action``: run all calls,
submit the outputs in one ``submit_tool_outputs`` with the chat's id — or, on barge-in, cancel the
runner and ``conversation.chat.cancel`` and submit nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

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
from voiced.protocol.events import (
    AnyServerEvent,
    ConversationChatCancel,
    ConversationChatCanceled,
    ConversationChatCompleted,
    ConversationChatFailed,
    ConversationChatRequiresAction,
    ConversationChatSubmitToolOutputs,
    ConversationMessageCompleted,
    ConversationMessageCreate,
    Error,
    EventBase,
    MalformedEvent,
    MessageCreateData,
    SubmitToolOutputsData,
    UnknownEvent,
    parse_server_frame,
)

try:
    from voiced.emulator import Emulator, EmulatorSettings, load_scenario, serve_emulator
    from voiced.emulator.scenarios import parse_scenario
except ImportError:  # the emulator is developed in parallel; these tests wait for it
    pytestmark = pytest.mark.skip(reason="voiced.emulator (serve_emulator) is not importable yet")

SAMPLE = "tests.plugins.sample_tools"
# websockets >= 15 honours proxy variables and takes proxy=None; 14 has neither.
_CONNECT_TAKES_PROXY = "proxy" in inspect.signature(connect.__init__).parameters
TOKEN = "t"
EVENT_TIMEOUT_S = 10.0

# Custom bots for the failure paths; each reply quotes the tool outputs so the test can hear them.
FAILURES_SCENARIO = """
name = "plugin-failures"

[[turns]]
keywords = ["hang"]
reply = ["The slow tool said: {hang_async.error}.", "It is {current_time.spoken}."]
tool_calls = [{ name = "hang_async" }, { name = "current_time" }]

[[turns]]
keywords = ["break"]
reply = ["{explode.error}.", "{sleepy.error}.", "{open_garage.error}."]
tool_calls = [
  { name = "explode", arguments = { reason = "fuse blown" } },
  { name = "sleepy", arguments = { seconds = "soon" } },
  { name = "open_garage" },
]

[[turns]]
keywords = ["wait"]
reply = ["Finished: {watched}."]
tool_calls = [{ name = "watched" }]

[fallback]
reply = ["Still here."]
"""


@dataclass
class Client:
    """A minimal device: sends and reads typed events."""

    ws: ClientConnection
    emulator: Emulator

    async def send(self, event: EventBase) -> None:
        await self.ws.send(event.to_frame())

    async def receive(self) -> AnyServerEvent:
        while True:
            event = parse_server_frame(await asyncio.wait_for(self.ws.recv(), EVENT_TIMEOUT_S))
            if not isinstance(event, UnknownEvent | MalformedEvent):
                return event

    async def say(self, text: str) -> None:
        await self.send(ConversationMessageCreate(data=MessageCreateData(role="user", content=text)))

    def submissions(self) -> list[ConversationChatSubmitToolOutputs]:
        """What the emulator received, not just what this client meant to send."""
        received = [frame.event for frame in self.emulator.received]
        return [e for e in received if isinstance(e, ConversationChatSubmitToolOutputs)]


@dataclass
class ChatResult:
    answer: str
    status: str
    errors: list[str]
    submitted_for: list[str]


async def answer_turn(client: Client, runner: ToolRunner) -> ChatResult:
    """Drive one chat to its end, answering tool calls the way the daemon does."""
    answer = ""
    errors: list[str] = []
    submitted_for: list[str] = []
    while True:
        event = await client.receive()
        if isinstance(event, ConversationChatRequiresAction):
            outputs = await runner.run(event.data.id, event.data.tool_calls)
            data = SubmitToolOutputsData(chat_id=event.data.id, tool_outputs=outputs)
            await client.send(ConversationChatSubmitToolOutputs(data=data))
            submitted_for.append(event.data.id)
        elif isinstance(event, ConversationMessageCompleted) and event.data.type == "answer":
            answer = event.data.content
        elif isinstance(event, Error):
            errors.append(event.data.msg)
        elif isinstance(event, ConversationChatCompleted | ConversationChatFailed):
            return ChatResult(answer, event.data.status or "", errors, submitted_for)


@contextlib.asynccontextmanager
async def connect_to(scenario_toml: str | None, scenario_name: str = "tools") -> AsyncIterator[Client]:
    scenario = parse_scenario(scenario_toml, "<test>") if scenario_toml else load_scenario(scenario_name)
    settings = EmulatorSettings(
        host="127.0.0.1", port=0, token=TOKEN, scenario=scenario, voice="synthetic", time_scale=0.05
    )
    extra: dict[str, Any] = {}
    if _CONNECT_TAKES_PROXY:
        extra["proxy"] = None  # loopback must never go through a proxy from the environment
    async with (
        serve_emulator(settings) as emu,
        connect(
            f"{emu.url}/v1/chat?bot_id=1", additional_headers={"Authorization": f"Bearer {TOKEN}"}, **extra
        ) as ws,
    ):
        yield Client(ws, emu)


def make_runner(settings: PluginSettings) -> ToolRunner:
    return ToolRunner(PluginRegistry.load(settings), settings)


def fake_device(tmp_path: Path) -> dict[str, ToolOverride]:
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    (tmp_path / "uptime").write_text("12345.67 99.0\n")
    options = {"thermal_dir": str(tmp_path / "thermal"), "proc_uptime": str(tmp_path / "uptime")}
    return {"device_status": ToolOverride(options=options)}


async def test_two_tool_outputs_reach_the_bot_in_one_submission_and_change_the_reply(tmp_path: Path) -> None:
    settings = PluginSettings(tools=fake_device(tmp_path))
    runner = make_runner(settings)
    async with connect_to(None, "tools") as client:
        await client.say("How is the device doing?")
        result = await answer_turn(client, runner)

        assert result.status == "completed" and result.errors == []
        (submission,) = client.submissions()
        assert [submission.data.chat_id] == result.submitted_for
        assert len(submission.data.tool_outputs) == 2
        clock = json.loads(submission.data.tool_outputs[0].output)
        assert f"It is {clock['spoken']}." in result.answer
        assert "up for 12345.7 seconds" in result.answer
        assert "The CPU temperature is 48.3 degrees." in result.answer


async def test_a_hanging_plugin_times_out_and_the_conversation_continues() -> None:
    runner = make_runner(PluginSettings(enabled=["hang_async", "current_time"], modules=[SAMPLE]))
    async with connect_to(FAILURES_SCENARIO) as client:
        await client.say("please hang")
        started = asyncio.get_running_loop().time()
        result = await answer_turn(client, runner)
        assert asyncio.get_running_loop().time() - started < 0.3 + 2.0
        assert result.status == "completed"
        assert "The slow tool said: tool 'hang_async' timed out after 0.3 s." in result.answer
        assert "unknown" not in result.answer.split("It is ")[1], "the other tool still answered"

        await client.say("are you there?")
        follow_up = await answer_turn(client, runner)
        assert follow_up.answer == "Still here."


async def test_raising_invalid_and_unknown_calls_are_explained_to_the_bot() -> None:
    runner = make_runner(PluginSettings(enabled=["explode", "sleepy"], modules=[SAMPLE]))
    async with connect_to(FAILURES_SCENARIO) as client:
        await client.say("break things")
        result = await answer_turn(client, runner)
        assert result.status == "completed" and result.errors == []
        assert "ValueError: fuse blown." in result.answer
        assert "invalid arguments: seconds: Input should be a valid number" in result.answer
        assert "unknown tool 'open_garage'" in result.answer
        assert len(client.submissions()) == 1


async def test_barge_in_during_a_slow_tool_cancels_it_and_submits_nothing() -> None:
    settings = PluginSettings(enabled=["watched"], modules=[SAMPLE])
    probe = Probe()
    plain = make_context_factory(settings)

    def with_probe(info: ToolInfo) -> PluginContext:
        context = plain(info)
        context.settings = {"probe": probe}
        return context

    runner = ToolRunner(PluginRegistry.load(settings), settings, with_probe)
    async with connect_to(FAILURES_SCENARIO) as client:
        await client.say("wait for it")
        event = await client.receive()
        while not isinstance(event, ConversationChatRequiresAction):
            event = await client.receive()
        tools = asyncio.create_task(runner.run(event.data.id, event.data.tool_calls))
        assert await asyncio.to_thread(probe.started.wait, 5)

        # Barge-in: the daemon cancels the chat's tool task and the chat, in one step.
        tools.cancel()
        await client.send(ConversationChatCancel())
        with pytest.raises(asyncio.CancelledError):
            await tools
        assert probe.cancelled.is_set()

        event = await client.receive()
        while not isinstance(event, ConversationChatCanceled):
            assert not isinstance(event, Error), event
            event = await client.receive()
        assert client.submissions() == []

        await client.say("are you there?")
        follow_up = await answer_turn(client, runner)
        assert follow_up.answer == "Still here." and follow_up.errors == []
        assert client.submissions() == [], "nothing may arrive late for the cancelled chat"
