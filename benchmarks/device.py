"""Measure voiced on the machine's own sound card (run on the device: a Raspberry Pi, a kiosk).

    ./dev bench --device [--seconds 30] [--input-device USB] [--output-device USB]

Starts the local emulator on loopback and `voiced run` against it on the real default (or named)
sound devices, twice: idle (client-side turn detection, nobody speaking) and streaming (server VAD:
the microphone streams all the time; speak to it and the emulator answers with a long reply, so
capture, playback and both codecs run). Prints CPU (ms per s and % of one core), peak RSS, start ->
READY, the per-turn latencies voiced logs, and the latencies the sound card's driver reports; merges
them into benchmarks/results.json under "device".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import BenchReport, Table
from benchmarks.e2e_bench import (
    ByteCountingProxy,
    ProcessRun,
    run_process,
    voiced_argv,
    voiced_turn_summaries,
)
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.log import configure as configure_logging


def _card_latencies() -> dict[str, Any]:
    """The default devices' names and the latencies their driver reports (PortAudio's view)."""
    try:
        import sounddevice as sd

        out: dict[str, Any] = {}
        for kind in ("input", "output"):
            info = sd.query_devices(kind=kind)
            out[kind] = {
                "name": str(info["name"])[:80],
                "low_latency_ms": round(float(info[f"default_low_{kind}_latency"]) * 1000, 1),
                "high_latency_ms": round(float(info[f"default_high_{kind}_latency"]) * 1000, 1),
            }
        return out
    except Exception as exc:  # no PortAudio, no device: say so in the table
        return {"error": str(exc)[:200]}


async def _measure(seconds: float, device_sets: list[str]) -> dict[str, ProcessRun]:
    settings = EmulatorSettings(
        port=0,
        scenario=load_scenario("long"),
        faults=FaultSettings(),
        think_delay_ms=100.0,
        ping_interval_s=0,
    )
    runs: dict[str, ProcessRun] = {}
    with tempfile.TemporaryDirectory(prefix="vd-") as tmp:
        for name, turn_detection in (("idle", "client_interrupt"), ("streaming", "server_vad")):
            if name == "streaming":
                print(f"streaming for {seconds:.0f} s: speak to the device now and then", flush=True)
            async with contextlib.AsyncExitStack() as stack:
                emu = await stack.enter_async_context(serve_emulator(settings))
                port = int(emu.url.rsplit(":", 1)[1])
                proxy = await stack.enter_async_context(ByteCountingProxy(port).serving())
                argv = voiced_argv(proxy.url, "opus", turn_detection, None, name) + device_sets
                runs[name] = await run_process(
                    name, argv, proxy, seconds=seconds, workdir=Path(tmp), stats_json=None
                )
    return runs


def measure(seconds: float, input_device: str | None, output_device: str | None) -> BenchReport:
    """Both phases on the real sound card; returns the tables and the JSON data."""
    configure_logging("error", "json", stream=io.StringIO())
    device_sets: list[str] = []
    if input_device:
        device_sets += ["--set", f"audio.devices.input_device={input_device}"]
    if output_device:
        device_sets += ["--set", f"audio.devices.output_device={output_device}"]
    runs = asyncio.run(asyncio.wait_for(_measure(seconds, device_sets), timeout=4 * seconds + 120))
    cores = os.cpu_count() or 1
    table = Table(
        f"voiced run on this machine's sound card ({platform.machine()}, {cores} cores), "
        f"{seconds:.0f} s per phase",
        ["measure", "idle", "streaming"],
    )
    idle, streaming = runs["idle"], runs["streaming"]

    def cell(r: ProcessRun, attr: str, scale: float, digits: int) -> Any:
        v = getattr(r, attr)
        return "n/a" if v is None else round(v * scale, digits)

    table.rows.append(
        ["CPU ms per s", cell(idle, "cpu_s_per_s", 1000, 1), cell(streaming, "cpu_s_per_s", 1000, 1)]
    )
    table.rows.append(
        ["% of one core", cell(idle, "cpu_s_per_s", 100, 2), cell(streaming, "cpu_s_per_s", 100, 2)]
    )
    table.rows.append(
        ["peak RSS (VmHWM), MB", cell(idle, "peak_rss_mb", 1, 1), cell(streaming, "peak_rss_mb", 1, 1)]
    )
    table.rows.append(
        ["wake-ups per s", cell(idle, "wakeups_per_s", 1, 0), cell(streaming, "wakeups_per_s", 1, 0)]
    )
    table.rows.append(["start -> READY, s", cell(idle, "ready_s", 1, 2), cell(streaming, "ready_s", 1, 2)])
    table.rows.append(
        ["uplink, kB/s", cell(idle, "up_bytes_per_s", 1e-3, 2), cell(streaming, "up_bytes_per_s", 1e-3, 2)]
    )
    turns = voiced_turn_summaries(streaming.log)
    card = _card_latencies()
    card_table = Table(
        "Sound card latencies reported by the driver (PortAudio defaults)", ["device", "value"]
    )
    for kind, info in card.items():
        card_table.rows.append([kind, str(info)])
    data = {
        "seconds": seconds,
        "machine": platform.machine(),
        "cores": cores,
        "phases": {
            r.name: {
                "cpu_s_per_s": r.cpu_s_per_s,
                "peak_rss_mb": r.peak_rss_mb,
                "wakeups_per_s": r.wakeups_per_s,
                "ready_s": r.ready_s,
            }
            for r in (idle, streaming)
        },
        "turns": turns[-20:],
        "card": card,
    }
    return BenchReport(tables=[table, card_table], data=data)


def main(argv: list[str] | None = None, output: Path | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench --device", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--input-device", help="capture device (index or part of its name)")
    parser.add_argument("--output-device", help="playback device (index or part of its name)")
    args = parser.parse_args(argv)
    report = measure(args.seconds, args.input_device, args.output_device)
    for table in report.tables:
        print(table.render())
        print()
    from benchmarks.__main__ import HERE, merge_results

    merge_results(HERE / "results.json", {"device": report.data})
    print(f"results merged into {HERE / 'results.json'}")
    return 0
