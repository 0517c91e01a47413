"""Conformance with the official Node SDK: ``@coze/api``'s ``websockets.chat`` client, pointed at the
emulator, must dispatch every server event to a handler of its ``WebsocketsEventType`` table — none
unknown, none ending in its error path or its frame-parsing console errors — and find the logid on every
event and on a refused handshake.

The SDK is pinned in ``tests/emulator/node/package-lock.json`` and installed into
``tests/emulator/node/node_modules`` by ``scripts/setup.sh --test``; each conversation is held by
``tests/emulator/node/sdk_client.js`` in a ``node`` subprocess (``VOICED_NODE`` names another binary),
which reports what the SDK saw as JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.emulator.helpers import TOKEN, running
from voiced.emulator import Emulator
from voiced.emulator.scenarios import DEFAULT_PROLOGUE
from voiced.protocol.events import ConversationClear

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = Path(__file__).with_name("node")
SCRIPT = CLIENT_DIR / "sdk_client.js"
UTTERANCE = ROOT / "voiced" / "assets" / "utterance_16k.wav"
BOT_ID = "7496347519799787557"
SDK_VERSION = "1.3.9"
_plans = itertools.count()
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def node_binary() -> str:
    """The node that runs the client; skips the test when this machine has none at all."""
    chosen = os.environ.get("VOICED_NODE") or shutil.which("node") or shutil.which("nodejs")
    if chosen is None:
        pytest.skip("no node on PATH: install nodejs and npm (apt), then run scripts/setup.sh --test")
    installed = CLIENT_DIR / "node_modules" / "@coze" / "api" / "package.json"
    assert installed.exists(), f"the Node SDK is not installed in {CLIENT_DIR}: run scripts/setup.sh --test"
    return chosen


async def hold_conversation(
    emu: Emulator, steps: list[dict[str, Any]], tmp_path: Path, **plan: Any
) -> dict[str, Any]:
    """Run the Node SDK client with ``steps`` against ``emu``; returns its JSON report."""
    node = node_binary()
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    plan_file = tmp_path / f"plan-{next(_plans)}.json"
    full = {"base_ws_url": emu.url, "bot_id": BOT_ID, "token": TOKEN, "steps": steps, **plan}
    plan_file.write_text(json.dumps(full))
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), str(plan_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=CLIENT_DIR,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, stderr.decode()[-3000:]
    report: dict[str, Any] = json.loads(stdout)
    assert report["sdk_version"] == SDK_VERSION
    assert report["failure"] is None, report["failure"]
    return report


def assert_conformant(report: dict[str, Any], sent: Counter[str]) -> None:
    """Every event the emulator sent reached a typed handler, with its logid; nothing unknown."""
    assert report["errors"] == [], f"events ended in the SDK's error path: {report['errors']}"
    assert report["unknown"] == [], "events whose type the SDK's WebsocketsEventType lacks"
    assert report["console_errors"] == [], "frames the SDK could not parse"
    received = Counter(e["name"] for e in report["typed"])
    assert received == sent, "every event the emulator sent reached a typed handler of the Node SDK"
    assert all(e["logid"] for e in report["typed"]), "the SDK finds the logid on every event"


# What the SDK's declarations (1.3.9, dist/types/resources/websockets/types.d.ts) give a caller to read,
# limited to what the recorded real sessions carry too (they send no message meta_data, for one).
_CHAT_FIELDS = {"id", "conversation_id", "bot_id"}
_MESSAGE_FIELDS = {"id", "conversation_id", "bot_id", "chat_id", "role", "type", "content", "content_type"}
_DECLARED_FIELDS = {
    "conversation.chat.created": _CHAT_FIELDS,
    "conversation.chat.in_progress": _CHAT_FIELDS,
    "conversation.chat.completed": _CHAT_FIELDS,
    "conversation.chat.failed": _CHAT_FIELDS,
    "conversation.message.delta": _MESSAGE_FIELDS,
    "conversation.message.completed": _MESSAGE_FIELDS,
    "conversation.audio.delta": _MESSAGE_FIELDS,
    "conversation.audio.completed": _MESSAGE_FIELDS,
    "conversation.audio.sentence_start": {"text"},
    "conversation.audio_transcript.update": {"content"},
    "conversation.audio_transcript.completed": {"content"},
    "chat.updated": {"chat_config", "input_audio", "output_audio"},
}
_MESSAGE_TYPES = {
    "question", "answer", "function_call", "tool_output", "tool_response", "follow_up", "verbose",
}  # fmt: skip
_CONTENT_TYPES = {"text", "object_string", "card", "audio"}


def assert_declared_shapes(report: dict[str, Any]) -> None:
    """Each event carries the fields the SDK's types promise a caller, with values from their unions."""
    for event in report["typed"]:
        data = event["data"] or {}
        missing = _DECLARED_FIELDS.get(event["name"], set()) - set(data)
        assert not missing, f"{event['name']} lacks {sorted(missing)}: {data}"
        if event["name"] in ("conversation.message.delta", "conversation.message.completed"):
            assert data["role"] in ("user", "assistant")
            assert data["type"] in _MESSAGE_TYPES and data["content_type"] in _CONTENT_TYPES, data
        elif event["name"].startswith("conversation.audio.") and "content_type" in data:
            assert data["content_type"] == "audio", data


def named(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in report["typed"] if e["name"] == name]


def say(text: str) -> dict[str, Any]:
    """The step that sends a user text message."""
    return {
        "send": "conversation.message.create",
        "data": {"role": "user", "content_type": "text", "content": text},
    }


def utterance_pcm(tmp_path: Path) -> tuple[Path, int]:
    """The demo microphone's utterance as headerless PCM; returns the file and its sample rate."""
    with wave.open(str(UTTERANCE), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate_hz = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    pcm = tmp_path / "utterance.pcm"
    # Trailing silence, as a microphone would send before the user's device commits the turn.
    pcm.write_bytes(frames + bytes(rate_hz // 5 * 2))
    return pcm, rate_hz


async def test_node_sdk_holds_every_kind_of_turn(tmp_path: Path) -> None:
    pcm, rate_hz = utterance_pcm(tmp_path)
    pcm_in = {"format": "pcm", "codec": "pcm", "sample_rate": rate_hz, "channel": 1, "bit_depth": 16}
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {
            "send": "chat.update",
            "data": {
                "input_audio": pcm_in,
                "output_audio": {"codec": "pcm", "pcm_config": {"sample_rate": 24000}},
                "turn_detection": {"type": "client_interrupt"},
                "need_play_prologue": True,
            },
        },
        {"wait": "chat.updated"},
        # The prologue: a chat with no user message.
        {"wait": "conversation.chat.completed"},
        # An audio turn through the SDK's append: the demo bot calls a tool, answered with plain text.
        {"append_file": str(pcm), "chunk_bytes": rate_hz // 10 * 2},
        {"send": "input_audio_buffer.complete"},
        {"wait": "conversation.audio_transcript.completed"},
        {"wait": "conversation.chat.completed", "count": 2},
        # A text turn.
        say("Hello there"),
        {"wait": "conversation.chat.completed", "count": 3},
        # A reply cancelled in flight (the fallback has two sentences; cancel during the first).
        say("Hello again"),
        {"wait": "conversation.chat.in_progress", "count": 5},
        {"wait": "conversation.audio.delta", "count": 1},
        {"send": "conversation.chat.cancel"},
        {"wait": "conversation.chat.canceled"},
        # Speech for a text of the client's (no bot involved).
        {"send": "input_text.generate_audio", "data": {"mode": "text", "text": "Still there?"}},
        {"wait": "conversation.audio.completed", "count": 4},
        {"send": "input_audio_buffer.clear"},
        {"wait": "input_audio_buffer.cleared"},
        {"send": "conversation.clear"},
        {"wait": "conversation.cleared"},
    ]  # fmt: skip
    async with running(scenario="demo", time_scale=0.3) as emu:
        report = await hold_conversation(emu, steps, tmp_path, tool_output="17:45")
        sent = emu.sent_event_types[0]
    assert_conformant(report, sent)
    assert_declared_shapes(report)
    assert sum(sent.values()) > 50
    messages = named(report, "conversation.message.completed")
    answers = [m["content"] for m in messages if m["type"] == "answer"]
    fallback = "Hello! I am the voiced emulator. Ask me what time it is."
    assert answers[:3] == [DEFAULT_PROLOGUE, "It is 17:45.", fallback], "the plain-text tool output is spoken"
    assert messages[0]["type"] == "answer", "the prologue comes with no user message"
    transcript = named(report, "conversation.audio_transcript.completed")[0]["content"]
    assert transcript == "What time is it right now?"
    assert named(report, "conversation.chat.requires_action"), "the tool call reached the SDK"
    assert named(report, "conversation.chat.canceled")
    assert named(report, "conversation.chat.completed")[-1]["usage"]
    assert {
        "chat.created", "chat.updated", "conversation.chat.created", "conversation.chat.in_progress",
        "conversation.chat.requires_action", "conversation.message.delta", "conversation.message.completed",
        "conversation.audio.sentence_start", "conversation.audio.delta", "conversation.audio.completed",
        "conversation.chat.completed", "conversation.chat.canceled", "input_audio_buffer.completed",
        "input_audio_buffer.cleared", "conversation.audio_transcript.update",
        "conversation.audio_transcript.completed", "conversation.cleared",
    } <= set(sent)  # fmt: skip


async def test_node_sdk_reports_the_logid_of_a_refused_handshake(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with running(scenario="echo") as emu:
            report = await hold_conversation(emu, [], tmp_path, token="not-the-token", refused=True)
    refused = [entry for entry in logs if entry.get("event") == "handshake_refused"]
    assert len(refused) == 1, "no reconnection attempts after the refusal"
    assert report["refusal"] == {"code": 401, "msg": "Unauthorized", "logid": refused[0]["logid"]}
    assert report["typed"] == [] and report["unknown"] == []


async def test_node_sdk_sees_server_vad_turns(tmp_path: Path) -> None:
    pcm, rate_hz = utterance_pcm(tmp_path)
    # The utterance starts with its own half second of room tone; trailing silence ends the turn.
    padded = tmp_path / "padded.pcm"
    padded.write_bytes(pcm.read_bytes() + bytes(rate_hz * 2))
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {
            "send": "chat.update",
            "data": {
                "input_audio": {"format": "pcm", "codec": "pcm", "sample_rate": rate_hz},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
            },
        },
        {"wait": "chat.updated"},
        {"append_file": str(padded), "chunk_bytes": rate_hz // 50 * 2},
        {"wait": "input_audio_buffer.speech_started"},
        {"wait": "input_audio_buffer.speech_stopped"},
        {"wait": "conversation.chat.completed"},
    ]  # fmt: skip
    async with running(scenario="demo", time_scale=0.1) as emu:
        report = await hold_conversation(emu, steps, tmp_path, tool_output='{"spoken": "a quarter to six"}')
        sent = emu.sent_event_types[0]
    assert_conformant(report, sent)
    assert_declared_shapes(report)
    answers = [m["content"] for m in named(report, "conversation.message.completed") if m["type"] == "answer"]
    assert answers == ["It is a quarter to six."]


async def test_the_client_reports_what_the_sdk_cannot_type(tmp_path: Path) -> None:
    # The harness's own check: an event type the SDK lacks and a frame it cannot parse are reported.
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {"send": "conversation.clear"},
        {"wait": "conversation.cleared", "count": 2},
    ]  # fmt: skip
    node_binary()  # skip before any task exists
    async with running(scenario="echo") as emu:
        conversation = asyncio.create_task(hold_conversation(emu, steps, tmp_path))
        await emu.wait_for(lambda event: isinstance(event, ConversationClear), timeout_s=30)
        await emu.send_raw_to_all(json.dumps({"id": "x1", "event_type": "conversation.surprise", "data": {}}))
        await emu.send_raw_to_all("not json")
        # Ends the client's wait.
        await emu.send_raw_to_all(json.dumps({"id": "x2", "event_type": "conversation.cleared"}))
        report = await conversation
    assert [json.loads(u)["event_type"] for u in report["unknown"]] == ["conversation.surprise"]
    assert len(report["console_errors"]) == 1 and "onmessage" in report["console_errors"][0]
