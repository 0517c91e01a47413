"""The daemon reads the microphone several frames per wake-up only while nothing waits for it, and
every frame still reaches the conversation, in order, with its own capture time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.agent.harness import daemon_config, running_daemon, utterance_pcm
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.base import MicFrame
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(60)

FRAME_S = 0.02
LEAD_S = 1.0


@dataclass(frozen=True)
class Read:
    asked: int
    times_s: list[float]


class RecordingSource(MemorySource):
    """A real paced memory microphone that remembers what each read asked for and returned."""

    def __init__(self, pcm: np.ndarray) -> None:
        super().__init__(pcm, paced=True, after_end="silence")
        self.reads: list[Read] = []

    async def read_frames(self, max_frames: int) -> list[MicFrame]:
        frames = await super().read_frames(max_frames)
        self.reads.append(Read(max_frames, [f.captured_at_s for f in frames]))
        return frames


def lead_then_utterance() -> np.ndarray:
    return np.concatenate([np.zeros(int(LEAD_S * 16000), dtype=np.int16), utterance_pcm()])


async def one_turn(**overrides: Any) -> tuple[RecordingSource, list[str], int, TurnTimeline]:
    """Run the daemon through one spoken turn and its reply; (source, appended payloads, frames the
    core saw, the turn)."""
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"), token=None)
    async with serve_emulator(settings) as emu:
        source = RecordingSource(lead_then_utterance())
        config = daemon_config(emu, **{"session.input_codec": "pcm", **overrides})
        async with running_daemon(config, source) as h:
            turn = await h.next_turn()
            agent = h.daemon.agent
            assert agent is not None
        appends = [r.event.data.delta for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend)]
    return source, appends, agent.counters.mic_frames, turn


def delivered(source: RecordingSource) -> list[float]:
    return [t for read in source.reads for t in read.times_s]


async def test_idle_reads_are_batched_and_a_turn_reads_every_frame_as_it_comes() -> None:
    source, batched_appends, core_frames, turn = await one_turn(**{"audio.devices.idle_read_ms": 100})
    speech_start_s, first_sample_s = turn.speech_start_s, turn.first_sample_s
    assert speech_start_s is not None and first_sample_s is not None
    times = delivered(source)
    # Every frame once, in order, each 20 ms after the one before (its own capture time).
    assert np.allclose(np.diff(times), FRAME_S, atol=1e-9)
    assert core_frames == len(times)
    # Before the speech the daemon listens idle: five frames per read.
    before = [r for r in source.reads if r.times_s[-1] < speech_start_s - 0.1]
    assert len(before) >= 5
    assert all(r.asked == 5 and len(r.times_s) == 5 for r in before[1:])
    # Once the turn is open every frame is read on its own until the reply has played.
    first_turn_read = next(i for i, r in enumerate(source.reads) if r.times_s[0] > speech_start_s + 0.2)
    turn_reads = source.reads[first_turn_read : first_turn_read + 50]
    assert turn_reads and all(r.asked == 1 for r in turn_reads)
    # While the reply plays (barge-in must stay as quick) every frame is read on its own too.
    playing = [r for r in source.reads if first_sample_s + 0.05 < r.times_s[0] < first_sample_s + 1.0]
    assert len(playing) > 20 and all(r.asked == 1 for r in playing)
    # The wire carries the same audio as a daemon that reads every frame on its own: the pre-roll
    # and every frame of the turn.
    source_off, unbatched_appends, _, _ = await one_turn(**{"audio.devices.idle_read_ms": 20})
    assert all(r.asked == 1 for r in source_off.reads)
    assert len(batched_appends) > 40
    assert batched_appends == unbatched_appends


async def test_mic_to_wire_counts_the_frames_sent_as_captured_not_the_held_pre_roll() -> None:
    # A turn that starts from idle waits for the rest of its batch before the pre-roll leaves; that
    # wait is the turn detector's (noticed up to idle_read_ms - 20 ms later), not the uplink's.
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"), token=None)
    async with serve_emulator(settings) as emu:
        source = MemorySource(lead_then_utterance(), paced=True, after_end="silence")
        config = daemon_config(emu, **{"session.input_codec": "pcm", "audio.devices.idle_read_ms": 100})
        async with running_daemon(config, source) as h:
            await h.next_turn()
            agent = h.daemon.agent
            assert agent is not None
            counted = len(agent.latency.samples["mic_to_wire"])
            appends = agent.counters.appends_sent
    preroll_frames = config.audio.vad.preroll_ms // 20
    assert counted > 20
    assert 0 < appends - counted <= preroll_frames + 20, (appends, counted)


async def test_server_vad_streams_every_frame_as_it_is_captured() -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"), token=None)
    async with serve_emulator(settings) as emu:
        source = RecordingSource(lead_then_utterance())
        config = daemon_config(
            emu, **{"session.turn_detection": "server_vad", "audio.devices.idle_read_ms": 100}
        )
        async with running_daemon(config, source):
            await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferAppend), 10)
            while len(source.reads) < 30:
                await asyncio.sleep(0.05)
    assert all(r.asked == 1 for r in source.reads)
