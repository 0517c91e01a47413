"""Wake word benchmarks on the synthesized corpus (``benchmarks.wake_corpus``).

1. Detection rate on the positive set, per condition (clean, pink noise at 10 dB SNR, reverberant
   room), each clip through a fresh ``wake_word`` stage as the daemon builds it (the model's own
   threshold and window: nothing is tuned on this corpus).
2. Detection latency: from the end of "okay nabu" (clips with the wake word alone) to the frame on
   which the stage reported it.
3. False wakes per hour of negative speech, the negative clips streamed back to back through one
   stage, as a device listening all day would hear them.
4. CPU per second of listening (ms of one core per s of audio, process time) with the default wake
   word and with all four bundled models at once.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from benchmarks.wake_corpus import LEAD_S, RATE_HZ, TRAIL_S, Clip, negatives, positives
from voiced.conversation.settings import ListenSettings
from voiced.mic.stages import StageFrame, WakeDetected
from voiced.mic.wake import WakeWordStage, build_stage

NAME = "wake"
FRAME_SAMPLES = 320
ALL_BUNDLED = ["okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"]


def run_stage(stage: WakeWordStage, pcm: np.ndarray, start_s: float = 0.0) -> list[WakeDetected]:
    """Feed ``pcm`` in 20 ms frames (captured_at_s from ``start_s``); the wakes reported."""
    events: list[object] = []
    data = pcm.astype("<i2").tobytes()
    step = FRAME_SAMPLES * 2
    for i in range(0, len(data) - step + 1, step):
        stage.process(StageFrame(data[i : i + step], start_s + i / 2 / RATE_HZ), events)
    return [e for e in events if isinstance(e, WakeDetected)]


def detection(clips: list[Clip]) -> tuple[Table, dict[str, Any]]:
    """Detection rate per condition and the latency after the end of the wake phrase."""
    settings = ListenSettings()
    stage = build_stage(settings)
    per: dict[str, list[bool]] = {}
    per_voice: dict[str, list[bool]] = {}
    latencies_ms: list[float] = []
    missed: list[str] = []
    for clip in clips:
        stage.reset()
        wakes = run_stage(stage, clip.pcm)
        per.setdefault(clip.condition, []).append(bool(wakes))
        per_voice.setdefault(clip.voice, []).append(bool(wakes))
        if not wakes:
            missed.append(clip.name)
        elif "_wake_" in clip.name:
            phrase_end_s = clip.seconds - TRAIL_S
            latencies_ms.append((wakes[0].detected_at_s + FRAME_SAMPLES / RATE_HZ - phrase_end_s) * 1000)
    table = Table(
        "Detection on the positive set (okay_nabu, model defaults)",
        ["condition", "clips", "detected", "rate %"],
    )
    data: dict[str, Any] = {"by_condition": {}}
    for condition, hits in per.items():
        rate = 100.0 * sum(hits) / len(hits)
        table.rows.append([condition, len(hits), sum(hits), rate])
        data["by_condition"][condition] = {"clips": len(hits), "detected": sum(hits), "rate_pct": rate}
    total = [h for hits in per.values() for h in hits]
    data["rate_pct"] = 100.0 * sum(total) / len(total)
    table.rows.append(["all", len(total), sum(total), data["rate_pct"]])
    data["missed"] = missed[:40]
    data["by_voice"] = {}
    for voice, hits in per_voice.items():
        rate = 100.0 * sum(hits) / len(hits)
        table.rows.append([f"voice {voice}", len(hits), sum(hits), rate])
        data["by_voice"][voice] = rate
    if latencies_ms:
        data["latency_after_phrase_ms"] = {
            "p50": statistics.median(latencies_ms),
            "max": max(latencies_ms),
            "n": len(latencies_ms),
        }
        table.rows.append(
            [
                "latency after 'nabu' (ms) p50/max",
                len(latencies_ms),
                f"{statistics.median(latencies_ms):.0f}",
                f"{max(latencies_ms):.0f}",
            ]
        )
    return table, data


def false_wakes(clips: list[Clip]) -> tuple[Table, dict[str, Any]]:
    """False wakes per hour of the negative clips streamed back to back through one stage."""
    stage = build_stage(ListenSettings())
    gap = np.zeros(int(LEAD_S * RATE_HZ), dtype=np.int16)
    stream = np.concatenate([part for clip in clips for part in (clip.pcm, gap)])
    wakes = run_stage(stage, stream)
    hours = stream.size / RATE_HZ / 3600
    table = Table("False wakes on the negative set", ["speech (min)", "false wakes", "per hour"])
    table.rows.append([hours * 60, len(wakes), len(wakes) / hours])
    return table, {
        "negative_minutes": hours * 60,
        "false_wakes": len(wakes),
        "false_wakes_per_hour": len(wakes) / hours,
        "at_s": [round(w.detected_at_s, 2) for w in wakes][:40],
    }


def cpu(clips: list[Clip], quick: bool) -> tuple[Table, dict[str, Any]]:
    """ms of CPU per second of listening, for one and for all four bundled models."""
    audio = np.concatenate([clip.pcm for clip in clips])
    if quick:
        audio = audio[: 60 * RATE_HZ]
    table = Table("CPU per second of listening (one core, process time)", ["models", "ms CPU / s audio"])
    data: dict[str, Any] = {}
    for words in (["okay_nabu"], ALL_BUNDLED):
        stage = build_stage(ListenSettings(wake_words=words))
        started = time.process_time()
        run_stage(stage, audio)
        used_s = time.process_time() - started
        ms_per_s = used_s * 1000 / (audio.size / RATE_HZ)
        table.rows.append([", ".join(words), ms_per_s])
        data[f"{len(words)}_models_ms_per_s"] = ms_per_s
    return table, data


def run(quick: bool) -> BenchReport:
    """Build the corpus and measure (quick: the smaller corpus, a minute of CPU audio)."""
    pos = positives(quick)
    neg = negatives(quick)
    t1, d1 = detection(pos)
    t2, d2 = false_wakes(neg)
    t3, d3 = cpu(neg, quick)
    return BenchReport(
        [t1, t2, t3],
        {
            "corpus": {"positive_clips": len(pos), "negative_clips": len(neg)},
            "detection": d1,
            "false_wakes": d2,
            "cpu": d3,
        },
    )


if __name__ == "__main__":
    report = run(quick=True)
    for table in report.tables:
        print(table.render())
        print()
