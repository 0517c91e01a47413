"""Turn detection over webrtcvad on the 16 kHz mic path.

`TurnDetector.feed` takes one 20 ms frame at a time with its capture timestamp and returns events:

    SpeechStarted(timestamp_s, audio)  -> send `audio` (pre-roll + triggering frames) first
    SpeechAudio(audio)                 -> each further frame while in speech (trailing silence included)
    SpeechEnded(timestamp_s, reason)   -> commit the turn (reason "silence" or "max_length")

Timestamps are those of the caller's clock: `timestamp_s` passed to `feed` is the capture time of the
frame's first sample. SpeechStarted carries the estimated true onset (start of the first voiced frame
of the triggering run); SpeechEnded(silence) carries the end of the last voiced frame.

Barge-in mode (`playback_level_dbfs` is not None, i.e. the device is talking): speech must be voiced
for `barge_in_start_frames` *consecutive* frames, and a frame only counts as voiced when the mic level
exceeds the playback level by `barge_in_margin_db`, so the device's own echo does not interrupt it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from voiced.audio.frames import BYTES_PER_SAMPLE, LevelMeter, level_dbfs
from voiced.audio.quantile import SlidingPercentile
from voiced.audio.settings import VadSettings

__all__ = [
    "SpeechAudio",
    "SpeechClassifier",
    "SpeechEnded",
    "SpeechStarted",
    "TurnDetector",
    "TurnEvent",
    "WebRtcClassifier",
    "level_dbfs",
    "make_classifier",
]

_WEBRTC_RATES_HZ = (8000, 16000, 32000, 48000)
_WEBRTC_FRAMES_MS = (10, 20, 30)
_NOISE_FLOOR_FRAMES = 50
_NOISE_FLOOR_PERCENT = 20.0
_END_LOOKBACK_FRAMES = 15
_MIN_FLOOR_FRAMES = 5
_VOICED_ABOVE_FLOOR_DB = 6.0
_END_ABOVE_FLOOR_DB = 12.0
_END_MAX_REFINE_S = 0.3


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began at `timestamp_s` (estimated onset). `audio` is pre-roll + the triggering frames."""

    timestamp_s: float
    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """One more frame of the ongoing utterance."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The utterance ended at `timestamp_s`; the caller should commit the turn."""

    timestamp_s: float
    reason: Literal["silence", "max_length"]


TurnEvent = SpeechStarted | SpeechAudio | SpeechEnded


class SpeechClassifier(Protocol):
    """Says whether one frame (s16le mono at the detector's rate and frame size) contains speech.

    The turn detector calls `is_speech` for every frame in order, so a classifier may keep state.
    """

    def is_speech(self, frame: bytes) -> bool:
        """True when the frame is speech."""
        ...


class WebRtcClassifier:
    """webrtcvad (GMM, ~15 us per 20 ms frame): `aggressiveness` 0 lets most sound through, 3 is
    the strictest. It holds "speech" for ~100 ms after any sound; the detector's energy gate trims that."""

    def __init__(self, aggressiveness: int, sample_rate_hz: int) -> None:
        import webrtcvad  # noqa: PLC0415  (small C extension; imported here to keep module import cheap)

        self.sample_rate_hz = sample_rate_hz
        self._vad: Any = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes) -> bool:
        """webrtcvad's decision for the frame."""
        return bool(self._vad.is_speech(frame, self.sample_rate_hz))


def make_classifier(settings: VadSettings, sample_rate_hz: int) -> SpeechClassifier:
    """The classifier for `settings` (webrtcvad: the neural VADs measured no better per turn and cost
    100-400x its CPU, see benchmarks/eot_bench.py)."""
    return WebRtcClassifier(settings.aggressiveness, sample_rate_hz)


class TurnDetector:
    """Stateful turn detector; feed it every mic frame in order (see the module docstring)."""

    def __init__(
        self,
        settings: VadSettings,
        sample_rate_hz: int = 16000,
        frame_ms: int = 20,
        classifier: SpeechClassifier | None = None,
    ) -> None:
        if sample_rate_hz not in _WEBRTC_RATES_HZ:
            raise ValueError(
                f"webrtcvad supports {_WEBRTC_RATES_HZ} Hz, got {sample_rate_hz} (resample the mic to 16000)"
            )
        if frame_ms not in _WEBRTC_FRAMES_MS:
            raise ValueError(f"webrtcvad supports frames of {_WEBRTC_FRAMES_MS} ms, got {frame_ms}")
        self.settings = settings
        self.sample_rate_hz = sample_rate_hz
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        self.frame_bytes = self.frame_samples * BYTES_PER_SAMPLE
        self._frame_s = frame_ms / 1000.0
        # `classifier` replaces webrtcvad (the end-of-turn benchmark evaluates other models this way).
        self._vad = classifier or make_classifier(settings, sample_rate_hz)
        self._preroll_frames = settings.preroll_ms // frame_ms
        self._warmup_frames = -(-settings.warmup_ms // frame_ms)
        self._silence_frames = -(-settings.silence_ms // frame_ms)
        self._max_frames = settings.max_utterance_ms // frame_ms
        window = max(settings.start_window_frames, settings.barge_in_start_frames)
        # (timestamp_s, frame, voiced, level) for the pre-roll plus the start window: bounded by
        # construction.
        self._recent: deque[tuple[float, bytes, bool, float]] = deque(maxlen=self._preroll_frames + window)
        # Voiced flags of the last start_window_frames frames and their running count, so the start
        # condition costs O(1) per frame.
        self._window: deque[bool] = deque(maxlen=settings.start_window_frames)
        self._window_voiced = 0
        self._meter = LevelMeter(self.frame_samples)
        # Noise floor over recent idle frames, and (timestamp_s, level) of the utterance's last
        # frames: webrtcvad keeps saying "speech" for ~100 ms after the voice stops, so the end edge
        # is refined to the last frame that stands clearly above the noise floor.
        self._floor = SlidingPercentile(_NOISE_FLOOR_FRAMES, _NOISE_FLOOR_PERCENT, _MIN_FLOOR_FRAMES)
        self._tail: deque[tuple[float, float]] = deque(maxlen=self._silence_frames + _END_LOOKBACK_FRAMES)
        self.reset()

    def reset(self) -> None:
        """Forget everything (e.g. after reopening the mic); warm-up applies again."""
        self._recent.clear()
        self._clear_window()
        self._floor.clear()
        self._tail.clear()
        self._frames_seen = 0
        self._in_speech = False
        self._consecutive_voiced = 0
        self._silence_run = 0
        self._silence_started_s = 0.0
        self._utterance_frames = 0
        self.voiced_frames = 0

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and SpeechEnded."""
        return self._in_speech

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The current noise floor (20th percentile of recent idle frame levels), None until known."""
        return self._floor.value()

    def _clear_window(self) -> None:
        self._window.clear()
        self._window_voiced = 0

    def _is_voiced(self, frame: bytes, level: float, playback_level_dbfs: float | None) -> bool:
        # Always run webrtcvad, even in warm-up: its noise estimate adapts over the first frames, and
        # skipping them would only move the spurious start-of-stream detections past the warm-up.
        speech = self._vad.is_speech(frame)
        if not speech or self._frames_seen <= self._warmup_frames:
            return False
        # webrtcvad holds "speech" for ~4 frames after any sound; requiring some energy above the
        # noise floor keeps a click from looking like 100 ms of voice and sharpens both edges.
        floor = self._floor.value()
        if floor is not None and level < floor + _VOICED_ABOVE_FLOOR_DB:
            return False
        if playback_level_dbfs is not None:
            return level >= playback_level_dbfs + self.settings.barge_in_margin_db
        return True

    def feed(
        self,
        frame: bytes,
        timestamp_s: float,
        playback_level_dbfs: float | None = None,
        *,
        start_frames: int | None = None,
    ) -> list[TurnEvent]:
        """Process one frame captured at `timestamp_s`; return the events it causes (often none).

        Raises ValueError when `frame` is not exactly one frame of s16le at the configured rate.
        Pass `playback_level_dbfs` (the current output level) while the device is talking.
        `start_frames` replaces `settings.start_frames` for this frame (outside barge-in mode): pass
        fewer while an echo canceller ducks a user talking over the device.
        """
        if len(frame) != self.frame_bytes:
            raise ValueError(
                f"TurnDetector takes {self.frame_ms} ms frames of {self.frame_bytes} bytes "
                f"({self.sample_rate_hz} Hz s16le mono), got {len(frame)} bytes"
            )
        self._frames_seen += 1
        level = self._meter.level(frame)
        voiced = self._is_voiced(frame, level, playback_level_dbfs)
        if voiced:
            self.voiced_frames += 1
        if self._in_speech:
            self._tail.append((timestamp_s, level))
            return self._feed_in_speech(frame, timestamp_s, voiced)
        if not voiced:
            self._floor.push(level)
        self._recent.append((timestamp_s, frame, voiced, level))
        if len(self._window) == self._window.maxlen:
            self._window_voiced -= self._window[0]
        self._window.append(voiced)
        self._window_voiced += voiced
        self._consecutive_voiced = self._consecutive_voiced + 1 if voiced else 0
        if not voiced or not self._start_condition(playback_level_dbfs is not None, start_frames):
            return []
        return [self._start(barge_in=playback_level_dbfs is not None)]

    def _start_condition(self, barge_in: bool, start_frames: int | None) -> bool:
        if barge_in:
            return self._consecutive_voiced >= self.settings.barge_in_start_frames
        return self._window_voiced >= (start_frames or self.settings.start_frames)

    def _start(self, barge_in: bool) -> SpeechStarted:
        recent = list(self._recent)
        if barge_in:
            run = self._consecutive_voiced
            first_voiced = len(recent) - run
        else:
            window_start = max(0, len(recent) - self.settings.start_window_frames)
            first_voiced = next(i for i in range(window_start, len(recent)) if recent[i][2])
        onset_s = recent[first_voiced][0]
        keep_from = max(0, first_voiced - self._preroll_frames)
        audio = b"".join(f for _, f, _, _ in recent[keep_from:])
        self._in_speech = True
        self._silence_run = 0
        self._utterance_frames = len(recent) - first_voiced
        self._recent.clear()
        self._clear_window()
        self._tail.clear()
        self._tail.extend((ts, level) for ts, _, _, level in recent[first_voiced:])
        self._consecutive_voiced = 0
        return SpeechStarted(timestamp_s=onset_s, audio=audio)

    def _feed_in_speech(self, frame: bytes, timestamp_s: float, voiced: bool) -> list[TurnEvent]:
        self._utterance_frames += 1
        events: list[TurnEvent] = [SpeechAudio(frame)]
        if voiced:
            self._silence_run = 0
        else:
            if self._silence_run == 0:
                self._silence_started_s = timestamp_s
            self._silence_run += 1
        if self._silence_run >= self._silence_frames:
            events.append(SpeechEnded(timestamp_s=self._refined_end_s(), reason="silence"))
            self._end()
        elif self._utterance_frames >= self._max_frames:
            events.append(SpeechEnded(timestamp_s=timestamp_s + self._frame_s, reason="max_length"))
            self._end()
        return events

    def _refined_end_s(self) -> float:
        coarse = self._silence_started_s
        floor = self._floor.value()
        if floor is None:
            return coarse
        threshold = floor + _END_ABOVE_FLOOR_DB
        for ts, level in reversed(self._tail):
            if ts < coarse - _END_MAX_REFINE_S:
                break
            if level >= threshold:
                return min(coarse, ts + self._frame_s)
        return max(coarse - _END_MAX_REFINE_S, coarse - self._frame_s * _END_LOOKBACK_FRAMES)

    def _end(self) -> None:
        self._in_speech = False
        self._silence_run = 0
        self._utterance_frames = 0
        self._consecutive_voiced = 0
        self._recent.clear()
        self._clear_window()
