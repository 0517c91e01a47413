"""File and memory devices, factories, errors: real asyncio time, short signals."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.audio.helpers import UTTERANCE, read_wav, sine
from voiced.devices.base import AudioSink, AudioSource, DeviceError, EndOfStream
from voiced.devices.factory import open_sink, open_source
from voiced.devices.memory import MemorySink, MemorySource
from voiced.devices.settings import DeviceSettings
from voiced.devices.wav import WavSink, WavSource

pytestmark = pytest.mark.timeout(30)


async def test_wav_source_fast_delivers_the_file_in_frames_then_end_of_stream() -> None:
    source = open_source(DeviceSettings(), "wav", path=UTTERANCE, paced=False)
    assert isinstance(source, AudioSource)
    await source.start()
    frames = []
    with pytest.raises(EndOfStream):
        while True:
            frames.append((await source.read_frame()).pcm)
    await source.stop()
    expected, _ = read_wav(UTTERANCE)
    data = np.frombuffer(b"".join(frames), dtype=np.int16)
    assert all(len(f) == 640 for f in frames)
    assert np.array_equal(data[: expected.size], expected)
    assert not data[expected.size :].any()


async def test_wav_source_resamples_and_mixes_stereo(tmp_path: Path) -> None:
    tone = sine(440, 0.5, 48000)
    stereo = np.stack([tone, tone], axis=1)
    path = tmp_path / "stereo48k.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(stereo.astype("<i2").tobytes())
    source = WavSource(path, paced=False)
    await source.start()
    first = np.frombuffer((await source.read_frame()).pcm, dtype=np.int16)
    assert first.size == 320
    ten = np.frombuffer(b"".join([(await source.read_frame()).pcm for _ in range(10)]), np.int16)
    spectrum = np.abs(np.fft.rfft(ten))
    assert np.argmax(spectrum) * 16000 / 3200 == pytest.approx(440, abs=5)


async def test_paced_source_runs_in_real_time_and_pads_with_silence_for_the_demo() -> None:
    source = MemorySource(sine(300, 0.1, 16000), paced=True, after_end="silence")
    await source.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    frames = [(await source.read_frame()).pcm for _ in range(15)]
    elapsed = loop.time() - t0
    assert elapsed == pytest.approx(0.3, abs=0.1)
    assert any(frames[0]) and not any(b"".join(frames[5:]))
    source.append(sine(300, 0.02, 16000))
    assert any((await source.read_frame()).pcm)


async def test_a_paced_batch_comes_after_one_wait_with_each_frame_at_its_own_time() -> None:
    signal = (np.arange(16000) % 1000).astype(np.int16)
    batched, single = MemorySource(signal, paced=True), MemorySource(signal, paced=True)
    await batched.start()
    await single.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    batches = [await batched.read_frames(5) for _ in range(4)]
    elapsed = loop.time() - t0
    # Four waits of 100 ms (the last frame of each batch is due then), not twenty of 20 ms.
    assert elapsed == pytest.approx(0.4, abs=0.1)
    assert [len(b) for b in batches] == [5, 5, 5, 5]
    frames = [f for b in batches for f in b]
    assert np.allclose(np.diff([f.captured_at_s for f in frames]), 0.02, atol=1e-9)
    assert frames[-1].captured_at_s + 0.02 <= loop.time() + 0.002  # every frame was due when returned
    # The same audio as frame-by-frame reads.
    one_by_one = [await single.read_frame() for _ in range(20)]
    assert b"".join(f.pcm for f in frames) == b"".join(f.pcm for f in one_by_one)


async def test_a_batch_that_meets_the_end_of_the_signal_returns_what_is_left_then_ends() -> None:
    source = MemorySource(np.ones(320 * 3, dtype=np.int16), paced=False)
    await source.start()
    assert len(await source.read_frames(5)) == 3
    with pytest.raises(EndOfStream):
        await source.read_frames(5)


async def test_loop_mode_repeats() -> None:
    sig = (np.arange(480) % 100).astype(np.int16)
    source = MemorySource(sig, paced=False, after_end="loop")
    await source.start()
    data = np.frombuffer(b"".join([(await source.read_frame()).pcm for _ in range(3)]), np.int16)
    assert np.array_equal(data, np.concatenate([sig, sig])[:960])


async def test_unstarted_source_says_what_to_do() -> None:
    with pytest.raises(DeviceError, match="start"):
        await MemorySource(sine(300, 0.1, 16000)).read_frame()


def test_wav_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="not found"):
        WavSource(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(DeviceError, match="sox"):
        WavSource(bad)


async def test_memory_sink_plays_in_real_time_and_clear_fades() -> None:
    sink = open_sink(DeviceSettings(playback_block_ms=20), "memory", 24000)
    assert isinstance(sink, AudioSink) and isinstance(sink, MemorySink)
    await sink.start()
    tone = sine(500, 0.1, 24000, 20000)
    sink.write(tone)
    assert sink.queued_samples() == tone.size
    await asyncio.sleep(0.25)
    sink.check()
    heard = sink.audio()
    start = int(np.flatnonzero(heard)[0]) - 1
    assert np.array_equal(heard[start : start + tone.size], tone)
    assert sink.underrun_samples > 0  # ran dry after the tone: counted
    sink.write(sine(500, 1.0, 24000, 20000))
    await asyncio.sleep(0.05)
    sink.clear(fade_ms=5)
    await asyncio.sleep(0.1)
    after = sink.audio()
    assert sink.queued_samples() == 0
    steps = np.abs(np.diff(after.astype(np.int32)))
    assert steps.max() < 3000  # the 500 Hz tone steps ~2600 per sample at most; a hard cut would be 20000
    await sink.stop()
    await sink.stop()


async def test_wav_sink_records_what_is_heard(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    sink = open_sink(DeviceSettings(), "wav", 24000, path=path)
    assert isinstance(sink, WavSink)
    await sink.start()
    sink.write(sine(440, 0.1, 24000))
    await asyncio.sleep(0.2)
    await sink.stop()
    data, rate = read_wav(path)
    assert rate == 24000 and data.size >= 2400 and np.abs(data).max() > 1000


async def test_a_recording_in_progress_is_a_valid_wav_of_what_was_played(tmp_path: Path) -> None:
    # The header's length is brought up to date once a second while recording, and at stop.
    path = tmp_path / "live.wav"
    sink = open_sink(DeviceSettings(), "wav", 16000, path=path)
    await sink.start()
    sink.write(sine(440, 0.1, 16000))
    await asyncio.sleep(1.3)
    data, rate = read_wav(path)  # still recording
    assert rate == 16000 and 16000 <= data.size <= 1.3 * 16000
    assert np.abs(data[:1600]).max() > 1000
    await sink.stop()
    final, _ = read_wav(path)
    assert final.size >= data.size and np.array_equal(final[: data.size], data)


async def test_null_sink_drains() -> None:
    sink = open_sink(DeviceSettings(), "null", 16000)
    await sink.start()
    sink.write(np.zeros(320, np.int16))
    await asyncio.sleep(0.08)
    assert sink.queued_samples() == 0
    await sink.stop()


def test_factories_reject_missing_arguments() -> None:
    with pytest.raises(ValueError, match="path"):
        open_source(DeviceSettings(), "wav")
    with pytest.raises(ValueError, match="pcm"):
        open_source(DeviceSettings(), "memory")


async def test_demo_microphone_says_the_utterance_once_then_silence() -> None:
    """The demo's mic: the bundled utterance once, then silence forever; exactly one turn, encoded."""
    from voiced.audio.codec import make_decoder, make_encoder
    from voiced.audio.settings import VadSettings
    from voiced.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted, TurnDetector

    source = open_source(DeviceSettings(), "wav", path=UTTERANCE, paced=False, after_end="silence")
    await source.start()
    detector = TurnDetector(VadSettings())
    encoder = make_encoder("opus", 16000, 20)
    decoder = make_decoder("opus", 16000)
    kinds: list[str] = []
    uplink = bytearray()
    for i in range(500):  # 10 s: the 3 s utterance, then 7 s of silence
        for event in detector.feed((await source.read_frame()).pcm, i * 0.02):
            kinds.append(type(event).__name__)
            audio = event.audio if isinstance(event, SpeechStarted | SpeechAudio) else b""
            for k in range(0, len(audio), 640):
                uplink += decoder.decode(encoder.encode(audio[k : k + 640]))
            if isinstance(event, SpeechEnded):
                assert event.reason == "silence"
    await source.stop()
    assert kinds[0] == "SpeechStarted" and kinds[-1] == "SpeechEnded"
    assert kinds.count("SpeechStarted") == 1 and kinds.count("SpeechEnded") == 1
    assert len(uplink) > 16000 * 2 * 1.5  # at least the 1.5 s of speech went up
    assert decoder.errors == 0


async def test_mixed_audio_is_heard_over_what_the_microphone_captures() -> None:
    base = np.full(16000, 1000, dtype=np.int16)
    source = MemorySource(base, paced=False, after_end="silence")
    await source.start()
    await source.read_frame()
    source.mix(np.full(640, 500, dtype=np.int16))
    mixed = np.frombuffer(b"".join([(await source.read_frame()).pcm for _ in range(3)]), np.int16)
    # Added from the next frame on, over the signal (not queued after it), then the signal alone.
    assert (mixed[:640] == 1500).all() and (mixed[640:] == 1000).all()
