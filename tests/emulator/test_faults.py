"""Every fault knob has an observable effect on a real connection, and the seed makes it repeatable."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import Frame, Opcode

from tests.emulator.helpers import Client, client, running, session
from voiced.emulator.faults import FaultPlan, FaultSettings
from voiced.emulator.scenarios import parse_scenario
from voiced.protocol.events import (
    ChatCreated,
    ConversationAudioDelta,
    ConversationChatCompleted,
    Error,
    MalformedEvent,
    UnknownEvent,
)

OPUS_OUT = {"codec": "opus", "opus_config": {"frame_size_ms": 20}}


async def drain_until_closed(c: Client, timeout_s: float = 10.0) -> ConnectionClosed:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                await c.recv(timeout_s)
    except ConnectionClosed as exc:
        return exc


async def test_downlink_delay_and_jitter() -> None:
    async with running(faults={"downlink_delay_ms": 200}) as emu:
        started = time.monotonic()
        async with client(emu) as c:
            await c.until(ChatCreated)
            assert time.monotonic() - started >= 0.19
    plan = FaultPlan(seed=7, connection_index=0)
    jittery = FaultSettings(downlink_delay_ms=10, downlink_jitter_ms=50)
    delays = [plan.downlink_delay_s(jittery) for _ in range(200)]
    assert min(delays) >= 0.010 and max(delays) <= 0.060 and max(delays) - min(delays) > 0.03
    again = FaultPlan(seed=7, connection_index=0)
    assert [again.downlink_delay_s(jittery) for _ in range(200)] == delays, "seeded: repeatable"
    async with session(scenario="echo", faults={"downlink_jitter_ms": 30}) as (_emu, c):
        await c.configure()
        await c.say("Order is kept under jitter.")
        assert isinstance(await c.chat_end(), ConversationChatCompleted)


async def count_opus_deltas(loss_pct: float, seed: int = 3) -> int:
    async with session(scenario="echo", time_scale=0.02, seed=seed, faults={"opus_loss_pct": loss_pct}) as (
        _e,
        c,
    ):
        await c.configure(output_audio=OPUS_OUT)
        await c.say("Packets get lost on the way.")
        await c.chat_end()
        return len(c.events(ConversationAudioDelta))


async def test_opus_loss_drops_packets_deterministically() -> None:
    full = await count_opus_deltas(0)
    lossy = await count_opus_deltas(40)
    assert 0.4 * full < lossy < 0.8 * full
    assert await count_opus_deltas(40) == lossy


async def test_drop_after_frames_aborts_without_close_frame() -> None:
    async with session(scenario="echo", faults={"drop_after_frames": 4}) as (_emu, c):
        await c.configure()  # chat.created + chat.updated = 2 frames
        await c.say("Hello")
        closed = await drain_until_closed(c)
        assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
        assert len(c.received) == 4


async def test_drop_mid_reply_after_k_audio_deltas() -> None:
    async with session(scenario="long", faults={"drop_after_audio_deltas": 3}) as (emu, c):
        await c.configure()
        await c.say("story")
        await drain_until_closed(c)
        assert len(c.events(ConversationAudioDelta)) == 3
        assert not c.events(ConversationChatCompleted)
        # The emulator keeps serving new connections.
        async with client(emu) as again:
            await again.until(ChatCreated)


async def test_malformed_and_unknown_frames_are_injected() -> None:
    faults = {"malformed_every_frames": 3, "unknown_every_frames": 4}
    async with running(scenario="echo", faults=faults) as emu, client(emu, strict=False) as c:
        await c.until(ChatCreated)
        await c.configure()
        await c.say("Some garbage please.")
        await c.chat_end()
        malformed = c.events(MalformedEvent)
        unknown = c.events(UnknownEvent)
        typed = len(c.received) - len(malformed) - len(unknown)
        # The garbage after the last typed frame (chat.completed) may still be in flight.
        assert typed // 3 - 1 <= len(malformed) <= typed // 3 and typed // 4 - 1 <= len(unknown) <= typed // 4
        assert len(malformed) >= 5 and len(unknown) >= 4
        assert {u.event_type for u in unknown} == {"emulator.unknown_event"}


@pytest.mark.parametrize(("code", "closes"), [(4000, False), (4100, False), (4101, False), (4027, True)])
async def test_error_injection(code: int, closes: bool) -> None:
    async with session(scenario="echo", faults={"error_code": code, "error_after_frames": 2}) as (_emu, c):
        await c.configure()
        error = await c.until(Error)
        assert error.data.code == code
        if closes:
            await drain_until_closed(c)
        else:
            await c.say("still here")
            assert isinstance(await c.chat_end(), ConversationChatCompleted)


async def test_scenario_turn_faults_apply_to_that_turn_only() -> None:
    scenario = parse_scenario(
        """
        name = "faulty"
        [[turns]]
        keywords = ["forbidden"]
        faults = { error_code = 4101 }
        [[turns]]
        keywords = ["drop"]
        reply = ["This answer is cut short after two audio deltas, and it is long enough for that."]
        faults = { drop_after_audio_deltas = 2 }
        [fallback]
        reply = ["Fine."]
        """,
        "<test>",
    )
    async with running(scenario=scenario) as emu, client(emu) as c:
        await c.until(ChatCreated)
        await c.configure()
        await c.say("forbidden")
        assert (await c.until(Error)).data.code == 4101
        await c.say("hello")
        assert isinstance(await c.chat_end(), ConversationChatCompleted)
        await c.say("drop")
        await drain_until_closed(c)
        assert len([d for d in c.events(ConversationAudioDelta)]) >= 2


async def test_ignore_pings_leaves_client_pings_unanswered() -> None:
    async with session() as (_emu, c):
        await asyncio.wait_for(await c.ws.ping(), 1.0)
    async with session(faults={"ignore_pings": True}) as (_emu, c):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(await c.ws.ping(), 0.3)


async def test_server_closes_after_unanswered_pings() -> None:
    async with running(ping_interval_s=0.05, ping_max_unanswered=2) as emu:
        async with client(emu) as polite:
            await polite.until(ChatCreated)
            await asyncio.sleep(0.3)
            assert emu.active_connections == 1, "a client that answers pings stays connected"
        async with client(emu) as mute:
            protocol = mute.ws.protocol
            original = protocol.send_frame

            def no_pongs(frame: Frame) -> None:
                if frame.opcode is not Opcode.PONG:
                    original(frame)

            protocol.send_frame = no_pongs  # type: ignore[method-assign]
            closed = await drain_until_closed(mute, timeout_s=3.0)
            assert closed.rcvd is not None and closed.rcvd.code == 1011
