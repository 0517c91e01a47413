"""Conformance with the official Python SDK: cozepy's async WebSocket chat client, pointed at the
emulator, must receive every server event in one of its typed ``on_*`` handlers — none dropped as an
unknown event, none failing its pydantic models (which would end in its error path) — and find the
logid on every event.

cozepy pins an older websockets than the daemon runs on, so it lives in its own virtualenv
(``.venv-sdk``, built by ``scripts/setup.sh --test``; ``VOICED_SDK_PYTHON`` names another interpreter)
and each conversation is held by ``tests/emulator/sdk_client.py`` in a subprocess of that interpreter,
which reports what the SDK saw as JSON.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.helpers import TOKEN, running
from tests.support.tls import self_signed_cert
from voiced.emulator import Emulator
from voiced.emulator.scenarios import DEFAULT_PROLOGUE
from voiced.emulator.tts import Voice
from voiced.protocol.events import ChatUpdate

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("sdk_client.py")
BOT_ID = "7496347519799787557"
_plans = itertools.count()
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def sdk_python() -> Path:
    """The interpreter that has cozepy; skips the test (saying how to get it) when there is none."""
    chosen = os.environ.get("VOICED_SDK_PYTHON")
    path = Path(chosen) if chosen else ROOT / ".venv-sdk" / "bin" / "python"
    if not path.exists():
        pytest.skip(f"no SDK interpreter at {path}: run scripts/setup.sh --test (or set VOICED_SDK_PYTHON)")
    return path


async def hold_conversation(
    emu: Emulator, steps: list[dict[str, Any]], tmp_path: Path, **plan: Any
) -> dict[str, Any]:
    """Run the SDK client with ``steps`` against ``emu``; returns its JSON report."""
    python = sdk_python()
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    env.update(plan.pop("env", {}))
    plan_file = tmp_path / f"plan-{next(_plans)}.json"
    full = {"base_url": emu.url, "bot_id": BOT_ID, "token": TOKEN, "steps": steps, **plan}
    plan_file.write_text(json.dumps(full))
    process = await asyncio.create_subprocess_exec(
        str(python), str(SCRIPT), str(plan_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, stderr.decode()[-3000:]
    report: dict[str, Any] = json.loads(stdout)
    assert report["failure"] is None, report["failure"]
    return report


def assert_conformant(report: dict[str, Any], sent: Counter[str], allowed_enum_warnings: int = 0) -> None:
    """Every event the emulator sent reached a typed handler, with its logid; nothing unknown."""
    assert report["errors"] == [], f"events ended in cozepy's error path: {report['errors']}"
    received = Counter(e["name"] for e in report["typed"])
    assert received == sent, "every event the emulator sent reached a typed cozepy handler"
    assert all(e["logid"] for e in report["typed"]), "the SDK finds the logid on every event"
    assert report["unknown_event_logs"] == []
    assert len(report["enum_warnings"]) <= allowed_enum_warnings, report["enum_warnings"]


def named(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in report["typed"] if e["name"] == name]


PCM_24K = {"format": "pcm", "codec": "pcm", "sample_rate": 24000, "channel": 1, "bit_depth": 16}
SERVER_VAD = {"type": "server_vad", "silence_duration_ms": 400}


def say(text: str) -> dict[str, Any]:
    """The step that sends a user text message."""
    return {
        "send": "conversation_message_create",
        "data": {"role": "user", "content_type": "text", "content": text},
    }


async def test_cozepy_holds_every_kind_of_turn(tmp_path: Path) -> None:
    speech = tmp_path / "speech.pcm"
    speech.write_bytes(await Voice().speak("What time is it?", 24000))
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {
            "send": "chat_update",
            "data": {
                "input_audio": PCM_24K,
                "output_audio": {"codec": "pcm", "pcm_config": {"sample_rate": 24000}},
                "turn_detection": {"type": "client_interrupt"},
                "need_play_prologue": True,
                "asr_config": {"hot_words": ["voiced"], "context": "a speaker", "context_type": "dialog_ctx"},
            },
        },
        {"wait": "chat.updated"},
        # The prologue: a chat with no user message.
        {"wait": "conversation.chat.completed"},
        # A text turn with a tool call, answered with plain text.
        say("What time is it?"),
        {"wait": "conversation.chat.completed", "count": 2},
        # An audio turn: PCM appends, then complete (the demo's first audio turn calls the tool again).
        {"append_file": str(speech), "chunk_bytes": 4800},
        {"send": "input_audio_buffer_complete"},
        {"wait": "conversation.audio_transcript.completed"},
        {"wait": "conversation.chat.completed", "count": 3},
        # A reply cancelled in flight.
        say("Hello there"),
        {"wait": "conversation.audio.sentence_start", "count": 6},
        {"send": "conversation_chat_cancel"},
        {"wait": "conversation.chat.canceled"},
        # The rest of the client API.
        {"send": "input_text_generate_audio", "data": {"mode": "text", "text": "Still there?"}},
        {"wait": "conversation.audio.completed", "count": 4},
        {"send": "input_audio_buffer_clear"},
        {"wait": "input_audio_buffer.cleared"},
        {"send": "conversation_clear"},
        {"wait": "conversation.cleared"},
    ]  # fmt: skip
    async with running(scenario="demo", time_scale=0.5, usage_spelling="both") as emu:
        report = await hold_conversation(emu, steps, tmp_path, tool_output="17:45")
        sent = emu.sent_event_types[0]
        update = next(r.event for r in emu.received if isinstance(r.event, ChatUpdate))
    assert_conformant(report, sent)
    assert sum(sent.values()) > 50
    answers = [m["content"] for m in named(report, "conversation.message.completed") if m["type"] == "answer"]
    assert answers[:3] == [DEFAULT_PROLOGUE, "It is 17:45.", "It is 17:45."]
    kinds = [m["type"] for m in named(report, "conversation.message.completed")]
    assert kinds[:2] == ["answer", "verbose"], "the prologue comes with no user message"
    assert kinds.count("question") == 3
    completed = named(report, "conversation.chat.completed")
    assert completed[-1]["usage"]["output_count"] > 0, "usage as the SDK reads it (input_count spelling)"
    assert named(report, "conversation.chat.canceled")[0]["code"] == 2
    assert update.data.asr_config is not None and update.data.asr_config.hot_words == ["voiced"]
    assert update.data.need_play_prologue is True
    assert {
        "chat.created", "chat.updated", "conversation.chat.created", "conversation.chat.in_progress",
        "conversation.chat.requires_action", "conversation.message.delta", "conversation.message.completed",
        "conversation.audio.sentence_start", "conversation.audio.delta", "conversation.audio.completed",
        "conversation.chat.completed", "conversation.chat.canceled", "input_audio_buffer.completed",
        "input_audio_buffer.cleared", "conversation.audio_transcript.update",
        "conversation.audio_transcript.completed", "conversation.cleared",
    } <= set(sent)  # fmt: skip


async def test_cozepy_accepts_the_newer_fields_and_usage_spelling(tmp_path: Path) -> None:
    newer = {
        "input_audio": PCM_24K,
        "turn_detection": {
            "type": "semantic_vad",
            "semantic_vad_config": {"silence_threshold_ms": 300, "semantic_unfinished_wait_time_ms": 500},
        },
        "asr_config": {"stream_mode": "output_no_stream", "enable_emotion": True, "enable_gender": True},
        "output_audio": {
            "codec": "pcm",
            "pcm_config": {"sample_rate": 24000},
            "emotion_config": {"emotion": "happy", "emotion_scale": 4.0},
        },
        "voice_print_config": {"group_id": "g", "score": 40, "reuse_voice_info": False},
        "voice_processing_config": {"enable_ans": True, "enable_pdns": False},
        "need_play_prologue": True,
        "prologue_content": "Hi, nice to hear you.",
    }
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {"send_open_update": newer},
        {"wait": "chat.updated"},
        {"wait": "conversation.chat.completed"},
        say("Hi"),
        {"wait": "conversation.chat.completed", "count": 2},
    ]  # fmt: skip
    async with running(scenario="echo", usage_spelling="tokens") as emu:
        report = await hold_conversation(emu, steps, tmp_path)
        sent = emu.sent_event_types[0]
        update = next(r.event for r in emu.received if isinstance(r.event, ChatUpdate))
    # cozepy 0.20's TurnDetectionType lists no semantic_vad: its dynamic enum warns once, and goes on.
    assert_conformant(report, sent, allowed_enum_warnings=1)
    assert all("semantic_vad" in w for w in report["enum_warnings"])
    assert update.data.to_wire() == newer, "every newer field arrived through the SDK, typed"
    answers = [m["content"] for m in named(report, "conversation.message.completed") if m["type"] == "answer"]
    assert answers == ["Hi, nice to hear you.", "Hi"]


async def test_cozepy_sees_server_vad_and_failure_events(tmp_path: Path) -> None:
    speech = await Voice().speak("Tell me a long story please.", 24000)
    pcm = tmp_path / "speech.pcm"
    pcm.write_bytes(bytes(24000) + speech + bytes(48000))
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {"send": "chat_update", "data": {"input_audio": PCM_24K, "turn_detection": SERVER_VAD}},
        {"wait": "chat.updated"},
        {"append_file": str(pcm), "chunk_bytes": 4800},
        {"wait": "input_audio_buffer.speech_started"},
        {"wait": "input_audio_buffer.speech_stopped"},
        # The demo's first audio turn asks for the time; the SDK is told not to answer: chat.failed.
        {"wait": "conversation.chat.failed"},
    ]  # fmt: skip
    async with running(scenario="demo", time_scale=0.1, tool_timeout_s=0.2) as emu:
        report = await hold_conversation(emu, steps, tmp_path, answer_tools=False)
        sent = emu.sent_event_types[0]
    assert_conformant(report, sent)
    assert named(report, "conversation.chat.failed")[0]["last_error"]["msg"]


async def test_async_coze_reaches_the_emulator_over_tls(tmp_path: Path) -> None:
    # The documented SDK path: AsyncCoze(base_url="https://HOST:PORT").websockets.chat.create(...).
    # cozepy turns https:// into wss:// (protocol.md §1), so the emulator serves TLS here and the
    # client trusts the test certificate through SSL_CERT_FILE.
    cert, key = self_signed_cert(tmp_path)
    steps: list[dict[str, Any]] = [
        {"wait": "chat.created"},
        {"send": "chat_update", "data": {"input_audio": PCM_24K}},
        {"wait": "chat.updated"},
        say("Over TLS."),
        {"wait": "conversation.chat.completed"},
    ]  # fmt: skip
    async with running(scenario="echo", tls_certfile=cert, tls_keyfile=key) as emu:
        assert emu.url.startswith("wss://")
        port = emu.url.rsplit(":", 1)[1]
        report = await hold_conversation(
            emu, steps, tmp_path, sdk_url=f"https://127.0.0.1:{port}", env={"SSL_CERT_FILE": str(cert)}
        )
        sent = emu.sent_event_types[0]
    assert_conformant(report, sent)


def test_the_sdk_is_not_in_the_daemons_environment() -> None:
    # The SDK pins an older websockets; installed here it would change what the daemon is tested on.
    assert importlib.util.find_spec("cozepy") is None, "cozepy belongs in .venv-sdk only"
