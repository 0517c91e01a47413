"""Turn detector: real espeak-ng speech and synthetic speech-like bursts, driven by a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.helpers import LIGHTS, UTTERANCE, noise, read_wav, speech_edges, speechlike
from voiced.audio.frames import Int16Array, level_dbfs
from voiced.audio.settings import VadSettings
from voiced.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted, TurnDetector, TurnEvent

FRAME = 320


def run(
    td: TurnDetector, signal: Int16Array, playback_level_dbfs: float | None = None, t0_s: float = 0.0
) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    for i in range(signal.size // FRAME):
        frame = signal[i * FRAME : (i + 1) * FRAME].tobytes()
        events += td.feed(frame, t0_s + i * 0.02, playback_level_dbfs)
    return events


def edges(events: list[TurnEvent]) -> list[tuple[str, float]]:
    return [(type(e).__name__, e.timestamp_s) for e in events if not isinstance(e, SpeechAudio)]


@pytest.mark.parametrize("path", [UTTERANCE, LIGHTS], ids=["utterance", "lights"])
@pytest.mark.parametrize("aggressiveness", [0, 2, 3])
def test_real_speech_edges_within_100ms(path: object, aggressiveness: int) -> None:
    signal, rate = read_wav(path)  # type: ignore[arg-type]
    assert rate == 16000
    start_s, end_s = speech_edges(path.name)  # type: ignore[attr-defined]
    events = run(TurnDetector(VadSettings(aggressiveness=aggressiveness)), signal)
    found = edges(events)
    assert [name for name, _ in found] == ["SpeechStarted", "SpeechEnded"]
    assert abs(found[0][1] - start_s) <= 0.1
    assert abs(found[1][1] - end_s) <= 0.1
    ended = events[-1]
    assert isinstance(ended, SpeechEnded) and ended.reason == "silence"


def test_audio_out_covers_the_whole_utterance_with_preroll() -> None:
    signal, _ = read_wav(UTTERANCE)
    settings = VadSettings(preroll_ms=300)
    events = run(TurnDetector(settings), signal)
    started = events[0]
    assert isinstance(started, SpeechStarted)
    # Pre-roll (300 ms) before the onset, so the first syllable is not clipped.
    onset_sample = round(started.timestamp_s * 16000)
    audio = started.audio + b"".join(e.audio for e in events if isinstance(e, SpeechAudio))
    first_sample = onset_sample - 300 * 16
    assert audio == signal[first_sample : first_sample + len(audio) // 2].tobytes()
    start_s, end_s = speech_edges(UTTERANCE.name)
    assert first_sample / 16000 < start_s
    assert (first_sample + len(audio) // 2) / 16000 > end_s


def test_silence_and_quiet_noise_never_start() -> None:
    assert run(TurnDetector(VadSettings()), np.zeros(16000 * 3, dtype=np.int16)) == []
    td = TurnDetector(VadSettings())
    assert run(td, noise(3.0, 16000)) == []
    assert not td.in_speech


def test_warmup_ignores_start_of_stream_detections() -> None:
    # webrtcvad flags the first frames of a stream as speech even for quiet noise.
    signal = noise(1.0, 16000, rms=30.0, seed=0)
    assert run(TurnDetector(VadSettings(warmup_ms=200)), signal) == []


def test_synthetic_bursts_give_one_turn_each() -> None:
    burst = speechlike(0.8, 16000, seed=3)
    gap = noise(1.2, 16000)
    signal = np.concatenate([noise(0.5, 16000), burst, gap, burst, gap])
    found = edges(run(TurnDetector(VadSettings(silence_ms=600)), signal))
    assert [n for n, _ in found] == ["SpeechStarted", "SpeechEnded", "SpeechStarted", "SpeechEnded"]
    assert found[0][1] == pytest.approx(0.5, abs=0.1)
    assert found[2][1] == pytest.approx(0.5 + 0.8 + 1.2, abs=0.1)


def test_short_click_does_not_start_speech() -> None:
    # Two frames, below start_frames=4, although webrtcvad alone keeps saying "speech" for ~4 more.
    click = speechlike(0.04, 16000, seed=4)
    signal = np.concatenate([noise(0.5, 16000), click, noise(1.0, 16000)])
    assert edges(run(TurnDetector(VadSettings()), signal)) == []


def test_max_utterance_ends_with_reason_max_length() -> None:
    signal = np.concatenate([noise(0.3, 16000), speechlike(3.0, 16000, seed=5)])
    events = run(TurnDetector(VadSettings(max_utterance_ms=1000)), signal)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert ended and ended[0].reason == "max_length"
    started = next(e for e in events if isinstance(e, SpeechStarted))
    assert ended[0].timestamp_s - started.timestamp_s == pytest.approx(1.0, abs=0.03)


def test_barge_in_ignores_echo_below_the_playback_margin() -> None:
    speech = speechlike(1.0, 16000, seed=6)
    quiet_echo = (speech.astype(np.int32) // 8).astype(np.int16)  # -18 dB: what a speaker leaks back
    signal = np.concatenate([noise(0.3, 16000), quiet_echo, noise(0.5, 16000)])
    playback_dbfs = level_dbfs(speech)
    assert edges(run(TurnDetector(VadSettings()), signal, playback_level_dbfs=playback_dbfs)) == []
    # Without playback the same echo would be taken for speech.
    assert edges(run(TurnDetector(VadSettings()), signal))[0][0] == "SpeechStarted"


def test_barge_in_needs_more_consecutive_frames() -> None:
    settings = VadSettings(start_frames=3, start_window_frames=5, barge_in_start_frames=10)
    # A 120 ms burst: enough to start normally, too short to barge in.
    short = np.concatenate([noise(0.3, 16000), speechlike(0.12, 16000, seed=7), noise(1.0, 16000)])
    assert edges(run(TurnDetector(settings), short))[0][0] == "SpeechStarted"
    assert edges(run(TurnDetector(settings), short, playback_level_dbfs=-60.0)) == []
    # A real interruption, loud over quiet playback, does barge in.
    long = np.concatenate([noise(0.3, 16000), speechlike(0.6, 16000, seed=8), noise(1.0, 16000)])
    found = edges(run(TurnDetector(settings), long, playback_level_dbfs=-60.0))
    assert found[0][0] == "SpeechStarted"
    assert found[0][1] == pytest.approx(0.3, abs=0.1)


def test_wrong_frame_length_raises() -> None:
    td = TurnDetector(VadSettings())
    with pytest.raises(ValueError, match="640 bytes"):
        td.feed(b"\x00" * 100, 0.0)


def test_unsupported_rate_is_rejected_with_advice() -> None:
    with pytest.raises(ValueError, match="resample"):
        TurnDetector(VadSettings(), sample_rate_hz=24000)


def test_reset_returns_to_idle_and_rewarms() -> None:
    td = TurnDetector(VadSettings())
    run(td, np.concatenate([noise(0.3, 16000), speechlike(0.5, 16000)]))
    assert td.in_speech
    td.reset()
    assert not td.in_speech


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        VadSettings(start_frames=7, start_window_frames=6)
    with pytest.raises(ValueError):
        VadSettings(unknown_key=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        VadSettings(barge_in_start_frames=2, start_frames=3)


def test_level_dbfs() -> None:
    assert level_dbfs(np.zeros(320, dtype=np.int16)) == -120.0
    full = np.full(320, 32767, dtype=np.int16)
    assert level_dbfs(full) == pytest.approx(0.0, abs=0.01)
    assert level_dbfs(full.tobytes()) == pytest.approx(0.0, abs=0.01)
