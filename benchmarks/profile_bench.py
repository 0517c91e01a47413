"""Where the live `voiced run` process spends its CPU, by library (perf cpu-clock samples).

`voiced run`, Opus both ways, full duplex (server VAD, the bot's long reply interrupted by the user
every 6 s) on WAV devices and on real PortAudio through a private headless PulseAudio, each profiled
with `perf record -e cpu-clock -p PID` for the measured window. Samples are grouped by the shared
object they fell in: the Python interpreter (all Python code, the event loop included), the kernel
(wake-ups, sockets, the sound server's pipes), libopus, numpy, libc and the rest; each share is also
shown in ms per s using the process's measured CPU rate. Python 3.11 has no perf trampoline, so the
interpreter's share is not split by Python function (3.12+ with `-X perf` would be).

Needs `perf` with the cpu-clock software event (it works inside most VMs); reports why not otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from benchmarks.e2e_bench import ByteCountingProxy, conversation_mic, run_process, voiced_argv, write_wav
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.log import configure as configure_logging

NAME = "profile"
#: Wake-ups per second of each profiled run (filled by _profile).
wakeups: dict[str, float | None] = {}
_GROUPS: tuple[tuple[str, str], ...] = (
    ("python3", "Python interpreter (all Python code)"),
    ("libpython", "Python interpreter (all Python code)"),
    ("kernel", "kernel (wake-ups, sockets, pipes)"),
    ("libopus", "libopus"),
    ("_multiarray", "numpy"),
    ("numpy", "numpy"),
    ("soxr", "resampler (soxr)"),
    ("libc.so", "libc"),
    ("libm.so", "libc"),
    ("pydantic_core", "pydantic-core"),
    ("webrtcvad", "webrtcvad"),
    ("libportaudio", "PortAudio + ALSA + libpulse"),
    ("libasound", "PortAudio + ALSA + libpulse"),
    ("libpulse", "PortAudio + ALSA + libpulse"),
    ("_cffi", "PortAudio + ALSA + libpulse"),
)


def _perf_works() -> str | None:
    """None when `perf record -e cpu-clock` works here, else why not."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf is not installed (sudo apt-get install linux-perf)"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(
                [perf, "record", "-q", "-e", "cpu-clock", "-o", f"{tmp}/p.data", "--", "true"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"perf record failed: {exc}"
    return None if done.returncode == 0 else f"perf record failed: {done.stderr.strip()[:200]}"


def _by_dso(data: Path) -> dict[str, float]:
    """Percent of samples per shared object, from `perf report --sort dso`."""
    done = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--sort", "dso", "--no-children"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shares: dict[str, float] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(\S.*)$", line)
        if m:
            shares[m.group(2).strip()] = shares.get(m.group(2).strip(), 0.0) + float(m.group(1))
    return shares


def _group(shares: dict[str, float]) -> dict[str, float]:
    grouped: dict[str, float] = {}
    for dso, pct in shares.items():
        label = next((g for key, g in _GROUPS if key in dso), "other")
        grouped[label] = grouped.get(label, 0.0) + pct
    return grouped


async def _profile(seconds: float, workdir: Path) -> dict[str, tuple[float | None, dict[str, float]]]:
    from tests.support.pulse import PulseServer, pulse_available

    settings = EmulatorSettings(
        port=0,
        scenario=load_scenario("long"),
        faults=FaultSettings(stale_deltas_after_cancel=5),
        think_delay_ms=100.0,
        ping_interval_s=0,
    )
    mic16 = conversation_mic(seconds + 10.0)
    write_wav(workdir / "mic16.wav", mic16, 16000)
    out: dict[str, tuple[float | None, dict[str, float]]] = {}
    wakeups.clear()
    plan = [("WAV devices", False)] + ([("PulseAudio", True)] if pulse_available() else [])
    for label, on_pulse in plan:
        name = "pulse" if on_pulse else "wav"
        server: PulseServer | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                emu = await stack.enter_async_context(serve_emulator(settings))
                port = int(emu.url.rsplit(":", 1)[1])
                proxy = await stack.enter_async_context(ByteCountingProxy(port).serving())
                extra_env: dict[str, str] = {}
                if on_pulse:
                    root = workdir / "pa"
                    root.mkdir()
                    server = PulseServer(root)
                    await asyncio.to_thread(server.start)
                    server.say(mic16)
                    extra_env = server.client_env()
                data = workdir / f"{name}.perf"
                argv = voiced_argv(proxy.url, "opus", "server_vad", None if on_pulse else workdir, name)
                perf = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-o", str(data), "-p"]
                run = await run_process(
                    name, argv, proxy, seconds=seconds, workdir=workdir, stats_json=None,
                    extra_env=extra_env, attach=perf,
                )  # fmt: skip
                shares = await asyncio.to_thread(_by_dso, data)
                out[label] = (run.cpu_s_per_s, shares)
                wakeups[label] = run.wakeups_per_s
        finally:
            if server is not None:
                await asyncio.to_thread(server.stop)
    return out


def run(quick: bool) -> BenchReport:
    """Profile both device kinds; `quick` profiles 8 s instead of 30 s."""
    why_not = _perf_works()
    if why_not is not None:
        return BenchReport(
            tables=[Table("Profile", ["note"], [[why_not]])], data={"available": False, "why": why_not}
        )
    configure_logging("error", "json", stream=io.StringIO())
    seconds = 8.0 if quick else 30.0
    with tempfile.TemporaryDirectory(prefix="vp-") as tmp:
        results = asyncio.run(asyncio.wait_for(_profile(seconds, Path(tmp)), timeout=4 * seconds + 180))
    labels = list(results)
    groups = sorted({g for _, shares in results.values() for g in _group(shares)})
    table = Table(
        f"Where voiced run spends its CPU: full duplex Opus, {seconds:.0f} s, perf samples by library",
        ["library", *(f"{label} %" for label in labels), *(f"{label} ms/s" for label in labels)],
    )
    data: dict[str, Any] = {"available": True, "seconds": seconds, "profiles": {}}
    grouped = {label: _group(shares) for label, (_, shares) in results.items()}
    order = sorted(groups, key=lambda g: -float(np.mean([grouped[lb].get(g, 0.0) for lb in labels])))
    for g in order:
        pcts = [round(grouped[lb].get(g, 0.0), 1) for lb in labels]
        ms = [round((results[lb][0] or 0.0) * 1000 * grouped[lb].get(g, 0.0) / 100, 1) for lb in labels]
        table.rows.append([g, *pcts, *ms])
    for lb in labels:
        cpu, shares = results[lb]
        top = dict(sorted(shares.items(), key=lambda kv: -kv[1])[:15])
        data["profiles"][lb] = {
            "cpu_s_per_s": cpu,
            "wakeups_per_s": wakeups.get(lb),
            "groups_pct": grouped[lb],
            "top_dso_pct": top,
        }
    table.rows.append(
        [
            "wake-ups per s (all threads)",
            *(round(wakeups.get(lb) or 0.0) for lb in labels),
            *("" for _ in labels),
        ]
    )
    return BenchReport(tables=[table], data=data)


if __name__ == "__main__":
    for t in run(quick=True).tables:
        print(t.render())
