"""Echo cancellation at full volume in a simulated room: the canceller, the energy heuristic and
half duplex side by side.

ERLE: echo return loss enhancement of what the turn detector sees (after 1 s), delays 40-200 ms,
with and without 100 ppm drift. Double talk: the user starts mid-reply 6 dB under the echo; the
share detected within 300 ms (and within 1.5 s; and within 300 ms when the speaker's clock runs
100 ppm fast). Self-interrupts: speech starts per 100 replies
with nobody speaking. CPU: the echo stage's time per 20 ms frame.

Daemon level: the real daemon against the emulator, its own speaker heard by its own microphone
through the room in real time (tests.support.echo.RoomLoop), asked for N replies one after the
other with nobody speaking: interrupts and the turns it sent up on its own voice, per 100 replies.
The three modes run side by side on one event loop (each reply plays in real time).
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks import BenchReport, Table
from tests.support.echo import (
    MODES,
    Mode,
    Room,
    RoomLoop,
    daemon_in_room,
    double_talk_trial,
    erle_db,
    replies,
    run_mic_path,
    simulate,
    talk,
)
from voiced.mic.settings import EchoSettings
from voiced.protocol import events as ev

NAME = "echo"
DELAYS_MS = (40.0, 80.0, 120.0, 200.0)


async def daemon_replies(mode: Mode, count: int) -> dict[str, Any]:
    """``count`` replies of the real daemon in a closed-loop room, nobody speaking."""
    room = RoomLoop(Room(delay_ms=120.0, drift_ppm=100.0, seed=11))
    async with daemon_in_room(room, mode) as (daemon, emu):
        result = await talk(daemon, count)
        turns = sum(1 for r in emu.received if isinstance(r.event, ev.InputAudioBufferComplete))
    return {
        "replies": result.played,
        "interrupts": result.interrupts,
        "interrupts_by_reason": result.interrupts_by_reason,
        "self_interrupts_per_100_replies": result.interrupts * 100 / max(1, result.played),
        "own_voice_turns_per_100_replies": turns * 100 / max(1, result.played),
    }


async def daemon_rows(count: int) -> list[dict[str, Any]]:
    """The three modes at once (each daemon waits on real-time playback, not on the CPU)."""
    return list(await asyncio.gather(*(daemon_replies(mode, count) for mode in MODES)))


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
            # From the moment the canceller is trusted (its default convergence time).
            erle = erle_db(scene.mic, result.out, short, from_s=EchoSettings().converge_s)
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
        # The same trials with the speaker's clock 100 ppm fast (a USB mic and a separate speaker).
        drifting = [
            double_talk_trial(
                mode, room=Room(delay_ms=DELAYS_MS[s % 4], drift_ppm=100.0, seed=s), seed=s
            ).detected_after_s
            for s in range(trials)
        ]
        fast_drift = sum(1 for d in drifting if d is not None and d <= 0.3) / trials
        cpu = sum(cpu_ms) / len(cpu_ms) if mode == "aec" else 0.0
        data["modes"][mode] = {
            "self_interrupts_per_100_replies": per_100,
            "double_talk_detected_300ms": fast,
            "double_talk_detected_1500ms": slow,
            "double_talk_detected_300ms_100ppm": fast_drift,
            "cpu_ms_per_20ms_frame": round(cpu, 3),
        }
        mode_rows.append([mode, per_100, f"{fast:.0%}", f"{slow:.0%}", f"{fast_drift:.0%}", cpu])
    daemon_count = 5 if quick else 50
    daemon_results = asyncio.run(daemon_rows(daemon_count))
    daemon_table = []
    for mode, outcome in zip(MODES, daemon_results, strict=True):
        data["modes"][mode]["daemon"] = outcome
        stage = data["modes"][mode]["self_interrupts_per_100_replies"]
        daemon_table.append(
            [
                mode,
                outcome["self_interrupts_per_100_replies"],
                outcome["own_voice_turns_per_100_replies"],
                stage,
            ]
        )
    return BenchReport(
        tables=[
            Table(
                "ERLE of what the turn detector hears once the canceller is trusted, dB (>= 18 wanted)",
                ["delay", "0 ppm", "100 ppm"],
                erle_rows,
            ),
            Table(
                f"Barge-in at full volume ({reply_count} replies, {trials} double-talk trials)",
                [
                    "mode",
                    "self-interrupts/100",
                    "double talk <=300 ms",
                    "<=1.5 s",
                    "<=300 ms, 100 ppm drift",
                    "CPU ms/frame",
                ],
                mode_rows,
            ),
            Table(
                f"The daemon in a closed-loop room, {daemon_count} replies at full volume, nobody speaking",
                ["mode", "interrupts/100", "own-voice turns/100", "stage-level speech starts/100"],
                daemon_table,
            ),
        ],
        data=data,
    )
