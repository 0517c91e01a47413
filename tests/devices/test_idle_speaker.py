"""A sound-card speaker with nothing to play closes its stream and reopens it for the next sound, on
real PortAudio against the private headless PulseAudio: the sound server shows no playback stream
while idle, and a reply after idle reaches the speaker whole, from its first sample."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from tests.audio.helpers import TRACES, read_wav
from tests.support.pulse import PulseServer, reinitialise_portaudio
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings
from voiced.conversation.playout import Playout
from voiced.devices.base import DeviceLost
from voiced.devices.portaudio import PortAudioSink
from voiced.devices.settings import DeviceSettings

pytestmark = [pytest.mark.pulse, pytest.mark.timeout(90)]

HOLD_MS = 300


def playback_streams(pulse: PulseServer) -> list[str]:
    """The sound server's playback streams (sink inputs), one line each."""
    out = subprocess.run(
        ["pactl", "list", "short", "sink-inputs"],
        env={**os.environ, **pulse.client_env()},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


async def wait_for_state(sink: PortAudioSink, state: str, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while sink.state != state:
            await asyncio.sleep(0.02)


@asynccontextmanager
async def pumping(hold_ms: int = HOLD_MS) -> AsyncIterator[tuple[PortAudioSink, Playout]]:
    sink = PortAudioSink(DeviceSettings(playback_idle_close_ms=hold_ms), 24000)
    await sink.start()
    playout = Playout(sink, JitterBuffer(24000, JitterSettings()), lead_blocks=5)
    try:
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(playout.run())
            yield sink, playout
            pump.cancel()
    finally:
        await sink.stop()


def assert_played_from_the_first_sample(heard: np.ndarray, reply: np.ndarray) -> None:
    """The speaker's first sound is the reply's first sample, the first 200 ms arrive bit-exact
    (PulseAudio at 100 % volume passes samples through) and the whole reply is there. Only the start
    is compared exactly: a loaded machine can make the sound server itself underflow later on."""
    first = int(np.flatnonzero(reply)[0])
    start = int(np.flatnonzero(heard)[0])
    head = 4800
    assert np.array_equal(heard[start : start + head], reply[first : first + head])
    played = heard[start : start + reply.size - first].astype(np.float64)
    wanted = reply[first : first + played.size].astype(np.float64)
    assert played.size == reply.size - first
    score = float(np.dot(played, wanted) / (np.linalg.norm(played) * np.linalg.norm(wanted) + 1e-9))
    assert score > 0.95, score


async def play(playout: Playout, chat_id: str, reply: np.ndarray) -> None:
    chunk = 6000  # 250 ms deltas at ~6x real time, like the server
    for i in range(0, reply.size, chunk):
        playout.push(chat_id, reply[i : i + chunk].tobytes(), playout.clock())
        await asyncio.sleep(0.04)
    playout.complete(chat_id)


async def test_an_idle_speaker_closes_its_stream_and_replays_from_sample_one(pulse: PulseServer) -> None:
    reply, rate = read_wav(TRACES / "websocket_chat_success.wav")
    reply = reply[: rate * 2]
    async with pumping() as (sink, playout):
        assert sink.state == "open"
        await wait_for_state(sink, "parked")
        assert playback_streams(pulse) == []  # nothing left on the sound server
        assert sink.idle_closes == 1
        callbacks = sink.callbacks
        await asyncio.sleep(0.3)
        assert sink.callbacks == callbacks  # no device thread runs
        sink.check()  # a parked speaker is not a lost one

        await play(playout, "one", reply)
        await playout.wait_idle(timeout_s=20)
        assert sink.reopens == 1
        assert sink.last_reopen_ms is not None and sink.last_reopen_ms < 500
        await wait_for_state(sink, "parked")  # and it closes again after the reply
    assert_played_from_the_first_sample(pulse.speaker_audio(), reply)
    assert sink.underrun_samples == 0


async def test_a_barge_in_after_a_reopen_silences_and_the_next_reply_plays(pulse: PulseServer) -> None:
    reply, rate = read_wav(TRACES / "websocket_chat_success.wav")
    reply = reply[: rate * 3]
    async with pumping() as (sink, playout):
        await wait_for_state(sink, "parked")
        await play(playout, "one", reply)
        await asyncio.sleep(0.5)
        playout.interrupt(None)
        await playout.wait_idle(timeout_s=5)
        heard_after_flush = pulse.speaker_audio().size
        await asyncio.sleep(0.3)
        tail = pulse.speaker_audio()[heard_after_flush:]
        assert np.abs(tail.astype(np.int32)).max(initial=0) < 200  # silence after the flush
        await wait_for_state(sink, "parked")
        second = reply[: rate // 2]
        heard_before_second = pulse.speaker_audio().size  # the first reply's fade has drained
        await play(playout, "two", second)
        await playout.wait_idle(timeout_s=10)
        await asyncio.sleep(0.3)  # the sound server's own buffer reaches the speaker
        assert sink.reopens == 2
    assert_played_from_the_first_sample(pulse.speaker_audio()[heard_before_second:], second)


async def test_a_refused_reopen_is_a_lost_device(pulse: PulseServer) -> None:
    sink = PortAudioSink(DeviceSettings(playback_idle_close_ms=HOLD_MS), 24000)
    await sink.start()
    playout = Playout(sink, JitterBuffer(24000, JitterSettings()))
    try:
        pump = asyncio.create_task(playout.run())
        await wait_for_state(sink, "parked")
        pulse.kill()
        playout.push("one", np.full(4800, 1000, dtype=np.int16).tobytes(), time.monotonic())
        # The pump stops with DeviceLost: the daemon's reopen path takes over from there.
        with pytest.raises(DeviceLost, match="cannot start output device"):
            await asyncio.wait_for(pump, 10)
        assert sink.reopens == 0
    finally:
        await sink.stop()
        pulse.start()
        reinitialise_portaudio()
