"""The uplink as the server sees it: appends in capture order, never ahead of what was queued before.

The microphone says a counting signal (every 20 ms frame holds its own index as a constant sample
value) and the codec is PCM, so each append the emulator received names the frame it carries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from tests.agent.harness import Harness, daemon_config, running_daemon
from tests.support.timing import patience_s, until
from voiced.agent.agent import Agent
from voiced.agent.transport import open_connection
from voiced.audio.jitter import JitterBuffer
from voiced.conversation.playout import Playout
from voiced.devices.base import MicFrame
from voiced.devices.memory import MemorySink, MemorySource
from voiced.emulator import Emulator, EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.emulator.server import ReceivedFrame
from voiced.protocol.events import InputAudioBufferAppend

pytestmark = pytest.mark.timeout(60)

FRAME_SAMPLES = 320
APPEND = "input_audio_buffer.append"
PUSH_TO_TALK = {"session.input_codec": "pcm", "session.turn_detection": "client_interrupt"}


def counting_microphone(frames: int = 1500) -> MemorySource:
    """Frame ``k`` (from 1) is ``FRAME_SAMPLES`` samples of value ``k``: quiet, and self-describing."""
    pcm = np.repeat(np.arange(1, frames + 1, dtype=np.int16), FRAME_SAMPLES)
    return MemorySource(pcm, paced=True, after_end="silence")


def frame_index(event: InputAudioBufferAppend) -> int:
    samples = np.frombuffer(base64.b64decode(event.data.delta), dtype=np.int16)
    assert samples.size == FRAME_SAMPLES and np.all(samples == samples[0]), "an append is one whole frame"
    return int(samples[0])


def kinds(received: list[ReceivedFrame]) -> list[str]:
    return [str(getattr(item.event, "event_type", "?")) for item in received]


def indices(received: list[ReceivedFrame]) -> list[int]:
    return [frame_index(item.event) for item in received if isinstance(item.event, InputAudioBufferAppend)]


def agent_of(h: Harness) -> Agent:
    assert h.daemon.agent is not None
    return h.daemon.agent


def settled(emu: Emulator, agent: Agent) -> Callable[[], bool]:
    """Every append the agent counted has arrived."""
    return lambda: len(indices(emu.received)) >= agent.counters.appends_sent


def appends_at_least(agent: Agent, count: int) -> Callable[[], bool]:
    return lambda: agent.counters.appends_sent >= count


def completes_at_least(emu: Emulator, count: int) -> Callable[[], bool]:
    return lambda: kinds(emu.received).count("input_audio_buffer.complete") >= count


def consecutive(frames: list[int]) -> bool:
    return frames == list(range(frames[0], frames[0] + len(frames)))


async def test_two_turns_barge_in_each_complete_follows_its_audio_and_no_frame_overtakes() -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"), time_scale=0.1)
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **PUSH_TO_TALK)
        async with running_daemon(config, counting_microphone()) as h:
            agent = agent_of(h)
            first = len(emu.received)
            for turn in (1, 2):
                h.daemon.push_to_talk(True)
                await until(appends_at_least(agent, 15 * turn), 10.0, "a turn's appends")
                h.daemon.push_to_talk(False)
                await until(
                    completes_at_least(emu, turn),
                    5.0,
                    "a complete",
                )
                if turn == 1:
                    # The second press lands while the first reply is under way and cancels it.
                    await until(lambda: agent.state.value != "awaiting_reply", 10.0, "the reply to start")
            await until(settled(emu, agent), 5.0, "the appends")
            received = emu.received[first:]
            sent = agent.counters.appends_sent
    seen = kinds(received)
    ends = [i for i, kind in enumerate(seen) if kind == "input_audio_buffer.complete"]
    assert len(ends) == 2 and seen[-1] == "input_audio_buffer.complete", seen
    turn_1, turn_2 = indices(received[: ends[0]]), indices(received[ends[0] : ends[1]])
    assert len(turn_1) + len(turn_2) == sent
    for frames in (turn_1, turn_2):
        assert consecutive(frames), "appends out of capture order or lost"
    assert turn_2[0] > turn_1[-1]
    # A control frame queued at the press (the cancel of the reply, if one was under way) went out
    # before the first frame of the turn that the press opened.
    between = seen[ends[0] + 1 : ends[1]]
    controls = [kind for kind in between if kind != "input_audio_buffer.append"]
    if controls:
        assert between.index(controls[-1]) < between.index("input_audio_buffer.append"), between[:5]


async def test_audio_waits_for_chat_updated_then_follows_in_order() -> None:
    # Every server frame arrives 400 ms late: after a resent chat.update the microphone keeps going
    # for 400 ms with the session not ready. Those frames must wait, then go out behind it, in order.
    delay_s = 0.4
    settings = EmulatorSettings(
        port=0, scenario=load_scenario("demo"), faults=FaultSettings(downlink_delay_ms=delay_s * 1000)
    )
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"session.input_codec": "pcm", "session.turn_detection": "server_vad"})
        async with running_daemon(config, counting_microphone()) as h:
            agent = agent_of(h)
            await until(lambda: agent.counters.appends_sent >= 10, 10.0, "the first appends")
            agent.resend_config()
            asked_s = time.monotonic()
            await until(lambda: agent.connected, 10.0, "chat.updated")
            await until(lambda: agent.counters.appends_sent >= 60, 10.0, "more appends")
            await until(settled(emu, agent), 5.0, "the appends")
            received = list(emu.received)
            assert h.daemon.agent is agent and agent.counters.uplink_dropped_frames == 0
    seen = kinds(received)
    update = len(seen) - 1 - seen[::-1].index("chat.update")
    assert seen[0] == "chat.update" and update > 0, seen[:5]
    after = [r for r in received[update + 1 :] if isinstance(r.event, InputAudioBufferAppend)]
    assert after, "no audio after the resent chat.update"
    # Nothing between the update and chat.updated: the first append came a full downlink delay later.
    assert after[0].at_monotonic_s - received[update].at_monotonic_s >= delay_s * 0.75
    assert after[0].at_monotonic_s - asked_s >= delay_s * 0.75
    # The frames captured meanwhile were kept, and everything went out in capture order.
    frames = indices(received)
    assert consecutive(frames), "appends out of capture order or lost"
    assert len(indices(received[update + 1 :])) >= 20


# --- the agent alone on a real connection: frames fed at chosen moments --------------------------------


def mic_frame(index: int) -> MicFrame:
    return MicFrame(np.full(FRAME_SAMPLES, index, dtype=np.int16).tobytes(), time.monotonic())


@contextlib.asynccontextmanager
async def connected_agent(emu: Emulator) -> AsyncIterator[Agent]:
    """An agent serving one real connection to ``emu`` (server VAD, PCM), ready to send audio."""
    config = daemon_config(emu, **{"session.input_codec": "pcm", "session.turn_detection": "server_vad"})
    sink = MemorySink(24000)
    await sink.start()
    agent = Agent(config, Playout(sink, JitterBuffer(24000, config.audio.jitter)))
    ws = await open_connection(config.coze)
    serving = asyncio.create_task(agent.serve_connection(ws))
    try:
        await until(lambda: agent.connected, 10.0, "chat.updated")
        yield agent
    finally:
        await ws.close()
        await asyncio.wait_for(serving, patience_s(10.0))
        await sink.stop()


async def test_frames_held_for_chat_updated_leave_before_any_captured_later() -> None:
    delay_s = 0.3
    settings = EmulatorSettings(
        port=0, scenario=load_scenario("demo"), faults=FaultSettings(downlink_delay_ms=delay_s * 1000)
    )
    async with serve_emulator(settings) as emu, connected_agent(emu) as agent:
        first = len(emu.received)
        agent.resend_config()
        asked_s = time.monotonic()
        for index in (1, 2, 3):
            agent.on_mic_frame(mic_frame(index))
        assert agent.counters.appends_sent == 0, "audio went out before chat.updated"
        # A frame captured in the very step chat.updated arrives, before the sender has run.
        agent.on_ready = lambda: agent.on_mic_frame(mic_frame(4))
        await until(lambda: agent.connected, 5.0, "chat.updated")
        agent.on_mic_frame(mic_frame(5))
        await until(lambda: len(emu.received) >= first + 6, 5.0, "the frames")
        received = emu.received[first:]
        assert agent.counters.appends_sent == 5
        assert len(agent.latency.samples["mic_to_wire"]) >= 5
    assert kinds(received) == ["chat.update"] + [APPEND] * 5
    assert indices(received) == [1, 2, 3, 4, 5]
    assert received[1].at_monotonic_s - asked_s >= delay_s * 0.75, "audio did not wait for chat.updated"
