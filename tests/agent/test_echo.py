"""The echo canceller in the running daemon (audio.echo.mode = "webrtc"), in a closed loop: the
daemon's own speaker is heard by its own microphone through a simulated room (soft-clipping speaker,
delay, room impulse response, clock drift, noise) at the moment it plays."""

from __future__ import annotations

import asyncio
import base64
import shutil

import numpy as np
import pytest

from tests.agent.harness import daemon_config, running_daemon
from tests.support.echo import (
    Room,
    RoomLoop,
    daemon_in_room,
    dbfs,
    talk,
    user_speech,
    wait_state,
)
from tests.support.timing import patience_s
from voiced.conversation.states import TurnState
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.mic.echo import EchoReference
from voiced.protocol import events as ev

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the replies are espeak-ng speech"),
]


async def test_the_daemon_attaches_the_echo_reference_to_its_speaker() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("demo"))) as emu:
        config = daemon_config(emu, **{"audio.echo.mode": "webrtc"})
        source = MemorySource(np.zeros(16000, dtype=np.int16), after_end="silence")
        async with running_daemon(config, source) as harness:
            assert isinstance(harness.sink.tap, EchoReference)


async def test_replies_at_full_volume_heard_through_the_room_never_interrupt_themselves() -> None:
    room = RoomLoop(Room(delay_ms=120.0, drift_ppm=100.0, seed=3))
    async with daemon_in_room(room, "aec") as (daemon, emu):
        result = await talk(daemon, 3)
        sent = _sent_audio(emu, 0)
    assert room.echo_dbfs > -30.0  # the mic heard the replies loud (3 dB under what was played)
    assert result.played == 3
    assert result.interrupts == 0, result.interrupts_by_reason
    assert sent.size == 0  # not a sound of its own voice went up as a user turn


def _sent_audio(emu: object, after: int) -> np.ndarray:
    appends = [r.event for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend)]  # type: ignore[attr-defined]
    pcm = b"".join(base64.b64decode(e.data.delta) for e in appends[after:])
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16)


async def test_the_user_talking_over_a_reply_6_db_under_its_echo_barges_in_and_is_heard() -> None:
    room = RoomLoop(Room(delay_ms=80.0, seed=4))
    voice = user_speech()
    async with daemon_in_room(room, "aec") as (daemon, emu):
        await talk(daemon, 1)  # the canceller converges on the first reply
        agent = daemon.agent
        assert agent is not None
        agent.send_text("Tell me something.")
        await wait_state(daemon, {TurnState.SPEAKING}, 15.0)
        await asyncio.sleep(0.8)
        before = len([r for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend)])
        gain_db = room.echo_dbfs - 6.0 - dbfs(voice)
        room.say(voice, gain_db)
        async with asyncio.timeout(patience_s(3.0)):
            while not agent.counters.interrupts:
                await asyncio.sleep(0.01)
        interrupted = dict(agent.counters.interrupts_by_reason)
        await wait_state(daemon, {TurnState.AWAITING_REPLY, TurnState.SPEAKING}, 10.0)
        sent = _sent_audio(emu, before)
    assert interrupted == {"barge-in": 1}
    # The user's turn reached the emulator: its last second, found in what was sent, within 6 dB of the
    # voice as spoken, 20 ms by 20 ms (AEC3 keeps the voice, not the waveform). The first syllables
    # are still ducked during double talk (README, Echo cancellation), so they are not asserted.
    spoken = _levels(voice * 10 ** (gain_db / 20))[-50:]
    sent_levels = _levels(sent)
    voiced_frames = spoken > spoken.max() - 30.0
    assert sent_levels.size >= spoken.size
    kept = max(
        float(np.mean((np.abs(sent_levels[lag : lag + spoken.size] - spoken) < 6.0)[voiced_frames]))
        for lag in range(sent_levels.size - spoken.size + 1)
    )
    assert kept >= 0.8, kept


def _levels(pcm: np.ndarray) -> np.ndarray:
    frames = pcm[: pcm.size // 320 * 320].astype(np.float64).reshape(-1, 320)
    return np.array([dbfs(f) for f in frames])
