"""Real PortAudio against a private headless PulseAudio: speech in through a virtual mic, audio out
through a virtual speaker, and a sound-server crash in the middle."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest

from tests.audio.helpers import LIGHTS, TRACES, UTTERANCE, read_wav, speech_edges
from tests.support.pulse import PulseServer, reinitialise_portaudio
from tests.support.wakeups import thread_wakeups
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings, VadSettings
from voiced.audio.vad import SpeechEnded, SpeechStarted, TurnDetector
from voiced.conversation.playout import Playout
from voiced.devices.base import DeviceLost, DeviceNotFound
from voiced.devices.listing import list_devices, render_device_table
from voiced.devices.portaudio import PortAudioSink, PortAudioSource
from voiced.devices.settings import DeviceSettings

pytestmark = [pytest.mark.pulse, pytest.mark.timeout(90)]


def locate(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """(offset, normalised cross-correlation) of `needle` inside `haystack`, via FFT."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(h.size + n.size)))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)[: h.size - n.size + 1]
    offset = int(np.argmax(corr))
    seg = h[offset : offset + n.size]
    score = float(np.dot(seg, n) / (np.linalg.norm(seg) * np.linalg.norm(n) + 1e-9))
    return offset, score


@pytest.mark.parametrize("path", [UTTERANCE, LIGHTS], ids=["utterance", "lights"])
async def test_capture_then_turn_detector_finds_the_spoken_segment(pulse: PulseServer, path: object) -> None:
    utterance, _ = read_wav(path)  # type: ignore[arg-type]
    true_start_s, true_end_s = speech_edges(path.name)  # type: ignore[attr-defined]
    source = PortAudioSource(DeviceSettings())
    await source.start()
    try:
        detector = TurnDetector(VadSettings())
        captured: list[bytes] = []
        events: list[SpeechStarted | SpeechEnded] = []
        for _ in range(10):  # let the stream settle before speaking
            captured.append((await source.read_frame()).pcm)
        pulse.say(utterance)
        deadline = time.monotonic() + 20
        while not any(isinstance(e, SpeechEnded) for e in events) and time.monotonic() < deadline:
            frame = (await asyncio.wait_for(source.read_frame(), timeout=5)).pcm
            t_s = len(captured) * 0.02  # capture time of this frame on the stream's own timeline
            captured.append(frame)
            events += [e for e in detector.feed(frame, t_s) if isinstance(e, SpeechStarted | SpeechEnded)]
    finally:
        await source.stop()
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    audio = np.frombuffer(b"".join(captured), dtype=np.int16)
    speech = utterance[round(true_start_s * 16000) : round(true_end_s * 16000)]
    offset, score = locate(audio, speech)
    assert score > 0.99  # the virtual mic is a clean path: what we said is what PortAudio captured
    # The true edges of the speech on the captured stream's timeline.
    start_s = offset / 16000
    end_s = start_s + speech.size / 16000
    assert abs(events[0].timestamp_s - start_s) <= 0.1
    assert abs(events[1].timestamp_s - end_s) <= 0.1


async def test_playout_through_portaudio_reproduces_the_reply(pulse: PulseServer) -> None:
    reply, rate = read_wav(TRACES / "websocket_chat_success.wav")
    reply = reply[: rate * 4]  # 4 s of the real reply is plenty
    sink = PortAudioSink(DeviceSettings(), 24000)
    await sink.start()
    # 100 ms of ring: a loaded CI machine can stall the loop for tens of ms.
    playout = Playout(sink, JitterBuffer(24000, JitterSettings()), lead_blocks=5)
    try:
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(playout.run())
            await asyncio.sleep(0.2)
            chunk = 6000  # 250 ms deltas, sent at ~6x real time like the server does
            for i in range(0, reply.size, chunk):
                playout.push("chat", reply[i : i + chunk].tobytes(), playout.clock())
                await asyncio.sleep(0.04)
            playout.complete("chat")
            await playout.wait_idle(timeout_s=20)
            await asyncio.sleep(0.3)
            pump.cancel()
        sink.check()
    finally:
        await sink.stop()
    heard = pulse.speaker_audio()
    offset, score = locate(heard, reply)
    assert score > 0.99
    assert playout.stats().jitter.underruns == 0
    # No silence was inserted into the device stream while the reply was queued.
    assert sink.underrun_samples == 0
    # PulseAudio at 100 % volume and the same rate passes samples through untouched.
    assert np.array_equal(heard[offset : offset + reply.size], reply)


async def test_sound_server_crash_surfaces_device_lost_and_reopen_works(pulse: PulseServer) -> None:
    source = PortAudioSource(DeviceSettings())
    sink = PortAudioSink(DeviceSettings(), 24000)
    await source.start()
    await sink.start()
    for _ in range(10):
        await source.read_frame()
    sink.check()
    pulse.kill()
    with pytest.raises(DeviceLost):
        async with asyncio.timeout(10):
            while True:
                await source.read_frame()
    with pytest.raises(DeviceLost):
        async with asyncio.timeout(10):
            while True:
                sink.check()
                await asyncio.sleep(0.05)
    await source.stop()
    await sink.stop()
    # The server comes back (systemd restarts it, or the user replugs the card): reopen.
    pulse.start()
    reinitialise_portaudio()
    source = PortAudioSource(DeviceSettings())
    await source.start()
    try:
        frames = [(await asyncio.wait_for(source.read_frame(), timeout=5)).pcm for _ in range(10)]
    finally:
        await source.stop()
    assert all(len(f) == 640 for f in frames)


def test_device_listing_marks_defaults_and_rates(pulse: PulseServer) -> None:
    rows = list_devices()
    assert any(r.is_default_input for r in rows) and any(r.is_default_output for r in rows)
    default_out = next(r for r in rows if r.is_default_output)
    assert 16000 in default_out.output_rates_hz and 48000 in default_out.output_rates_hz
    table = render_device_table(rows)
    assert "default" in table and "16k" in table


async def test_unknown_device_name_lists_the_available_ones(pulse: PulseServer) -> None:
    source = PortAudioSource(DeviceSettings(input_device="no-such-card"))
    with pytest.raises(DeviceNotFound, match="pulse") as err:
        await source.start()
    assert "voiced devices" in str(err.value)


async def test_device_by_name_and_resampling_from_the_card_rate(pulse: PulseServer) -> None:
    # Ask for the card by name; the sink takes 24 kHz and must match whatever the card runs at.
    sink = PortAudioSink(DeviceSettings(output_device="pulse"), 24000)
    await sink.start()
    try:
        assert sink.device_rate_hz in (24000, 48000, 44100)
        sink.write(np.zeros(480, dtype=np.int16))
        await asyncio.sleep(0.1)
        sink.check()
    finally:
        await sink.stop()


async def test_card_at_48k_is_resampled_both_ways(pulse: PulseServer) -> None:
    """A card that runs at 48 kHz: the source still delivers 16 kHz frames, the sink still takes 24 kHz."""
    utterance, _ = read_wav(UTTERANCE)
    source = PortAudioSource(DeviceSettings(), device_rate_hz=48000)
    await source.start()
    try:
        assert source.device_rate_hz == 48000
        for _ in range(10):
            await source.read_frame()
        pulse.say(utterance)
        count = utterance.size // 320 + 25
        frames = [(await asyncio.wait_for(source.read_frame(), timeout=5)).pcm for _ in range(count)]
    finally:
        await source.stop()
    captured = np.frombuffer(b"".join(frames), dtype=np.int16)
    speech_start_s, speech_end_s = speech_edges(UTTERANCE.name)
    speech = utterance[round(speech_start_s * 16000) : round(speech_end_s * 16000)]
    _, score = locate(captured, speech)
    assert score > 0.98  # two band-limited resamplers (PulseAudio's and soxr) in the path

    reply, _ = read_wav(TRACES / "websocket_chat_success.wav")
    reply = reply[: 24000 * 2]
    sink = PortAudioSink(DeviceSettings(), 24000, device_rate_hz=48000)
    await sink.start()
    playout = Playout(sink, JitterBuffer(24000, JitterSettings()))
    try:
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(playout.run())
            playout.push("chat", reply.tobytes(), playout.clock())
            playout.complete("chat")
            await playout.wait_idle(timeout_s=20)
            await asyncio.sleep(0.3)
            pump.cancel()
    finally:
        await sink.stop()
    assert sink.device_rate_hz == 48000
    _, score = locate(pulse.speaker_audio(), reply)
    assert score > 0.98


async def test_capture_times_come_from_the_device_clock(pulse: PulseServer) -> None:
    source = PortAudioSource(DeviceSettings())
    await source.start()
    try:
        frames = []
        for _ in range(60):
            frame = await asyncio.wait_for(source.read_frame(), timeout=5)
            frames.append((frame, time.monotonic()))
    finally:
        await source.stop()
    steps = np.diff([f.captured_at_s for f, _ in frames[10:]])
    # Consecutive frames are 20 ms apart on the device clock, however bursty their delivery was.
    assert np.all(np.abs(steps - 0.02) < 0.005), steps
    assert abs(float(np.mean(steps)) - 0.02) < 0.0005
    for frame, read_at_s in frames[10:]:
        # Captured before it could be read, and not long before.
        assert 0.0 < read_at_s - frame.captured_at_s < 0.5


async def test_capture_in_10_ms_blocks_wakes_the_loop_once_per_frame(pulse: PulseServer) -> None:
    """The capture thread reads whole 20 ms frames however short the device period: 10 ms periods
    cost the event loop 50 wake-ups a second, not 75-100, and the frames keep their device-clock
    times."""
    source = PortAudioSource(DeviceSettings(capture_block_ms=10))
    await source.start()
    try:
        for _ in range(10):  # let the stream settle
            await asyncio.wait_for(source.read_frame(), timeout=5)
        wakeups_before = thread_wakeups()
        frames = [await asyncio.wait_for(source.read_frame(), timeout=5) for _ in range(50)]
        wakeups = thread_wakeups() - wakeups_before
    finally:
        await source.stop()
    assert source.callbacks >= 50
    assert wakeups < 65, wakeups
    steps = np.diff([f.captured_at_s for f in frames])
    assert np.all(np.abs(steps - 0.02) < 0.005), steps


class RecordingTap:
    """A playback tap that keeps what the device was handed (a test double of an echo canceller)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[np.ndarray, int, float]] = []

    def played(self, block: np.ndarray, sample_rate_hz: int, output_time_s: float) -> None:
        self.blocks.append((block.copy(), sample_rate_hz, output_time_s))


async def test_the_playback_tap_sees_exactly_what_the_device_plays(pulse: PulseServer) -> None:
    sink = PortAudioSink(DeviceSettings(), 24000)
    tap = RecordingTap()
    sink.tap = tap
    await sink.start()
    tone = (np.sin(np.arange(24000) * 2 * np.pi * 440 / 24000) * 8000).astype(np.int16)
    try:
        written = 0
        while written < tone.size:
            room = min(sink.writable_samples(), tone.size - written)
            sink.write(tone[written : written + room])
            written += room
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    finally:
        await sink.stop()
    handed = np.concatenate([b for b, _, _ in tap.blocks])
    assert {rate for _, rate, _ in tap.blocks} == {sink.device_rate_hz}
    _, score = locate(handed, tone[2400:12000])
    assert score > 0.99  # the tap carries the very samples sent to the device
    times = [t for _, _, t in tap.blocks]
    assert all(b >= a for a, b in itertools.pairwise(times))
    assert all(t >= 0 for t in times)


def tone(rate_hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def play_on(output_device: str) -> PortAudioSink:
    sink = PortAudioSink(DeviceSettings(output_device=output_device), 24000)
    await sink.start()
    try:
        audio = tone(24000, 1.0)
        written = 0
        while written < audio.size:
            n = min(sink.writable_samples(), audio.size - written)
            sink.write(audio[written : written + n])
            written += n
            await asyncio.sleep(0.01)
        while sink.queued_samples() > 0:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    finally:
        await sink.stop()
    return sink


def energy(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


@pytest.mark.parametrize("spec", ["pulse:usbspk", "USB_Speak", "usbspk"])
async def test_a_sound_server_sink_is_chosen_by_name_or_description(pulse: PulseServer, spec: str) -> None:
    import os

    saved = os.environ.get("PULSE_SINK")
    try:
        await play_on(spec)
    finally:
        os.environ.pop("PULSE_SINK", None) if saved is None else os.environ.update(PULSE_SINK=saved)
    assert energy(pulse.speaker2_audio()) > 1000  # the tone landed in the chosen sink ...
    assert energy(pulse.speaker_audio()) < 50  # ... and not in the default one


def test_voiced_devices_lists_the_servers_sinks_and_sources(pulse: PulseServer) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "voiced", "devices"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert '"pulse:usbspk"' in done.stdout and "USB" in done.stdout
    assert '"pulse:vspk"' in done.stdout and '"pulse:vmic"' in done.stdout
    assert "audio.devices.output_device" in done.stdout


async def test_an_unknown_server_sink_is_refused_with_the_names(pulse: PulseServer) -> None:
    sink = PortAudioSink(DeviceSettings(output_device="pulse:hdmi"), 24000)
    with pytest.raises(DeviceNotFound, match="pulse:usbspk"):
        await sink.start()


async def test_the_not_found_advice_names_a_key_that_exists(pulse: PulseServer) -> None:
    from voiced.config import VoicedConfig

    with pytest.raises(DeviceNotFound) as err:
        await PortAudioSink(DeviceSettings(output_device="no-such"), 24000).start()
    assert "audio.devices.output_device" in str(err.value)
    assert "output_device" in VoicedConfig().audio.devices.model_dump()


async def test_idle_batches_wake_the_loop_once_per_read_and_lose_no_audio(pulse: PulseServer) -> None:
    """Read five frames at a time (idle), then one at a time (a turn): the capture thread reads a
    batch per device read, the loop wakes once per batch, every frame keeps its device-clock time
    and the audio across the switch is whole."""
    utterance, _ = read_wav(UTTERANCE)
    source = PortAudioSource(DeviceSettings(idle_read_ms=100))
    await source.start()
    try:
        for _ in range(3):  # let the stream settle
            await asyncio.wait_for(source.read_frames(5), timeout=5)
        pulse.say(utterance)
        wakeups_before = thread_wakeups()
        batched = [await asyncio.wait_for(source.read_frames(5), timeout=5) for _ in range(12)]
        wakeups = thread_wakeups() - wakeups_before
        single = [await asyncio.wait_for(source.read_frames(1), timeout=5) for _ in range(110)]
    finally:
        await source.stop()
    assert all(len(batch) == 5 for batch in batched)
    assert all(len(one) == 1 for one in single)
    # 60 frames for about 12 wake-ups (a frame at a time costs 60).
    assert wakeups < 30, wakeups
    frames = [f for batch in batched + single for f in batch]
    steps = np.diff([f.captured_at_s for f in frames])
    assert np.all(np.abs(steps - 0.02) < 0.005), steps
    # Within one device read the sample count alone steps the clock: exactly 20 ms (the anchor is
    # only nudged between reads).
    batched_steps = np.diff([f.captured_at_s for batch in batched for f in batch])
    assert np.mean(np.abs(batched_steps - 0.02) < 1e-9) > 0.7, batched_steps
    captured = np.frombuffer(b"".join(f.pcm for f in frames), dtype=np.int16)
    _, score = locate(captured, utterance[: 2 * 16000])
    assert score > 0.98
