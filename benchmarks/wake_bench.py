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
5. Wake to first append, the whole daemon: ``voiced``'s daemon in ``wake_word`` mode against the
   emulator on loopback, the demo's "Okay Nabu, what time is it?" played into its (paced, in-memory)
   microphone. From the end of "nabu" in the recording to the wake (the device state turning from
   sleeping to listening), and from the wake to the first ``input_audio_buffer.append`` the emulator
   receives, for local turn detection and for the server's VAD.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from benchmarks.wake_corpus import LEAD_S, RATE_HZ, TRAIL_S, Clip, negatives, positives
from tests.agent.harness import daemon_config, running_daemon
from voiced.agent.status import DeviceState
from voiced.conversation.settings import ListenSettings
from voiced.devices.memory import MemorySource
from voiced.devices.wav import read_wav_mono
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.log import configure as configure_logging
from voiced.mic.stages import StageFrame, WakeDetected
from voiced.mic.wake import WakeWordStage, build_stage
from voiced.protocol import events as ev

NAME = "wake"
FRAME_SAMPLES = 320
ALL_BUNDLED = ["okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"]
#: In the demo's wake utterance "Okay Nabu" ends here; "what time is it?" starts at 1.76 s.
WAKE_UTTERANCE_NABU_END_S = 1.31


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


def wake_utterance() -> np.ndarray:
    """The demo's "Okay Nabu, what time is it?" (16 kHz mono)."""
    pcm, rate = read_wav_mono(Path(str(resources.files("voiced") / "assets" / "wake_utterance_16k.wav")))
    assert rate == RATE_HZ
    return pcm


async def _one_wake(turn_detection: str) -> tuple[float, float]:
    """One daemon, one utterance: (end of "nabu" -> wake, wake -> first append), in ms."""
    source = MemorySource(np.zeros(0, dtype=np.int16), paced=True, after_end="silence")
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"listen.mode": "wake_word", "session.turn_detection": turn_detection})
        async with running_daemon(config, source) as h:
            woken = asyncio.get_running_loop().create_future()

            def on_state(state: DeviceState, detail: str) -> None:
                if state is DeviceState.LISTENING and not woken.done():
                    woken.set_result(time.monotonic())

            h.daemon.status.subscribe(on_state)
            await asyncio.sleep(0.3)  # asleep, the microphone streaming silence
            # The paced source starts the utterance at its next 20 ms frame: within 20 ms of now.
            started_s = time.monotonic()
            source.append(wake_utterance())
            wake_s: float = await asyncio.wait_for(woken, 10.0)
            await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferAppend), 10.0)
            first = next(r for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend))
    nabu_end_s = started_s + WAKE_UTTERANCE_NABU_END_S
    return (wake_s - nabu_end_s) * 1000, (first.at_monotonic_s - wake_s) * 1000


def wake_to_append(quick: bool) -> tuple[Table, dict[str, Any]]:
    """The daemon's wake and first-append latency, per turn detection, over a few runs."""
    configure_logging("error", "json", stream=io.StringIO())
    runs = 2 if quick else 5
    table = Table(
        "Wake to first append, the whole daemon against the emulator (median of runs, ms)",
        ["turn detection", "runs", "'nabu' end -> wake", "wake -> first append", "'nabu' end -> append"],
    )
    data: dict[str, Any] = {}
    for turn_detection in ("client_interrupt", "server_vad"):
        measured = [asyncio.run(_one_wake(turn_detection)) for _ in range(runs)]
        to_wake = statistics.median(m[0] for m in measured)
        to_append = statistics.median(m[1] for m in measured)
        total = statistics.median(m[0] + m[1] for m in measured)
        table.rows.append([turn_detection, runs, to_wake, to_append, total])
        data[turn_detection] = {
            "runs": runs,
            "nabu_end_to_wake_ms": to_wake,
            "wake_to_first_append_ms": to_append,
            "nabu_end_to_first_append_ms": total,
            "wake_to_first_append_max_ms": max(m[1] for m in measured),
        }
    return table, data


def run(quick: bool) -> BenchReport:
    """Build the corpus and measure (quick: the smaller corpus, a minute of CPU audio, fewer runs)."""
    pos = positives(quick)
    neg = negatives(quick)
    t1, d1 = detection(pos)
    t2, d2 = false_wakes(neg)
    t3, d3 = cpu(neg, quick)
    t4, d4 = wake_to_append(quick)
    return BenchReport(
        [t1, t2, t3, t4],
        {
            "corpus": {"positive_clips": len(pos), "negative_clips": len(neg)},
            "detection": d1,
            "false_wakes": d2,
            "cpu": d3,
            "wake_to_first_append": d4,
        },
    )


if __name__ == "__main__":
    report = run(quick=True)
    for table in report.tables:
        print(table.render())
        print()
