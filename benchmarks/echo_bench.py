"""Echo cancellation at full volume in a simulated room: the canceller, the energy heuristic and
half duplex side by side.

ERLE: echo return loss enhancement of what the turn detector sees (after 1 s), delays 40-200 ms,
with and without 100 ppm drift. Double talk: the user starts mid-reply 6 dB under the echo; the
share detected within 300 ms (and within 1.5 s). Self-interrupts: speech starts per 100 replies
with nobody speaking. CPU: the echo stage's time per 20 ms frame.
"""

from __future__ import annotations

from typing import Any

from benchmarks import BenchReport, Table
from tests.support.echo import MODES, Room, double_talk_trial, erle_db, replies, run_mic_path, simulate

NAME = "echo"
DELAYS_MS = (40.0, 80.0, 120.0, 200.0)


def run(quick: bool) -> BenchReport:
    """Measure the three modes."""
    reply_count = 20 if quick else 100
    trials = 8 if quick else 40
    played = replies(reply_count)
    data: dict[str, Any] = {"erle_db": {}, "modes": {}}
    erle_rows = []
    cpu_ms: list[float] = []
    for delay_ms in DELAYS_MS:
        row: list[Any] = [f"{delay_ms:g} ms"]
        for drift in (0.0, 100.0):
            short = replies(4)
            scene = simulate(short, Room(delay_ms=delay_ms, drift_ppm=drift, seed=int(delay_ms)))
            result = run_mic_path(short, scene.mic, "aec", drift_ppm=drift)
            erle = erle_db(scene.mic, result.out, short)
            cpu_ms.append(result.stage_cpu_s * 1000 / result.cancelled.size)
            data["erle_db"][f"{delay_ms:g}ms_{drift:g}ppm"] = round(erle, 1)
            row.append(erle)
        erle_rows.append(row)
    scene = simulate(played, Room(delay_ms=120.0, seed=5))
    mode_rows = []
    for mode in MODES:
        run_ = run_mic_path(played, scene.mic, mode)
        per_100 = len(run_.started_at_s) * 100 / reply_count
        outcomes = [
            double_talk_trial(mode, room=Room(delay_ms=DELAYS_MS[s % 4], seed=s), seed=s).detected_after_s
            for s in range(trials)
        ]
        fast = sum(1 for d in outcomes if d is not None and d <= 0.3) / trials
        slow = sum(1 for d in outcomes if d is not None and d <= 1.5) / trials
        cpu = sum(cpu_ms) / len(cpu_ms) if mode == "aec" else 0.0
        data["modes"][mode] = {
            "self_interrupts_per_100_replies": per_100,
            "double_talk_detected_300ms": fast,
            "double_talk_detected_1500ms": slow,
            "cpu_ms_per_20ms_frame": round(cpu, 3),
        }
        mode_rows.append([mode, per_100, f"{fast:.0%}", f"{slow:.0%}", cpu])
    return BenchReport(
        tables=[
            Table(
                "ERLE of what the turn detector hears, dB (>= 18 wanted)",
                ["delay", "0 ppm", "100 ppm"],
                erle_rows,
            ),
            Table(
                f"Barge-in at full volume ({reply_count} replies, {trials} double-talk trials)",
                ["mode", "self-interrupts/100", "double talk <=300 ms", "<=1.5 s", "CPU ms/frame"],
                mode_rows,
            ),
        ],
        data=data,
    )
