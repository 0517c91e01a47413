"""Garbage from a client never takes the emulator down; the test API (drop_all, send_raw_to_all,
wait_for, received) works as documented."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.emulator.helpers import client, running, session
from voiced.protocol.events import (
    ChatCreated,
    ConversationChatCompleted,
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
