"""The sliding percentile behind the noise floor equals np.percentile over the same window."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.helpers import LIGHTS, UTTERANCE, noise, read_wav
from voiced.audio.frames import LevelMeter, level_dbfs
from voiced.audio.quantile import SlidingPercentile


def _levels_of(signal: np.ndarray) -> list[float]:
    return [level_dbfs(signal[i : i + 320]) for i in range(0, signal.size - 319, 320)]


def _check_exact(values: list[float], window: int, percent: float) -> None:
    sp = SlidingPercentile(window, percent)
    for i, v in enumerate(values):
        sp.push(v)
        expected = float(np.percentile(values[max(0, i + 1 - window) : i + 1], percent))
        got = sp.value()
        assert got is not None
        assert got == pytest.approx(expected, abs=1e-9)
        assert len(sp) == min(i + 1, window)


@pytest.mark.parametrize("path", [UTTERANCE, LIGHTS], ids=["utterance", "lights"])
def test_equals_numpy_on_speech_levels(path: object) -> None:
    signal, _ = read_wav(path)  # type: ignore[arg-type]
    noisy = signal.astype(np.int32) + noise(signal.size / 16000, 16000, rms=100.0, seed=3).astype(np.int32)
    levels = _levels_of(np.clip(noisy, -32768, 32767).astype(np.int16))
    assert len(levels) > 100
    _check_exact(levels, 50, 20.0)


@pytest.mark.parametrize("percent", [0.0, 20.0, 50.0, 95.0, 100.0])
def test_equals_numpy_on_noise_with_ties_and_steps(percent: float) -> None:
    rng = np.random.default_rng(5)
    values = list(np.round(rng.normal(-60, 8, 400), 1))  # rounding makes ties
    values += [-120.0] * 30 + [-20.0] * 30  # digital silence, then a loud step
    _check_exact([float(v) for v in values], 50, percent)


def test_min_count_clear_and_bad_input() -> None:
    sp = SlidingPercentile(10, 20.0, min_count=3)
    sp.push(1.0)
    sp.push(2.0)
    assert sp.value() is None
    sp.push(3.0)
    assert sp.value() == pytest.approx(float(np.percentile([1.0, 2.0, 3.0], 20)))
    sp.clear()
    assert sp.value() is None and len(sp) == 0
    with pytest.raises(ValueError, match="NaN"):
        sp.push(float("nan"))
    with pytest.raises(ValueError):
        SlidingPercentile(0, 20.0)


def test_level_meter_matches_level_dbfs() -> None:
    signal, _ = read_wav(UTTERANCE)
    meter = LevelMeter(320)
    for i in range(0, signal.size - 319, 320):
        frame = signal[i : i + 320].tobytes()
        assert meter.level(frame) == pytest.approx(level_dbfs(frame), abs=1e-9)
    assert meter.level(bytes(640)) == -120.0
    assert meter.level(b"\xff\x7f" * 10) == pytest.approx(level_dbfs(b"\xff\x7f" * 10))
