"""End-to-end benchmarks: the real daemon against the emulator on loopback, beside the cozepy baseline.

1. Client-side latency per turn (p50/p99), read from the daemon's own ``agent.latency``: mic frame →
   its append on the wire; local end of speech → ``complete`` on the wire; first ``audio.delta`` → its
   first sample handed to the device; barge-in onset → output silent; server ``speech_started`` →
   output silent. Plus, measured at the (in-memory) speaker: ms of the cancelled reply still heard
   after the interrupt.
2. ``voiced run`` and the baseline (``benchmarks/baseline.py``) as subprocesses, side by side in the
   same run, full duplex (server VAD, the mic streams all the time, the bot's long reply is interrupted
   by every utterance): CPU seconds per second, peak RSS (VmHWM), start → READY (sd_notify), uplink
   bytes per second on the wire (counted by a TCP proxy: JSON, base64 and WebSocket framing),
   underruns, cancelled audio still played after an interrupt.
3. The jitter buffer end to end through the emulator: the real server's PCM bursts, paced Opus with
   0/30/100 ms jitter, 5 % Opus loss: underrun % and the latency the buffer adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table, run_within
from benchmarks.baseline import percentile
from benchmarks.emulator_process import emulator_process
from tests.agent.harness import BOT_ID, TOKEN, daemon_config, running_daemon, utterance_pcm
from voiced.audio.frames import Int16Array
from voiced.audio.resample import resample
from voiced.devices.memory import MemorySink, MemorySource
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.log import configure as configure_logging

NAME = "e2e"
REPO = Path(__file__).resolve().parents[1]
#: A block louder than this (RMS) counts as audible at the speaker.
_AUDIBLE_RMS = 50.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _loud(pcm: Int16Array, gain: float = 3.0) -> Int16Array:
    # A user leaning in over the reply: well above the playback level the barge-in detector compares to.
    louder: Int16Array = np.clip(pcm.astype(np.int32) * gain, -32768, 32767).astype(np.int16)
    return louder


def _rms(block: Int16Array) -> float:
    return float(np.sqrt(np.mean(block.astype(np.float64) ** 2))) if block.size else 0.0


def _heard_after(sink: MemorySink, after_s: float, until_s: float | None) -> tuple[float, float]:
    """(ms of audible audio the speaker played in (after_s, until_s), ms from after_s to silence).

    The drain takes a block from the ring at ``at_s`` and the device plays it during the next block
    period, so block ``k`` sounds over [at_s, at_s + block).
    """
    block_s = sink.block_samples / sink.sample_rate_hz
    heard_s = 0.0
    silent_at_s = after_s
    for at_s, block in list(sink.blocks):
        end_s = at_s + block_s
        if end_s <= after_s or (until_s is not None and at_s >= until_s) or _rms(block) <= _AUDIBLE_RMS:
            continue
        heard_s += min(end_s, until_s if until_s is not None else end_s) - max(at_s, after_s)
        silent_at_s = max(silent_at_s, end_s)
    return heard_s * 1000.0, (silent_at_s - after_s) * 1000.0


def _p(values: list[float], pct: float) -> float | None:
    found = percentile(values, pct)
    return None if found is None else round(found, 2)


# -- 1. latency through the in-process daemon -----------------------------------------------------------


async def _wait(predicate: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110  (the predicates read playout state, which has no event)
            await asyncio.sleep(0.01)


async def bench_barge_in_turns(turns: int, server_vad: bool) -> dict[str, Any]:
    """``turns`` user turns, each one talking over the previous (long) reply; the daemon's latencies.

    The emulator runs in a process of its own, as the baseline's server does: in the daemon's loop its
    work would land on the daemon's frame boundaries and count as the daemon's latency.
    """
    overrides: dict[str, Any] = {}
    if server_vad:
        overrides["session.turn_detection"] = "server_vad"
    speech = utterance_pcm()
    heard_after: list[float] = []
    to_silent: list[float] = []
    async with emulator_process("long", stale_deltas_after_cancel=5, think_delay_ms=100.0) as url:
        config = daemon_config(url, **overrides)
        source = MemorySource(speech, paced=True, after_end="silence")
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None
            for _ in range(turns):
                await _wait(
                    lambda: (
                        agent.playout.speaking and agent.playout.played_ms(agent.playing_chat_id or "") > 400
                    ),
                    30,
                )
                # Server VAD: speech at its normal level, which the server's VAD hears but the local
                # barge-in detector (which demands speech above the playback level) does not, so the
                # interrupt measured is the one driven by the server's speech_started.
                source.append(speech if server_vad else _loud(speech))
                turn = await h.next_turn(30)
                # The next reply's first sample ends the window: what is heard before it is the old reply.
                old_chat = turn.chat_id
                await _wait(lambda old=old_chat: agent.playing_chat_id not in (None, old), 30)
                next_first = agent.playout.first_sample_at(agent.playing_chat_id or "")
                if turn.interrupted_s is not None:
                    heard_ms, silent_ms = _heard_after(h.sink, turn.interrupted_s, next_first)
                    heard_after.append(heard_ms)
                    to_silent.append(silent_ms)
            latency = agent.latency
            counters = agent.counters
            samples = {name: list(values) for name, values in latency.samples.items()}
    out: dict[str, Any] = {
        "turns": turns,
        "cancelled_heard_ms": {
            "p50": _p(heard_after, 50),
            "p99": _p(heard_after, 99),
            "total": round(sum(heard_after), 1),
            "interrupts": len(heard_after),
        },
        "interrupt_to_speaker_silent_ms": {"p50": _p(to_silent, 50), "p99": _p(to_silent, 99)},
    }
    for name, values in samples.items():
        out[name] = {"p50": _p(values, 50), "p99": _p(values, 99), "n": len(values)}
    out["uplink_bytes"] = counters.uplink_bytes
    out["appends"] = counters.appends_sent
    out["stale_chunks_dropped"] = counters.stale_chunks
    return out


# -- 2. voiced run and the baseline as processes ------------------------------------------------------


class ByteCountingProxy:
    """A TCP relay that counts the bytes each way: what actually crosses the wire."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up_bytes = 0
        self.down_bytes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    self.up_bytes += len(data)
                else:
                    self.down_bytes += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[ByteCountingProxy]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()


def write_wav(path: Path, pcm: Int16Array, rate_hz: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm.astype("<i2").tobytes())


def conversation_mic(seconds: float) -> Int16Array:
    """1 s of silence, then the utterance every 6 s (3 s of it, 3 s of quiet), ``seconds`` long."""
    speech = utterance_pcm()
    period = np.concatenate([speech, np.zeros(3 * 16000, dtype=np.int16)])
    reps = int(np.ceil(seconds * 16000 / period.size)) + 1
    return np.concatenate([np.zeros(16000, dtype=np.int16), np.tile(period, reps)])[: int(seconds * 16000)]


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; after the ")" they are the 12th and 13th.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _proc_wakeups(pid: int) -> int:
    """Voluntary context switches of all the process's threads: each is a sleep that ended in a
    wake-up (a timer, a socket, a device callback)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def _proc_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


@dataclass
class ProcessRun:
    name: str
    ready_s: float | None = None
    cpu_s_per_s: float | None = None
    peak_rss_mb: float | None = None
    wakeups_per_s: float | None = None
    up_bytes_per_s: float | None = None
    down_bytes_per_s: float | None = None
    log: str = ""
    stats: dict[str, Any] | None = None


async def run_process(
    name: str,
    argv: list[str],
    proxy: ByteCountingProxy,
    *,
    seconds: float,
    workdir: Path,
    stats_json: Path | None,
    extra_env: dict[str, str] | None = None,
    attach: list[str] | None = None,
) -> ProcessRun:
    """Run `argv` until READY, measure it for `seconds`, stop it. `attach` is a command (e.g. a
    profiler) run with the process id appended for the measured window, then interrupted."""
    result = ProcessRun(name)
    notify_path = workdir / f"{name}.notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    env = {**os.environ, "COZE_API_TOKEN": TOKEN, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"}
    env.pop("VOICED_CONFIG", None)
    env.update(extra_env or {})
    stderr_path = workdir / f"{name}.stderr"
    loop = asyncio.get_running_loop()
    with stderr_path.open("wb") as stderr:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            try:
                async with asyncio.timeout(30):
                    while True:
                        data = await loop.sock_recv(notify, 4096)
                        if b"READY=1" in data.split(b"\n"):
                            break
            except TimeoutError:
                tail = stderr_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name}: no READY=1 within 30 s; its stderr ends with:\n{tail}") from None
            result.ready_s = time.monotonic() - started
            cpu0, up0, down0, t0 = _proc_cpu_s(proc.pid), proxy.up_bytes, proxy.down_bytes, time.monotonic()
            wake0 = _proc_wakeups(proc.pid)
            if attach:
                await _attached([*attach, str(proc.pid)], seconds)
            else:
                await asyncio.sleep(seconds)
            elapsed = time.monotonic() - t0
            result.cpu_s_per_s = (_proc_cpu_s(proc.pid) - cpu0) / elapsed
            result.wakeups_per_s = (_proc_wakeups(proc.pid) - wake0) / elapsed
            result.peak_rss_mb = _proc_hwm_mb(proc.pid)
            result.up_bytes_per_s = (proxy.up_bytes - up0) / elapsed
            result.down_bytes_per_s = (proxy.down_bytes - down0) / elapsed
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            notify.close()
    result.log = stderr_path.read_text(errors="replace")
    if stats_json is not None and stats_json.exists():  # noqa: ASYNC240
        result.stats = json.loads(stats_json.read_text())  # noqa: ASYNC240
    return result


async def _attached(argv: list[str], seconds: float) -> None:
    """Run `argv` for `seconds`, then SIGINT it (a profiler writes its data then) and reap it."""
    tool = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(seconds)
    finally:
        if tool.returncode is None:
            tool.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(tool.wait(), 30)
        except TimeoutError:
            tool.kill()
            await asyncio.wait_for(tool.wait(), 10)


def voiced_turn_summaries(log: str) -> list[dict[str, Any]]:
    turns = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "turn":
                turns.append(record)
    return turns


async def bench_processes(seconds: float) -> dict[str, ProcessRun]:
    """voiced (Opus up/down, and PCM up/down) and the baseline, concurrently, each with its own emulator."""
    faults = FaultSettings(stale_deltas_after_cancel=5)
    settings = EmulatorSettings(
        port=0, scenario=load_scenario("long"), faults=faults, think_delay_ms=100.0, ping_interval_s=0
    )
    mic16 = conversation_mic(seconds + 10.0)
    with tempfile.TemporaryDirectory(prefix="voiced-bench-") as tmp:
        workdir = Path(tmp)
        write_wav(workdir / "mic16.wav", mic16, 16000)
        write_wav(workdir / "mic24.wav", resample(mic16, 16000, 24000), 24000)
        async with contextlib.AsyncExitStack() as stack:
            jobs = []
            for name, codec in (("voiced_opus", "opus"), ("voiced_pcm", "pcm"), ("baseline", None)):
                emu = await stack.enter_async_context(serve_emulator(settings))
                port = int(emu.url.rsplit(":", 1)[1])
                proxy = await stack.enter_async_context(ByteCountingProxy(port).serving())
                if codec is None:
                    stats_json = workdir / "baseline.json"
                    argv = [
                        sys.executable, "-m", "benchmarks.baseline", "--url", proxy.url, "--bot-id", BOT_ID,
                        "--input-wav", str(workdir / "mic24.wav"), "--seconds", str(seconds + 8.0),
                        "--stats-json", str(stats_json),
                    ]  # fmt: skip
                else:
                    stats_json = None
                    argv = [
                        sys.executable, "-m", "voiced", "run",
                        "--set", f"coze.base_url={proxy.url}", "--set", f"coze.bot_id={BOT_ID}",
                        "--set", "session.turn_detection=server_vad", "--set", "listen.mode=always",
                        "--set", f"session.input_codec={codec}", "--set", f"session.output_codec={codec}",
                        "--log-format", "json", "--log-level", "info",
                        "--input-wav", str(workdir / "mic16.wav"),
                        "--output-wav", str(workdir / f"{name}.out.wav"),
                    ]  # fmt: skip
                jobs.append(
                    run_process(name, argv, proxy, seconds=seconds, workdir=workdir, stats_json=stats_json)
                )
            runs = await asyncio.gather(*jobs)
    return {run.name: run for run in runs}


def voiced_argv(url: str, codec: str, turn_detection: str, wav_dir: Path | None, name: str) -> list[str]:
    argv = [
        sys.executable, "-m", "voiced", "run",
        "--set", f"coze.base_url={url}", "--set", f"coze.bot_id={BOT_ID}",
        "--set", f"session.turn_detection={turn_detection}", "--set", "listen.mode=always",
        "--set", f"session.input_codec={codec}", "--set", f"session.output_codec={codec}",
        "--log-format", "json", "--log-level", "info",
    ]  # fmt: skip
    if wav_dir is not None:
        argv += ["--input-wav", str(wav_dir / "mic16.wav"), "--output-wav", str(wav_dir / f"{name}.out.wav")]
    return argv


async def bench_device_processes(seconds: float) -> dict[str, ProcessRun]:
    """`voiced run` on real PortAudio through a private headless PulseAudio (ALSA `pulse` plugin ->
    PulseAudio pipe source/sink), full duplex and idle, and idle on WAV devices, concurrently.

    Returns no PulseAudio runs when the pulseaudio binary is absent (the table says so)."""
    from tests.support.pulse import PulseServer, pulse_available

    faults = FaultSettings(stale_deltas_after_cancel=5)
    settings = EmulatorSettings(
        port=0, scenario=load_scenario("long"), faults=faults, think_delay_ms=100.0, ping_interval_s=0
    )
    mic16 = conversation_mic(seconds + 10.0)
    with tempfile.TemporaryDirectory(prefix="vb-") as tmp:
        workdir = Path(tmp)
        silent_dir = workdir / "silent"
        silent_dir.mkdir()
        write_wav(silent_dir / "mic16.wav", np.zeros(int((seconds + 40.0) * 16000), dtype=np.int16), 16000)
        servers: list[PulseServer] = []
        try:
            async with contextlib.AsyncExitStack() as stack:
                jobs = []
                plan: list[tuple[str, str, bool]] = [("voiced_idle_wav", "client_interrupt", False)]
                if pulse_available():
                    plan = [
                        ("voiced_opus_pulse", "server_vad", True),
                        ("voiced_idle_pulse", "client_interrupt", True),
                        *plan,
                    ]
                for name, turn_detection, on_pulse in plan:
                    emu = await stack.enter_async_context(serve_emulator(settings))
                    port = int(emu.url.rsplit(":", 1)[1])
                    proxy = await stack.enter_async_context(ByteCountingProxy(port).serving())
                    extra_env: dict[str, str] = {}
                    if on_pulse:
                        root = workdir / name[-12:]
                        root.mkdir()
                        server = PulseServer(root)
                        await asyncio.to_thread(server.start)
                        servers.append(server)
                        if turn_detection == "server_vad":
                            server.say(mic16)
                        extra_env = server.client_env()
                    argv = voiced_argv(
                        proxy.url, "opus", turn_detection, None if on_pulse else silent_dir, name
                    )
                    jobs.append(
                        run_process(
                            name,
                            argv,
                            proxy,
                            seconds=seconds,
                            workdir=workdir,
                            stats_json=None,
                            extra_env=extra_env,
                        )
                    )
                runs = await asyncio.gather(*jobs)
        finally:
            for server in servers:
                await asyncio.to_thread(server.stop)
    return {run.name: run for run in runs}


# -- 3. the jitter buffer through the emulator -----------------------------------------------------------

JITTER_PROFILES: list[tuple[str, str, FaultSettings]] = [
    ("PCM bursts like the real server (6x)", "pcm", FaultSettings()),
    ("Opus paced 20 ms, 0 ms jitter", "opus", FaultSettings()),
    ("Opus paced 20 ms, 30 ms jitter", "opus", FaultSettings(downlink_jitter_ms=30.0)),
    ("Opus paced 20 ms, 100 ms jitter", "opus", FaultSettings(downlink_jitter_ms=100.0)),
    ("Opus paced 20 ms, 5 % loss", "opus", FaultSettings(opus_loss_pct=5.0)),
]


async def bench_jitter_profile(codec: str, faults: FaultSettings, turns: int) -> dict[str, Any]:
    settings = EmulatorSettings(
        port=0, scenario=load_scenario("echo"), faults=faults, think_delay_ms=50.0, ping_interval_s=0
    )
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"session.output_codec": codec, "session.output_opus_frame_ms": 20})
        silence = MemorySource(np.zeros(1600, dtype=np.int16), paced=True, after_end="silence")
        async with running_daemon(config, silence) as h:
            agent = h.daemon.agent
            assert agent is not None
            before = agent.playout.jitter.stats()
            added: list[float] = []
            played = 0.0
            for _ in range(turns):
                ws = h.daemon.ws
                assert ws is not None
                await ws.send(agent.session.send_text(text))
                turn = await h.next_turn(60)
                played += turn.played_ms
                if turn.first_delta_s is not None and turn.first_sample_s is not None:
                    added.append((turn.first_sample_s - turn.first_delta_s) * 1000.0)
            after = agent.playout.jitter.stats()
    underrun_ms = after.underrun_ms - before.underrun_ms
    return {
        "turns": turns,
        "played_ms": round(played, 1),
        "underruns": after.underruns - before.underruns,
        "underrun_ms": round(underrun_ms, 1),
        "underrun_pct": round(100.0 * underrun_ms / played, 2) if played else None,
        "added_latency_ms_p50": _p(added, 50),
        "added_latency_ms_max": _p(added, 100),
        "late_chunks": after.late_chunks - before.late_chunks,
        "dropped_ms": round(after.dropped_ms - before.dropped_ms, 1),
        "target_ms_end": round(after.target_ms, 1),
    }


# -- report --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> Any:
    if value is None:
        return "n/a"
    return value


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}"


async def _run(quick: bool) -> BenchReport:
    # The daemons log every turn; the benchmark prints tables, not logs.
    configure_logging("error", "json", stream=io.StringIO())
    n_turns = 4 if quick else 20
    n_vad = 2 if quick else 10
    seconds = 6.0 if quick else 40.0
    jitter_turns = 1 if quick else 4

    phase_s: dict[str, float] = {}
    started = time.monotonic()
    local = await bench_barge_in_turns(n_turns, server_vad=False)
    phase_s["latency_client_interrupt"] = time.monotonic() - started
    started = time.monotonic()
    vad = await bench_barge_in_turns(n_vad, server_vad=True)
    phase_s["latency_server_vad"] = time.monotonic() - started
    started = time.monotonic()
    procs = await bench_processes(seconds)
    phase_s["processes"] = time.monotonic() - started
    started = time.monotonic()
    device_procs = await bench_device_processes(seconds)
    phase_s["device_processes"] = time.monotonic() - started
    started = time.monotonic()
    chosen = [JITTER_PROFILES[0], JITTER_PROFILES[3]] if quick else JITTER_PROFILES
    profiles = [
        {"profile": label, "codec": codec, **await bench_jitter_profile(codec, faults, jitter_turns)}
        for label, codec, faults in chosen
    ]
    phase_s["jitter_profiles"] = time.monotonic() - started

    base = procs["baseline"].stats or {}
    lat = Table(
        f"End-to-end latency per turn, ms (voiced in-process, emulator on loopback; {n_turns} turns, "
        f"{n_vad} server-VAD interrupts)",
        ["measure", "voiced p50", "voiced p99", "baseline p50", "baseline p99", "ratio p50"],
    )

    def row(label: str, source: dict[str, Any], key: str, base_key: str | None = None) -> list[Any]:
        ours = source.get(key) or {}
        theirs = base.get(base_key) or {} if base_key else {}
        return [
            label, _fmt(ours.get("p50")), _fmt(ours.get("p99")), _fmt(theirs.get("p50")),
            _fmt(theirs.get("p99")), _ratio(ours.get("p50"), theirs.get("p50")),
        ]  # fmt: skip

    lat.rows.append(row("mic frame -> append on the wire", local, "mic_to_wire", "mic_to_wire_ms"))
    lat.rows.append(row("end of speech -> complete on the wire", local, "speech_end_to_complete"))
    lat.rows.append(
        row("first audio.delta -> first sample to device", local, "first_delta_to_first_sample",
            "first_delta_to_first_sample_ms")
    )  # fmt: skip
    lat.rows.append(row("barge-in onset -> output silent", local, "barge_in_to_silent"))
    lat.rows.append(row("server speech_started -> output silent", vad, "server_speech_started_to_silent"))
    for label, source in (
        ("barge-in interrupt -> speaker silent (at the sink)", local),
        ("speech_started interrupt -> speaker silent (at the sink)", vad),
    ):
        silent = source["interrupt_to_speaker_silent_ms"]
        lat.rows.append([label, _fmt(silent["p50"]), _fmt(silent["p99"]), "n/a", "n/a", "n/a"])
    # The baseline never flushes: after the first interrupt the FIFO plays everything queued, so later
    # interrupts find their audio behind it and the run ends first. Per-interrupt means are the fair
    # comparison; voiced's figures come from the server-VAD run above, the baseline's from its process.
    base_cancelled = [float(v) for v in base.get("cancelled_played_ms", [])]
    ours = vad["cancelled_heard_ms"]
    ours_mean = ours["total"] / ours["interrupts"] if ours["interrupts"] else None
    base_mean = sum(base_cancelled) / len(base_cancelled) if base_cancelled else None
    lat.rows.append(
        [
            "cancelled audio heard after interrupt, per interrupt",
            _fmt(ours["p50"]), _fmt(ours["p99"]),
            _fmt(_p(base_cancelled, 50)), _fmt(_p(base_cancelled, 99)), "",
        ]
    )  # fmt: skip
    lat.rows.append(
        [
            "cancelled audio heard, mean per interrupt (n)",
            f"{ours_mean:.1f} ({ours['interrupts']})" if ours_mean is not None else "n/a", "",
            f"{base_mean:.1f} ({len(base_cancelled)})" if base_mean is not None else "n/a", "",
            _ratio(ours_mean, base_mean),
        ]
    )  # fmt: skip

    res = Table(
        f"Process cost, full duplex ({seconds:.0f} s of conversation after READY, server VAD, long replies "
        "interrupted; all three at once)",
        ["measure", "voiced opus", "voiced pcm", "baseline (cozepy)", "opus/baseline", "pcm/baseline"],
    )
    vo, vp, bl = procs["voiced_opus"], procs["voiced_pcm"], procs["baseline"]

    def rrow(label: str, attr: str, scale: float = 1.0, digits: int = 3) -> list[Any]:
        values = [getattr(r, attr) for r in (vo, vp, bl)]
        shown = [None if v is None else round(v * scale, digits) for v in values]
        return [label, *(_fmt(v) for v in shown), _ratio(values[0], values[2]), _ratio(values[1], values[2])]

    res.rows.append(rrow("CPU ms per s of conversation", "cpu_s_per_s", 1000.0, 1))
    res.rows.append(rrow("wake-ups per s (voluntary context switches, all threads)", "wakeups_per_s", 1.0, 0))
    res.rows.append(rrow("peak RSS (VmHWM), MB", "peak_rss_mb", 1.0, 1))
    res.rows.append(rrow("start -> READY, s", "ready_s", 1.0, 2))
    res.rows.append(rrow("uplink on the wire, kB/s", "up_bytes_per_s", 1 / 1000.0, 2))
    res.rows.append(rrow("downlink on the wire, kB/s", "down_bytes_per_s", 1 / 1000.0, 2))
    underruns: dict[str, Any] = {}
    for proc_run in (vo, vp):
        turns = voiced_turn_summaries(proc_run.log)
        underruns[proc_run.name] = sum(int(t.get("underruns") or 0) for t in turns), len(turns)
    underruns["baseline"] = (base.get("underruns"), base.get("replies"))
    shown = [f"{u} ({n})" for u, n in (underruns[k] for k in ("voiced_opus", "voiced_pcm", "baseline"))]
    res.rows.append(["underruns (replies)", *shown, "", ""])

    dev = Table(
        f"voiced run on real PortAudio (sounddevice -> ALSA pulse plugin -> private headless PulseAudio, "
        f"pipe source/sink) beside WAV devices; {seconds:.0f} s after READY; opus",
        ["measure", "full duplex, PulseAudio", "idle, PulseAudio", "idle, WAV devices", "full duplex, WAV"],
    )
    columns = [device_procs.get(k) for k in ("voiced_opus_pulse", "voiced_idle_pulse", "voiced_idle_wav")]
    columns.append(vo)

    def drow(label: str, attr: str, scale: float, digits: int) -> list[Any]:
        cells = []
        for r in columns:
            v = None if r is None else getattr(r, attr)
            cells.append(
                "n/a (no pulseaudio)" if r is None else _fmt(None if v is None else round(v * scale, digits))
            )
        return [label, *cells]

    dev.rows.append(drow("CPU ms per s", "cpu_s_per_s", 1000.0, 1))
    dev.rows.append(drow("wake-ups per s", "wakeups_per_s", 1.0, 0))
    dev.rows.append(drow("peak RSS (VmHWM), MB", "peak_rss_mb", 1.0, 1))
    dev.rows.append(drow("start -> READY, s", "ready_s", 1.0, 2))
    dev.rows.append(drow("uplink on the wire, kB/s", "up_bytes_per_s", 1 / 1000.0, 2))

    jit = Table(
        "Jitter buffer end to end (emulator downlink profiles, text turns)",
        ["profile", "underrun %", "underruns", "added latency p50 ms", "late chunks", "dropped ms"],
    )
    for p in profiles:
        jit.rows.append(
            [p["profile"], _fmt(p["underrun_pct"]), p["underruns"], _fmt(p["added_latency_ms_p50"]),
             p["late_chunks"], p["dropped_ms"]]
        )  # fmt: skip

    data: dict[str, Any] = {
        "latency_client_interrupt": local,
        "latency_server_vad": vad,
        "processes": {
            r.name: {
                "cpu_s_per_s": r.cpu_s_per_s,
                "peak_rss_mb": r.peak_rss_mb,
                "wakeups_per_s": r.wakeups_per_s,
                "ready_s": r.ready_s,
                "up_bytes_per_s": r.up_bytes_per_s,
                "down_bytes_per_s": r.down_bytes_per_s,
                "underruns_replies": underruns.get(r.name),
            }
            for r in (vo, vp, bl, *device_procs.values())
        },
        "baseline_self_measured": base,
        "jitter_profiles": profiles,
        "conversation_s": seconds,
        "phase_s": {k: round(v, 1) for k, v in phase_s.items()},
    }
    return BenchReport(tables=[lat, res, dev, jit], data=data)


#: The whole module's limit: every await inside has its own, this catches anything that slips through.
_RUN_TIMEOUT_S = {True: 240.0, False: 1200.0}


def run(quick: bool) -> BenchReport:
    """Everything above; ``quick`` keeps it to well under a minute."""
    return run_within(_run(quick), _RUN_TIMEOUT_S[quick], "end-to-end benchmark")


if __name__ == "__main__":
    report = run(quick="--quick" in sys.argv)
    for table in report.tables:
        print(table.render())
        print()
