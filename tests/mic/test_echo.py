"""The echo_cancel stage on a simulated room (in memory, fast): what it cancels, when it vouches
for its output, and how it fails safe."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from structlog.testing import capture_logs

from tests.support.echo import (
    FRAME_SAMPLES,
    Room,
    dbfs,
    double_talk_trial,
    erle_db,
    noise,
    place,
    replies,
    reply_speech,
    run_mic_path,
    simulate,
    to_int16,
    user_speech,
)
from voiced.audio.frames import Int16Array
from voiced.config import load_config
from voiced.mic.echo import EchoCancelStage, EchoReference
from voiced.mic.noise import NoiseSuppressionStage
from voiced.mic.settings import EchoSettings
from voiced.mic.stages import StageFrame, stage_factory

WEBRTC = EchoSettings(mode="webrtc", converge_s=1.0)  # the logic, at a short convergence


@pytest.mark.parametrize("drift_ppm", [0.0, 100.0])
@pytest.mark.parametrize("delay_ms", [40.0, 80.0, 120.0, 200.0])
def test_residual_echo_is_18_db_below_the_echo_after_one_second(delay_ms: float, drift_ppm: float) -> None:
    played = replies(4)
    scene = simulate(played, Room(delay_ms=delay_ms, drift_ppm=drift_ppm, seed=int(delay_ms)))
    run = run_mic_path(played, scene.mic, "aec", settings=WEBRTC, drift_ppm=drift_ppm)
    assert erle_db(scene.mic, run.out, played, from_s=1.0) >= 18.0
    # It vouches for its output once converged, for almost the whole take.
    assert run.cancelled[100:].mean() > 0.95


def test_fifty_replies_at_full_volume_never_interrupt_themselves() -> None:
    played = replies(50)
    scene = simulate(played, Room(delay_ms=120.0, seed=5))
    run = run_mic_path(played, scene.mic, "aec")
    assert run.started_at_s == []


def test_the_energy_heuristic_alone_does_interrupt_itself_in_the_same_room() -> None:
    # The reason for the canceller: the margin heuristic hears the room's echo tail as speech.
    played = replies(10)
    scene = simulate(played, Room(delay_ms=120.0, seed=5))
    assert len(run_mic_path(played, scene.mic, "heuristic").started_at_s) > 0


def test_a_user_talking_over_the_reply_is_heard_and_kept() -> None:
    trials = [
        double_talk_trial("aec", room=Room(delay_ms=(40.0, 120.0, 200.0)[s % 3], seed=s), seed=s)
        for s in range(10)
    ]
    detected = [
        t.detected_after_s for t in trials if t.detected_after_s is not None and t.detected_after_s <= 1.5
    ]
    assert len(detected) == len(trials)
    # The user's voice reaches the turn within a few dB (AEC3 ducks it only while the echo dominates).
    assert all(-6.0 <= t.kept_db <= 3.0 for t in trials)


def test_barge_in_6_db_under_the_echo_is_detected_within_300_ms_in_95_percent() -> None:
    trials = [
        double_talk_trial("aec", room=Room(delay_ms=(40.0, 120.0, 200.0)[s % 3], seed=s), seed=s)
        for s in range(20)
    ]
    fast = [t for t in trials if t.detected_after_s is not None and t.detected_after_s <= 0.3]
    assert len(fast) >= 0.95 * len(trials)


def test_without_the_linear_filter_aec3_alone_hears_a_ducked_user_a_word_late() -> None:
    # double_talk_margin_db = 0 turns the linear filter off: a user AEC3's suppressor ducks (this
    # room and moment) is heard only on the next word; with the filter, on the first.
    room = Room(delay_ms=120.0, seed=13)
    no_filter = EchoSettings(mode="webrtc", double_talk_margin_db=0)
    alone = double_talk_trial("aec", room=room, seed=13, settings=no_filter)
    with_filter = double_talk_trial("aec", room=room, seed=13)
    assert alone.detected_after_s is not None and alone.detected_after_s > 0.3
    assert with_filter.detected_after_s is not None and with_filter.detected_after_s <= 0.3


def test_frames_are_not_vouched_for_before_the_canceller_has_heard_the_device() -> None:
    played = replies(1)
    scene = simulate(played, Room(seed=2))
    run = run_mic_path(played, scene.mic, "aec", settings=EchoSettings(mode="webrtc", converge_s=1.0))
    first_cancelled = int(np.argmax(run.cancelled))
    assert first_cancelled * 0.02 >= 1.0
    assert run.cancelled[first_cancelled:].all() or run.cancelled[first_cancelled:].mean() > 0.9


def _frames(
    stage: EchoCancelStage, mic: Int16Array, start_k: int, count: int, *, active: bool
) -> list[StageFrame]:
    out = []
    for k in range(start_k, start_k + count):
        frame = StageFrame(
            mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes(), k * 0.02, playback_active=active
        )
        out.append(stage.process(frame, []))
    return out


def test_a_stalled_reference_falls_back_with_one_log_line() -> None:
    now = [0.0]
    stage = EchoCancelStage(WEBRTC, clock=lambda: now[0])
    played = replies(3)
    scene = simulate(played, Room(seed=3))
    # The speaker plays (its tap sees every block) for 3 s, then its device stops calling back.
    outputs: list[StageFrame] = []
    with capture_logs() as logs:
        for k in range(played.size // FRAME_SAMPLES):
            now[0] = k * 0.02 + 0.02
            if k < 150:
                stage.playback_tap.played(
                    played[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES], 16000, k * 0.02
                )
            frame = StageFrame(
                scene.mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes(),
                k * 0.02,
                playback_active=True,
            )
            outputs.append(stage.process(frame, []))
    assert all(f.echo_cancelled for f in outputs[60:148])
    stalled = outputs[152:]
    assert stalled and not any(f.echo_cancelled for f in stalled)
    # The frames go on as captured, so the turn detector's level margin applies to the real echo.
    assert stalled[5].pcm == scene.mic[157 * FRAME_SAMPLES : 158 * FRAME_SAMPLES].tobytes()
    lines = [entry for entry in logs if entry["event"] == "echo_cancel_fallback"]
    assert len(lines) == 1 and lines[0]["reason"] == "stalled"


class _SlowCanceller:
    """Stands in for a canceller on a machine too slow for it (nothing real can be made that slow)."""

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        # Busy, not asleep: the stage measures the CPU the canceller itself costs.
        until = time.thread_time() + 0.006
        while time.thread_time() < until:
            pass
        return near

    def reset(self) -> None:
        pass


def test_a_canceller_that_cannot_keep_up_is_bypassed_with_one_log_line() -> None:
    now = [0.0]
    stage = EchoCancelStage(
        EchoSettings(mode="webrtc", converge_s=0.0, max_process_ms=5.0),
        canceller_factory=_SlowCanceller,
        clock=lambda: now[0],
    )
    mic = to_int16(noise(16000, -30.0, 1))
    stage.playback_tap.played(np.full(16000, 1000, dtype=np.int16), 16000, 0.0)
    with capture_logs() as logs:
        outputs = []
        for k in range(40):
            now[0] = k * 0.02 + 0.02
            frame = StageFrame(
                mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes(), k * 0.02, playback_active=True
            )
            outputs.append(stage.process(frame, []))
    assert not any(f.echo_cancelled for f in outputs[-10:])
    assert outputs[-1].pcm == mic[39 * FRAME_SAMPLES : 40 * FRAME_SAMPLES].tobytes()
    assert [e["reason"] for e in logs if e["event"] == "echo_cancel_fallback"] == ["slow"]


class _BrokenCanceller:
    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        raise RuntimeError("native failure")

    def reset(self) -> None:
        pass


def test_a_failing_canceller_hands_frames_on_unchanged() -> None:
    stage = EchoCancelStage(WEBRTC, canceller_factory=_BrokenCanceller, clock=lambda: 0.0)
    frame = StageFrame(b"\x01\x00" * FRAME_SAMPLES, 0.0, playback_active=True)
    with capture_logs() as logs:
        assert stage.process(frame, []) == frame
        assert stage.process(dataclasses.replace(frame, captured_at_s=0.02), []).echo_cancelled is False
    assert len([e for e in logs if e["event"] == "echo_cancel_fallback"]) == 1


def test_the_tap_never_blocks_or_raises_when_the_loop_falls_behind() -> None:
    reference = EchoReference(slots=4)
    block = np.ones(480, dtype=np.int16)
    for k in range(10):
        reference.played(block, 24000, k * 0.02)
    assert reference.dropped_blocks == 6
    assert reference.collect(0.2) == 4
    reference.played(np.ones(100_000, dtype=np.int16), 24000, 0.2)  # longer than a slot: cut, counted
    assert reference.truncated_blocks == 1


def test_the_reference_follows_the_speaker_clock_and_its_resampling() -> None:
    # A 24 kHz speaker whose blocks are heard 50 ms after they are handed over: the reference for a
    # mic frame is what was heard at that frame's time (minus the configured offset).
    reference = EchoReference(delay_offset_s=0.0)
    rate = 24000
    tone = (np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 10000).astype(np.int16)
    for k in range(50):
        reference.played(tone[k * 480 : (k + 1) * 480], rate, 0.05 + k * 0.02)
    reference.collect(1.0)
    got = reference.take(0.05 + 0.5)
    assert got is not None
    expected = (np.sin(2 * np.pi * 440 * (0.5 + np.arange(320) / 16000)) * 10000).astype(np.int16)
    assert np.corrcoef(got.astype(float), expected.astype(float))[0, 1] > 0.99
    # Not played yet: no reference (the stage must not vouch for the frame).
    assert reference.take(2.0) is None


def test_the_stages_are_built_from_the_config() -> None:
    config = load_config(
        None, environ={}, overrides={"audio.echo.mode": "webrtc", "audio.echo.noise_suppression": True}
    )
    echo = stage_factory("echo_cancel")(config)
    assert echo.name == "echo_cancel"
    assert isinstance(echo, EchoCancelStage) and isinstance(echo.playback_tap, EchoReference)
    assert stage_factory("noise_suppression")(config).name == "noise_suppression"


def test_noise_suppression_lowers_steady_noise_and_keeps_speech() -> None:
    stage = NoiseSuppressionStage(level=2)
    voice = user_speech()
    track = place(voice, 5 * 16000, 3 * 16000) + noise(5 * 16000, -40.0, 4)
    mic = to_int16(track)
    out = b"".join(
        stage.process(
            StageFrame(
                mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes(), k * 0.02, echo_cancelled=True
            ),
            [],
        ).pcm
        for k in range(mic.size // FRAME_SAMPLES)
    )
    cleaned = np.frombuffer(out, dtype=np.int16)
    assert dbfs(cleaned[2 * 16000 : 3 * 16000]) < dbfs(mic[2 * 16000 : 3 * 16000]) - 10.0
    speech = slice(3 * 16000, 3 * 16000 + voice.size)
    assert dbfs(cleaned[speech]) > dbfs(mic[speech]) - 3.0
    frame = StageFrame(mic[:FRAME_SAMPLES].tobytes(), 0.0, echo_cancelled=True)
    assert stage.process(frame, []).echo_cancelled


def test_reply_fixture_is_loud_speech() -> None:
    assert dbfs(reply_speech()) > -20.0
