"""The daemon end to end: real loopback WebSocket to the emulator, in-memory mic and speaker."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
import pytest

from tests.agent.harness import daemon_config, rms, running_daemon, talking_daemon, utterance_pcm
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.errors import EXIT_NOPERM, EXIT_UNAVAILABLE
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(90)


def speech_then_silence() -> MemorySource:
    return MemorySource(utterance_pcm(), paced=True, after_end="silence")


def client_events(emu: object, kind: type) -> list[object]:
    return [r.event for r in emu.received if isinstance(r.event, kind)]  # type: ignore[attr-defined]


async def test_client_interrupt_turn_plays_the_reply_and_answers_the_tool_call() -> None:
    async with talking_daemon("demo", emulator={"token": None}) as (emu, h):
        turn = await h.next_turn()
        heard = h.sink.audio()
        counters = h.daemon.agent.counters  # type: ignore[union-attr]
        kinds = [type(r.event).__name__ for r in emu.received]
    # chat.update precedes every append; the turn ends with exactly one complete.
    assert kinds[0] == "ChatUpdate"
    assert kinds.count("InputAudioBufferComplete") == 1
    appends = [r.event for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend)]
    # Only pre-roll + speech is sent (about 3 s of 20 ms Opus packets), not endless silence.
    assert 40 < len(appends) < 250
    assert kinds.index("InputAudioBufferComplete") > kinds.index("InputAudioBufferAppend")
    # The tool output reached the bot: the reply speaks the device's time.
    submits = client_events(emu, ev.ConversationChatSubmitToolOutputs)
    assert len(submits) == 1
    assert turn.tool_calls == ["current_time"]
    assert turn.reply.startswith("It is ") and len(turn.reply) > len("It is .")
    assert turn.heard == "What time is it right now?"
    # Real audio came out of the speaker: seconds of it, clearly above silence.
    loud = np.abs(heard) > 1000
    assert loud.sum() > 0.2 * 24000
    assert turn.played_ms > 500 and not turn.interrupted
    assert turn.speech_end_s is not None and turn.first_sample_s is not None
    assert turn.first_sample_s > turn.speech_end_s
    assert counters.stale_chunks == 0 and counters.invalid_frames == 0


async def test_server_vad_turn_streams_audio_and_plays_the_reply() -> None:
    overrides = {"session.turn_detection": "server_vad", "session.input_codec": "pcm"}
    async with talking_daemon("echo", config=overrides) as (emu, h):
        turn = await h.next_turn()
        heard = h.sink.audio()
    updates = client_events(emu, ev.ChatUpdate)
    assert updates and updates[0].data.turn_detection.type == "server_vad"  # type: ignore[attr-defined]
    # server_vad: no complete; audio streams continuously (speech and the silence after it).
    assert not client_events(emu, ev.InputAudioBufferComplete)
    assert len(client_events(emu, ev.InputAudioBufferAppend)) > 150
    assert rms(heard) > 100
    assert turn.played_ms > 300


async def test_barge_in_flushes_and_no_cancelled_audio_reaches_the_speaker() -> None:
    faults = FaultSettings(stale_deltas_after_cancel=5)
    settings = EmulatorSettings(port=0, scenario=load_scenario("long"), faults=faults, burst_speed_factor=2.0)
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu)
        source = speech_then_silence()
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None

            # Wait until the long reply is audibly playing, then talk over it.
            async def playing() -> None:
                while not (
                    agent.playout.speaking and agent.playout.played_ms(agent.playing_chat_id or "") > 800
                ):
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(playing(), 30)
            cancelled_chat = agent.playing_chat_id
            # Loud speech, well above the playback level, as a user leaning in would be.
            source.append(np.clip(utterance_pcm().astype(np.int32) * 3, -32768, 32767).astype(np.int16))
            interrupted = await h.next_turn()
            assert interrupted.interrupted and interrupted.chat_id == cancelled_chat
            assert interrupted.interrupted_s is not None
            # The device is silent within one block plus the fade (20 + 10 ms, plus scheduling slack).
            interrupt_at = interrupted.interrupted_s + 0.05
            sink = h.sink
            await emu.wait_for(lambda e: isinstance(e, ev.ConversationChatCancel), 5)
            await asyncio.sleep(1.0)
            stale = agent.counters.stale_chunks
            after = [b for t, b in sink.blocks if t > interrupt_at]
    assert stale >= 5  # the emulator kept sending the cancelled chat's audio ...
    # ... and none of it was heard: the speaker stays silent until the next reply starts.
    next_reply_start = next((i for i, b in enumerate(after) if rms(b) > 50), len(after))
    assert next_reply_start >= 10 or next_reply_start == len(after)
    assert interrupted.played_ms > 500


async def test_twenty_drops_mid_reply_each_recover_and_resend_config_first() -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"))
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"session.turn_detection": "server_vad", "session.input_codec": "opus"})
        async with running_daemon(config, MemorySource(utterance_pcm(), paced=True, after_end="loop")) as h:
            for _ in range(20):
                before = emu.connections_total
                # Let audio flow on the new connection, then cut it.
                await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferAppend), 10)
                await asyncio.sleep(0.1)
                await emu.drop_all()

                async def reconnected(before: int = before) -> None:
                    while emu.connections_total <= before or not h.daemon.agent.connected:  # type: ignore[union-attr]
                        await asyncio.sleep(0.01)

                await asyncio.wait_for(reconnected(), 10)
            conversation_id = h.daemon.agent.session.conversation_id  # type: ignore[union-attr]
        by_connection: dict[int, list[object]] = defaultdict(list)
        for r in emu.received:
            by_connection[r.connection_index].append(r.event)
    assert len(by_connection) >= 21
    for index, events in by_connection.items():
        appends = [i for i, e in enumerate(events) if isinstance(e, ev.InputAudioBufferAppend)]
        updates = [i for i, e in enumerate(events) if isinstance(e, ev.ChatUpdate)]
        assert updates, f"connection {index} never sent chat.update"
        if appends:
            assert updates[0] < appends[0], f"connection {index} sent audio before chat.update"
    # The conversation is kept across reconnects.
    later_updates = [e for e in by_connection[max(by_connection)] if isinstance(e, ev.ChatUpdate)]
    if conversation_id:
        chat_config = later_updates[0].data.chat_config
        assert chat_config is not None and chat_config.conversation_id == conversation_id


@pytest.mark.parametrize(
    ("auth_failure", "error_code", "exit_code"),
    [
        ("http", None, EXIT_NOPERM),
        ("event", None, EXIT_NOPERM),
        ("http", 4027, EXIT_UNAVAILABLE),
    ],
)
async def test_fatal_errors_stop_retrying_with_their_exit_code(
    auth_failure: str, error_code: int | None, exit_code: int
) -> None:
    if error_code is None:
        settings = EmulatorSettings(port=0, token="the-right-token", auth_failure=auth_failure)
    else:
        settings = EmulatorSettings(port=0, faults=FaultSettings(error_code=error_code))
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu)
        async with running_daemon(config, speech_then_silence(), wait_ready=False) as h:
            result = await asyncio.wait_for(h.task, 15)
        connections = emu.connections_total
    assert result == exit_code
    assert connections <= 1


async def test_garbage_from_the_server_is_logged_and_the_session_goes_on() -> None:
    faults = FaultSettings(malformed_every_frames=3, unknown_every_frames=4)
    async with talking_daemon("demo", emulator={"faults": faults}) as (emu, h):
        await emu.send_raw_to_all(b"\x00\x01binary")
        await emu.send_raw_to_all(
            '{"event_type":"conversation.audio.delta","data":{"chat_id":"x","content":"@@"}}'
        )
        turn = await h.next_turn()
        counters = h.daemon.agent.counters  # type: ignore[union-attr]
    assert counters.invalid_frames >= 3
    assert counters.unknown_events >= 1
    assert turn.played_ms > 500
