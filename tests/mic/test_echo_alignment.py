"""How the echo_cancel stage keeps the reference on the echo when the clocks misbehave (in memory,
fast): capture timestamps that wander do not move the reference under the canceller; a real jump
of the speaker's stream, or a canceller that lost the echo, withdraws the stage's word (the core
then listens half duplex) with one log line, never letting the device's voice through as speech."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import numpy as np
from structlog.testing import capture_logs

from tests.support.echo import FRAME_SAMPLES, Room, replies, simulate
from voiced.audio.frames import Int16Array
from voiced.audio.settings import VadSettings
from voiced.audio.vad import SpeechStarted
from voiced.mic.echo import Canceller, EchoCancelStage, webrtc_canceller
from voiced.mic.settings import EchoSettings
from voiced.mic.stages import StageFrame
from voiced.mic.turn import TurnDetectorStage

WEBRTC = EchoSettings(mode="webrtc", converge_s=1.0)  # the logic, at a short convergence
FRAME_S = 0.02


def drive(
    played: Int16Array,
    mic: Int16Array,
    *,
    captured_at_s: Callable[[int], float] = lambda k: k * FRAME_S,
    speaker_at_s: Callable[[int], float | None] = lambda k: k * FRAME_S,
    canceller_factory: Callable[[], Canceller] = webrtc_canceller,
) -> tuple[EchoCancelStage, list[StageFrame], list[MutableMapping[str, Any]]]:
    """Run ``mic`` through a fresh stage while the device plays ``played`` (both 16 kHz).

    Block ``k`` of ``played`` reaches the tap stamped ``speaker_at_s(k)`` (None: the device did not
    call back); mic frame ``k`` is stamped ``captured_at_s(k)`` and read 20 ms after its nominal
    time. Returns the stage, its output frames and its fallback log lines.
    """
    now = [0.0]
    stage = EchoCancelStage(WEBRTC, clock=lambda: now[0], canceller_factory=canceller_factory)
    out = []
    with capture_logs() as logs:
        for k in range(min(played.size, mic.size) // FRAME_SAMPLES):
            now[0] = k * FRAME_S + FRAME_S
            at_s = speaker_at_s(k)
            if at_s is not None:
                stage.playback_tap.played(played[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES], 16000, at_s)
            frame = StageFrame(
                mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes(),
                captured_at_s(k),
                playback_active=True,
                playback_level_dbfs=-10.0,
            )
            out.append(stage.process(frame, []))
    return stage, out, [e for e in logs if e["event"] == "echo_cancel_fallback"]


def speech_starts(frames: list[StageFrame]) -> int:
    """SpeechStarted events of the turn detector on the frames the stage vouched for (the core
    listens to no others while the device talks)."""
    detector = TurnDetectorStage(VadSettings())
    events: list[object] = []
    for frame in frames:
        if frame.echo_cancelled:
            detector.process(frame, events)
    return sum(isinstance(e, SpeechStarted) for e in events)


def test_wandering_capture_timestamps_do_not_move_the_reference_under_the_canceller() -> None:
    # A sound server's capture timestamps wander by +-15 ms over seconds (and jitter by 2 ms) while
    # the samples, and so the echo's delay, stay put: following them would shift the reference by
    # more than AEC3 tolerates at every turn, and its residual would sound like speech.
    played = replies(3)
    scene = simulate(played, Room(delay_ms=80.0, seed=4))
    rng = np.random.default_rng(1)
    wander = 0.015 * np.sin(np.arange(played.size // FRAME_SAMPLES) * FRAME_S * 2 * np.pi / 4.0)
    jitter = rng.uniform(-0.002, 0.002, wander.size)
    stage, out, fallbacks = drive(
        played, scene.mic, captured_at_s=lambda k: k * FRAME_S + float(wander[k] + jitter[k])
    )
    assert stage.reference.realignments == 0
    assert fallbacks == []
    vouched = np.array([f.echo_cancelled for f in out])
    assert vouched[100:].mean() > 0.95
    assert speech_starts(out) == 0


def test_a_jump_of_the_speakers_stream_withdraws_the_stages_word_until_it_has_reconverged() -> None:
    # The speaker's callback stops for 100 ms mid-reply (an underrun): it played silence meanwhile,
    # and everything after comes 100 ms later, in the room too.
    reply = replies(3)
    gap_frame, gap_frames = 200, 5
    cut = gap_frame * FRAME_SAMPLES
    played = np.concatenate([reply[:cut], np.zeros(gap_frames * FRAME_SAMPLES, np.int16), reply[cut:]])
    scene = simulate(played, Room(delay_ms=80.0, seed=6))

    def speaker_at_s(k: int) -> float | None:
        return None if gap_frame <= k < gap_frame + gap_frames else k * FRAME_S

    stage, out, fallbacks = drive(played, scene.mic, speaker_at_s=speaker_at_s)
    vouched = np.array([f.echo_cancelled for f in out])
    after = gap_frame + gap_frames
    assert vouched[100:gap_frame].all()
    assert stage.reference.resyncs == 1
    # Not vouched while the canceller finds the echo again (the core listens half duplex) ...
    assert not vouched[after : after + 40].any()
    # ... and vouched again once it has heard a second of the device's voice.
    assert vouched[after + 150 :].mean() > 0.9
    # One line: the reference stopped while the device talked (its jump is part of that story).
    assert [line["reason"] for line in fallbacks] == ["stalled"]
    assert speech_starts(out) == 0


class _NoCanceller:
    """A canceller that lost the echo altogether: it hands the microphone on unchanged."""

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array:
        return near

    def reset(self) -> None:
        pass


def test_a_canceller_that_removes_little_of_the_echo_is_not_trusted() -> None:
    played = replies(2)
    scene = simulate(played, Room(delay_ms=80.0, seed=7))
    stage, out, fallbacks = drive(played, scene.mic, canceller_factory=_NoCanceller)
    assert stage.converged  # it heard enough of the device's voice ...
    reduction = stage.echo_reduction_db
    assert reduction is not None and reduction < 3.0
    assert not any(f.echo_cancelled for f in out)  # ... but never vouched for what it let through
    assert stage.distrusted_frames > 0
    assert [line["reason"] for line in fallbacks] == ["diverged"]
