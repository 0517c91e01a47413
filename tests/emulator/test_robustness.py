"""Garbage from a client never takes the emulator down; the test API (drop_all, send_raw_to_all,
wait_for, received) works as documented."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.emulator.helpers import client, running, session
from voiced.protocol.events import (
    ChatCreated,
    ConversationChatCancel,
    ConversationChatCanceled,
    ConversationChatCompleted,
    ConversationMessageCompleted,
    Error,
    InputAudioBufferComplete,
    MalformedEvent,
    UnknownEvent,
)

GARBAGE: list[str | bytes] = [
    "{not json",
    "[1, 2, 3]",
    '{"no_event_type": true}',
    '{"event_type": "input_audio_buffer.append", "data": {"delta": 123}}',
    '{"event_type": "conversation.message.create", "data": {"role": "user"}}',
    '{"event_type": "no.such.event", "data": {}}',
    b"\x00\x01binary frame",
    "x" * (1 << 20 | 1),
    "{" * 10000,
]


async def test_garbage_gets_error_events_and_the_session_keeps_serving() -> None:
    async with session(scenario="echo") as (emu, c):
        await c.configure()
        for frame in GARBAGE:
            await c.ws.send(frame)
            error = await c.until(Error)
            assert error.data.code == 4000
        await c.say("Still alive?")
        assert isinstance(await c.chat_end(), ConversationChatCompleted)
        kinds = [type(r.event) for r in emu.received if r.connection_index == 0]
        assert kinds.count(MalformedEvent) == len(GARBAGE) - 1 and kinds.count(UnknownEvent) == 1


async def test_a_frame_beyond_the_socket_limit_closes_only_that_connection() -> None:
    async with running(max_frame_bytes=1024) as emu:
        async with client(emu) as c:
            await c.until(ChatCreated)
            await c.ws.send("y" * 8192)
            with pytest.raises(ConnectionClosed):
                for _ in range(10):
                    await c.recv()
        async with client(emu) as again:
            await again.until(ChatCreated)
        assert emu.connections_total == 2


async def test_test_api_drop_all_send_raw_and_wait_for() -> None:
    async with running() as emu:
        async with client(emu, strict=False) as c:
            await c.until(ChatCreated)
            await emu.send_raw_to_all(json.dumps({"event_type": "injected.by.test"}))
            assert isinstance(await c.recv(), UnknownEvent)
            await c.send(InputAudioBufferComplete())
            event = await emu.wait_for(lambda ev: isinstance(ev, InputAudioBufferComplete), timeout_s=2)
            assert isinstance(event, InputAudioBufferComplete)
            assert emu.received[-1].connection_index == 0 and emu.received[-1].at_monotonic_s > 0
            with pytest.raises(TimeoutError):
                await emu.wait_for(lambda ev: False, timeout_s=0.05)
            await emu.drop_all()
            with pytest.raises(ConnectionClosed):
                for _ in range(10):
                    await c.recv()
        async with client(emu) as again:
            await again.until(ChatCreated)
            assert emu.active_connections == 1


def _mutations(seed: int, count: int) -> list[str]:
    """Seeded mutations of valid client frames: wrong types, missing fields, truncation, odd values."""
    rng = random.Random(seed)
    valid: list[dict[str, Any]] = [
        {"event_type": "chat.update", "data": {"input_audio": {"format": "pcm", "sample_rate": 16000}}},
        {"event_type": "input_audio_buffer.append", "data": {"delta": "AAAA"}},
        {
            "event_type": "conversation.message.create",
            "data": {"role": "user", "content_type": "text", "content": "hi"},
        },
        {"event_type": "conversation.chat.submit_tool_outputs", "data": {"chat_id": "1", "tool_outputs": []}},
        {"event_type": "input_text.generate_audio", "data": {"mode": "text", "text": "hello"}},
        {"event_type": "conversation.chat.cancel"},
        {"event_type": "input_audio_buffer.complete", "data": {}},
    ]
    odd_values: list[Any] = [None, 0, -1, 1e308, "", "x" * 300, [], {}, True, {"nested": [1, {"a": None}]}]
    frames: list[str] = []
    for _ in range(count):
        frame = json.loads(json.dumps(rng.choice(valid)))
        action = rng.randrange(4)
        data = frame.get("data")
        if action == 0 and isinstance(data, dict) and data:
            data[rng.choice(list(data))] = rng.choice(odd_values)
        elif action == 1:
            frame["data"] = rng.choice(odd_values)
        elif action == 2:
            frame[rng.choice(["id", "event_type", "detail"])] = rng.choice(odd_values)
        text = json.dumps(frame)
        if action == 3:
            text = text[: rng.randrange(1, len(text))]
        frames.append(text)
    return frames


async def test_seeded_fuzz_of_client_frames_never_breaks_the_session() -> None:
    async with session(scenario="echo", time_scale=0.01) as (emu, c):
        for frame in _mutations(seed=1234, count=300):
            await c.ws.send(frame)
        await c.configure()
        await c.send(ConversationChatCancel())
        await c.until(ConversationChatCanceled, where=lambda _e: True)
        await c.say("Survived.")
        end = await c.until(
            ConversationChatCompleted,
            where=lambda e: bool(
                [m for m in c.events(ConversationMessageCompleted) if m.data.content == "Survived."]
            ),
            timeout_s=30,
        )
        assert end.data.status == "completed"
        assert emu.active_connections == 1
        assert len(emu.received) >= 300


async def test_concurrent_clients_are_independent() -> None:
    async with running(scenario="echo", time_scale=0.02) as emu:

        async def one(index: int) -> str:
            async with client(emu) as c:
                await c.until(ChatCreated)
                await c.configure()
                await c.say(f"Client number {index}.")
                await c.chat_end()
                return next(
                    m for m in c.events(ConversationMessageCompleted) if m.data.type == "answer"
                ).data.content

        answers = await asyncio.gather(*(one(i) for i in range(8)))
        assert answers == [f"Client number {i}." for i in range(8)]
        assert emu.connections_total == 8
