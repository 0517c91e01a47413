"""The floor: what each mode must cost at least, beside `voiced run` in the same run.

`floor_client.py` does only the physically necessary work of a mode (mic + VAD; encode, append,
send; parse, decode, play). Here it runs as a subprocess in each mode against the emulator, measured
exactly like `voiced run` (`e2e_bench.run_process`: CPU from READY, wake-ups, peak RSS, bytes on the
wire through a counting relay), and `voiced run` runs in the same modes at the same time, so the
`voiced / floor` ratio is taken under the same machine load:

- on WAV devices, all six processes at once: idle (client-side turn detection, a silent mic), PCM and
  Opus full duplex (server VAD, the user speaks every 6 s over the bot's long reply);
- idle on real PortAudio (sounddevice -> ALSA `pulse` plugin -> a private headless PulseAudio per
  process), floor and voiced at once; skipped, with a row saying why, without `pulseaudio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table, run_within
from benchmarks.e2e_bench import (
    ByteCountingProxy,
    ProcessRun,
    conversation_mic,
    run_process,
    voiced_argv,
    write_wav,
)
from tests.agent.harness import BOT_ID
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.log import configure as configure_logging

NAME = "floor"
#: (mode, voiced's codec, voiced's turn detection, whether the mic talks)
_MODES: list[tuple[str, str, str, bool]] = [
    ("idle", "opus", "client_interrupt", False),
    ("pcm", "pcm", "server_vad", True),
    ("opus", "opus", "server_vad", True),
]
#: The whole module's limit: every await inside has its own, this catches anything that slips through.
_RUN_TIMEOUT_S = {True: 150.0, False: 400.0}


def _settings() -> EmulatorSettings:
    # As the end-to-end process bench: long replies, stale deltas after a cancel, no server pings.
    return EmulatorSettings(
        port=0,
        scenario=load_scenario("long"),
        faults=FaultSettings(stale_deltas_after_cancel=5),
        think_delay_ms=100.0,
        ping_interval_s=0,
    )


def floor_argv(url: str, mode: str, wav_dir: Path | None, name: str, stats_json: Path) -> list[str]:
    """The floor client's command line: WAV devices from `wav_dir`, or PortAudio when it is None."""
    argv = [
        sys.executable, "-m", "benchmarks.floor_client", "--url", url, "--bot-id", BOT_ID,
        "--mode", mode, "--stats-json", str(stats_json),
    ]  # fmt: skip
    if wav_dir is None:
        return [*argv, "--device", "portaudio"]
    return [
        *argv, "--device", "wav", "--input-wav", str(wav_dir / "mic16.wav"),
        "--output-wav", str(wav_dir / f"{name}.out.wav"),
    ]  # fmt: skip


async def bench_wav(seconds: float, workdir: Path) -> dict[str, ProcessRun]:
    """Floor and voiced in every mode on WAV devices, all at once, each with its own emulator."""
    talk_dir, silent_dir = workdir / "talk", workdir / "silent"
    talk_dir.mkdir()
    silent_dir.mkdir()
    write_wav(talk_dir / "mic16.wav", conversation_mic(seconds + 10.0), 16000)
    write_wav(silent_dir / "mic16.wav", np.zeros(int((seconds + 10.0) * 16000), dtype=np.int16), 16000)
    async with contextlib.AsyncExitStack() as stack:
        jobs = []
        for mode, codec, turn_detection, talks in _MODES:
            wav_dir = talk_dir if talks else silent_dir
            for client in ("floor", "voiced"):
                name = f"{client}_{mode}_wav"
                emu = await stack.enter_async_context(serve_emulator(_settings()))
                proxy = await stack.enter_async_context(ByteCountingProxy(_port(emu.url)).serving())
                stats_json = workdir / f"{name}.json" if client == "floor" else None
                if stats_json is not None:
                    argv = floor_argv(proxy.url, mode, wav_dir, name, stats_json)
                else:
                    argv = voiced_argv(proxy.url, codec, turn_detection, wav_dir, name)
                jobs.append(
                    run_process(name, argv, proxy, seconds=seconds, workdir=workdir, stats_json=stats_json)
                )
        runs = await asyncio.gather(*jobs)
    return {run.name: run for run in runs}


async def bench_pulse(seconds: float, workdir: Path) -> dict[str, ProcessRun]:
    """Floor and voiced idle on real PortAudio, at once, each with its own private PulseAudio.

    Returns nothing when the pulseaudio binary is absent (the table says so)."""
    from tests.support.pulse import PulseServer, pulse_available

    if not pulse_available():
        return {}
    servers: list[PulseServer] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            jobs = []
            for client in ("floor", "voiced"):
                name = f"{client}_idle_pulse"
                emu = await stack.enter_async_context(serve_emulator(_settings()))
                proxy = await stack.enter_async_context(ByteCountingProxy(_port(emu.url)).serving())
                root = workdir / f"pa-{client}"
                root.mkdir()
                server = PulseServer(root)
                await asyncio.to_thread(server.start)
                servers.append(server)
                stats_json = workdir / f"{name}.json" if client == "floor" else None
                if stats_json is not None:
                    argv = floor_argv(proxy.url, "idle", None, name, stats_json)
                else:
                    argv = voiced_argv(proxy.url, "opus", "client_interrupt", None, name)
                jobs.append(
                    run_process(
                        name,
                        argv,
                        proxy,
                        seconds=seconds,
                        workdir=workdir,
                        stats_json=stats_json,
                        extra_env=server.client_env(),
                    )
                )
            runs = await asyncio.gather(*jobs)
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
    return {run.name: run for run in runs}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _round(value: float | None, scale: float, digits: int) -> float | None:
    return None if value is None else round(value * scale, digits)


def _ratio(ours: float | None, floor: float | None) -> str:
    if ours is None or floor is None or floor == 0:
        return "n/a"
    return f"{ours / floor:.2f}"


def _figures(run: ProcessRun) -> dict[str, Any]:
    return {
        "cpu_ms_per_s": _round(run.cpu_s_per_s, 1000.0, 2),
        "wakeups_per_s": _round(run.wakeups_per_s, 1.0, 1),
        "peak_rss_mb": _round(run.peak_rss_mb, 1.0, 1),
        "ready_s": _round(run.ready_s, 1.0, 2),
        "up_kb_per_s": _round(run.up_bytes_per_s, 1 / 1000.0, 2),
        "down_kb_per_s": _round(run.down_bytes_per_s, 1 / 1000.0, 2),
    }


async def _run(quick: bool) -> BenchReport:
    # The emulators log every connection; the benchmark prints tables, not logs.
    configure_logging("error", "json", stream=io.StringIO())
    seconds = 6.0 if quick else 40.0
    phase_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vf-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        runs = await bench_wav(seconds, workdir)
        phase_s["wav"] = time.monotonic() - started
        started = time.monotonic()
        runs.update(await bench_pulse(seconds, workdir))
        phase_s["pulse"] = time.monotonic() - started

    table = Table(
        f"The floor beside voiced run, {seconds:.0f} s after READY each (floor and voiced of a device at "
        "once; every process against its own emulator)",
        [
            "mode", "client", "CPU ms/s", "wake-ups/s", "peak RSS MB", "start -> READY s", "up kB/s",
            "down kB/s", "CPU voiced / floor", "wake-ups voiced / floor",
        ],
    )  # fmt: skip
    modes = [(mode, "wav", "WAV devices") for mode, *_ in _MODES]
    modes.append(("idle", "pulse", "PortAudio -> PulseAudio"))
    data: dict[str, Any] = {"processes": {}, "voiced_over_floor_cpu": {}, "floor_did": {}}
    for mode, device, device_label in modes:
        floor, ours = runs.get(f"floor_{mode}_{device}"), runs.get(f"voiced_{mode}_{device}")
        label = f"{mode}, {device_label}"
        if floor is None or ours is None:
            table.rows.append([label, "n/a: pulseaudio is not installed", *([""] * 8)])
            data["processes"][f"{mode}_{device}"] = "skipped: pulseaudio is not installed"
            continue
        for run in (floor, ours):
            f = _figures(run)
            data["processes"][run.name] = f
            ratios = ["", ""]
            if run is ours:
                ratios = [
                    _ratio(ours.cpu_s_per_s, floor.cpu_s_per_s),
                    _ratio(ours.wakeups_per_s, floor.wakeups_per_s),
                ]
            table.rows.append(
                [
                    label,
                    run.name.split("_")[0],
                    *(("n/a" if v is None else v) for v in f.values()),
                    *ratios,
                ]
            )
        cpu_ratio = None
        if ours.cpu_s_per_s is not None and floor.cpu_s_per_s:
            cpu_ratio = round(ours.cpu_s_per_s / floor.cpu_s_per_s, 2)
        data["voiced_over_floor_cpu"][f"{mode}_{device}"] = cpu_ratio
        # What the floor client did (appends, deltas, capture rate): proof it did the mode's work.
        data["floor_did"][floor.name] = floor.stats
    data["conversation_s"] = seconds
    data["phase_s"] = {k: round(v, 1) for k, v in phase_s.items()}
    return BenchReport(tables=[table], data=data)


def run(quick: bool) -> BenchReport:
    """Every mode of the floor and of voiced; `quick` keeps it under a minute."""
    return run_within(_run(quick), _RUN_TIMEOUT_S[quick], "floor benchmark")


if __name__ == "__main__":
    report = run(quick="--quick" in sys.argv)
    for table in report.tables:
        print(table.render())
        print()
