"""Per-frame costs of the hot path, each beside the implementation it replaced (same run, same data).

- turn detector: `TurnDetector.feed` per 20 ms frame on noisy speech; the noise-floor update
  (np.percentile over 50 levels vs the sliding sorted window); the frame level (array conversion vs
  the preallocated meter).
- append: pydantic model + uuid4 + json.dumps vs the preformatted template, for a 640-byte PCM frame
  and a 60-byte Opus packet.
- downlink parse: json.loads + model validation (two passes) vs pydantic's JSON validator (one pass)
  over every received frame of the two recorded sessions.

Figures are microseconds of process CPU per call, the best of several repeats (a hot loop: the live
process pays more per call after each 20 ms sleep, see benchmarks/README.md).
"""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from voiced.audio.frames import LevelMeter, level_dbfs
from voiced.audio.quantile import SlidingPercentile
from voiced.audio.settings import VadSettings
from voiced.audio.vad import TurnDetector
from voiced.protocol.append import append_frame, new_append_id
from voiced.protocol.events import InputAudioBufferAppend, new_event_id, parse_server_frame
from voiced.protocol.parse import parse_server_frame_fast

NAME = "hotpath"
REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "tests" / "fixtures" / "audio" / "lights_16k.wav"
TRACES = REPO / "tests" / "fixtures" / "traces"
TRACE_NAMES = ("websocket_chat_success", "websocket_chat_generate_audio_success")


def _best_us_per_call(fn: Callable[[], int], repeats: int) -> float:
    """Run `fn` (which returns how many calls it made) `repeats` times; best CPU µs per call."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        calls = fn()
        best = min(best, (time.process_time() - started) * 1e6 / max(1, calls))
    return best


def _noisy_speech_frames(seconds: float) -> list[bytes]:
    with wave.open(str(SPEECH)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    reps = int(np.ceil(seconds * 16000 / x.size))
    x = np.tile(x, reps)[: int(seconds * 16000)]
    rng = np.random.default_rng(1)
    noisy = np.clip(x + rng.normal(0, 60, x.size), -32768, 32767).astype("<i2")
    return [noisy[i : i + 320].tobytes() for i in range(0, noisy.size - 319, 320)]


def _vad_rows(quick: bool) -> list[tuple[str, str, float]]:
    frames = _noisy_speech_frames(5.0 if quick else 30.0)
    repeats = 3 if quick else 7

    def feed() -> int:
        td = TurnDetector(VadSettings())
        for k, f in enumerate(frames):
            td.feed(f, k * 0.02)
        return len(frames)

    levels = [level_dbfs(f) for f in frames]

    def floor_numpy() -> int:
        window: list[float] = []
        for v in levels:
            window.append(v)
            del window[:-50]
            float(np.percentile(np.fromiter(window, dtype=np.float64), 20))
        return len(levels)

    def floor_sliding() -> int:
        sp = SlidingPercentile(50, 20.0)
        for v in levels:
            sp.push(v)
            sp.value()
        return len(levels)

    meter = LevelMeter(320)

    def level_array() -> int:
        for f in frames:
            level_dbfs(f)
        return len(frames)

    def level_meter() -> int:
        for f in frames:
            meter.level(f)
        return len(frames)

    return [
        ("turn detector feed (webrtcvad included)", "current", _best_us_per_call(feed, repeats)),
        ("noise floor update", "np.percentile (before)", _best_us_per_call(floor_numpy, repeats)),
        ("noise floor update", "sliding sorted window", _best_us_per_call(floor_sliding, repeats)),
        ("frame level", "level_dbfs (array)", _best_us_per_call(level_array, repeats)),
        ("frame level", "LevelMeter", _best_us_per_call(level_meter, repeats)),
    ]


def _append_rows(quick: bool) -> list[tuple[str, str, float]]:
    n = 2000 if quick else 20000
    repeats = 3 if quick else 7
    rows: list[tuple[str, str, float]] = []
    payloads = (("append 640 B PCM", bytes(range(256)) * 2 + bytes(128)), ("append 60 B Opus", bytes(60)))
    for label, payload in payloads:

        def model(payload: bytes = payload) -> int:
            for _ in range(n):
                InputAudioBufferAppend.from_audio(payload, event_id=new_event_id()).to_frame()
            return n

        def template(payload: bytes = payload) -> int:
            for _ in range(n):
                append_frame(payload, new_append_id())
            return n

        rows.append((label, "pydantic + uuid4 (before)", _best_us_per_call(model, repeats)))
        rows.append((label, "template + counter", _best_us_per_call(template, repeats)))
    return rows


def _received_frames() -> list[str]:
    out: list[str] = []
    for name in TRACE_NAMES:
        lines = (TRACES / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        out += [f for d, f in zip(lines[::2], lines[1::2], strict=True) if d == "receive"]
    return out


def _parse_rows(quick: bool) -> tuple[list[tuple[str, str, float]], dict[str, Any]]:
    frames = _received_frames()
    deltas = [f for f in frames if '"conversation.audio.delta"' in f]
    repeats = 3 if quick else 7
    rows: list[tuple[str, str, float]] = []
    info: dict[str, Any] = {"frames": len(frames), "audio_deltas": len(deltas)}
    for label, corpus in (("parse, every trace frame", frames), ("parse, audio deltas only", deltas)):

        def two_pass(corpus: list[str] = corpus) -> int:
            for f in corpus:
                parse_server_frame(f)
            return len(corpus)

        def one_pass(corpus: list[str] = corpus) -> int:
            for f in corpus:
                parse_server_frame_fast(f)
            return len(corpus)

        rows.append((label, "json.loads + validate (before)", _best_us_per_call(two_pass, repeats)))
        rows.append((label, "validate_json, one pass", _best_us_per_call(one_pass, repeats)))
    info["mean_delta_chars"] = round(sum(map(len, deltas)) / max(1, len(deltas)))
    info["identical_events"] = all(parse_server_frame(f) == parse_server_frame_fast(f) for f in frames)
    return rows, info


def run(quick: bool) -> BenchReport:
    """All three groups; `quick` keeps them to a few seconds."""
    rows = _vad_rows(quick) + _append_rows(quick)
    parse_rows, parse_info = _parse_rows(quick)
    rows += parse_rows
    table = Table(
        "Hot path: CPU µs per call, best of repeats (per 20 ms frame for the detector and appends)",
        ["operation", "implementation", "µs/call"],
        [[op, impl, us] for op, impl, us in rows],
    )
    info = Table(
        "Downlink parse corpus (the two recorded sessions)",
        ["frames", "audio deltas", "mean delta chars", "identical events"],
        [[parse_info["frames"], parse_info["audio_deltas"], parse_info["mean_delta_chars"],
          str(parse_info["identical_events"])]],
    )  # fmt: skip
    data = {
        "us_per_call": [
            {"operation": op, "implementation": impl, "us": round(us, 3)} for op, impl, us in rows
        ],
        "parse_corpus": parse_info,
    }
    return BenchReport(tables=[table, info], data=data)


if __name__ == "__main__":
    for t in run(quick=True).tables:
        print(t.render())
