"""The turn detector takes any speech classifier, and the end-of-turn corpus is reproducible."""

from __future__ import annotations

import numpy as np

from benchmarks.speech_corpus import build
from tests.audio.helpers import UTTERANCE, read_wav, speech_edges
from voiced.audio.frames import level_dbfs
from voiced.audio.settings import VadSettings
from voiced.audio.vad import SpeechEnded, SpeechStarted, TurnDetector


class LoudnessClassifier:
    """Speech = louder than -45 dBFS: a classifier with no model at all."""

    def __init__(self) -> None:
        self.calls = 0

    def is_speech(self, frame: bytes) -> bool:
        self.calls += 1
        return level_dbfs(frame) > -45.0


def test_detector_uses_the_given_classifier_for_every_frame() -> None:
    signal, _ = read_wav(UTTERANCE)
    classifier = LoudnessClassifier()
    detector = TurnDetector(VadSettings(), classifier=classifier)
    events = []
    n = signal.size // 320
    for i in range(n):
        events += detector.feed(signal[i * 320 : (i + 1) * 320].tobytes(), i * 0.02)
    assert classifier.calls == n
    edges = [e for e in events if isinstance(e, SpeechStarted | SpeechEnded)]
    assert [type(e).__name__ for e in edges] == ["SpeechStarted", "SpeechEnded"]
    start_s, end_s = speech_edges(UTTERANCE.name)
    assert abs(edges[0].timestamp_s - start_s) <= 0.1
    assert abs(edges[1].timestamp_s - end_s) <= 0.1


def test_corpus_is_reproducible_and_its_truth_matches_the_audio() -> None:
    first = build(count=2, seed=3)
    again = build(count=2, seed=3)
    assert [t.name + t.condition for t in first] == ["000quiet", "000noisy", "001quiet", "001noisy"]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.samples, b.samples)
    for turn in first:
        assert turn.speech_start_s < turn.pauses_s[0][0] < turn.speech_end_s
        x = turn.samples.astype(np.float64)
        lead = x[: int(turn.speech_start_s * 16000)]
        tail = x[int(turn.speech_end_s * 16000) + 160 :]
        speech = x[int(turn.speech_start_s * 16000) : int(turn.speech_end_s * 16000)]
        # The speech is clearly louder than the noise around it, in both conditions.
        assert np.sqrt(np.mean(speech**2)) > 4 * max(np.sqrt(np.mean(lead**2)), np.sqrt(np.mean(tail**2)))
        for start, end in turn.pauses_s:
            assert 0.15 <= end - start <= 0.9
