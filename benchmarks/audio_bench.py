"""Audio engine benchmarks.

1. CPU time per second of audio (ms of CPU per s of audio, one core) for
   - uplink:   capture ring -> (resample to 16 kHz) -> 20 ms frames -> turn detector -> encoder
   - downlink: decoder -> jitter buffer -> 20 ms pulls -> (resample to 48 kHz) -> device ring
   at 16 and 24 kHz, Opus and PCM, on real espeak-ng speech.
2. The adaptive jitter buffer against a naive FIFO player that starts on the first sample (what the
   official clients do), on the same arrivals: the recorded server's bursts; paced 20/60 ms packets
   with 0/30/100 ms of jitter; Wi-Fi delay spikes (200-500 ms stalls every few seconds, then a
   burst: over TCP nothing is lost, it is late); a 4G-like link. Underruns (count and ms per minute
   of audio) and added latency. A FIFO plays every sample as early as possible, so no player adds
   less latency without dropping audio: the adaptive buffer's aim is fewer underruns for at most its
   start-up target of extra latency.
"""

from __future__ import annotations

import base64
import json
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from voiced.audio.codec import make_decoder, make_encoder
from voiced.audio.frames import FrameAssembler, Int16Array
from voiced.audio.jitter import JitterBuffer
from voiced.audio.resample import StreamResampler, resample
from voiced.audio.ring import SpscRing
from voiced.audio.settings import JitterSettings, OpusSettings, VadSettings
from voiced.audio.vad import TurnDetector

NAME = "audio"
REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "tests" / "fixtures" / "audio" / "lights_16k.wav"
TRACE = REPO / "tests" / "fixtures" / "traces" / "websocket_chat_success.txt"
DEVICE_RATE_HZ = 48000
_JITTER_CORRELATION_MS = 200.0


def _speech(seconds: float, rate_hz: int) -> Int16Array:
    with wave.open(str(SPEECH)) as w:
        base = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    base = resample(base, 16000, rate_hz)
    reps = int(np.ceil(seconds * rate_hz / base.size))
    return np.tile(base, reps)[: int(seconds * rate_hz)]


# -- 1. CPU -----------------------------------------------------------------------------------------
def _uplink_cpu_ms_per_s(rate_hz: int, codec: str, seconds: float) -> float:
    audio = _speech(seconds, rate_hz)
    block = rate_hz // 50
    ring = SpscRing(rate_hz)
    resampler = StreamResampler(rate_hz, 16000)
    frames = FrameAssembler(320)
    detector = TurnDetector(VadSettings())
    encoder = make_encoder(codec, 16000, 20, OpusSettings())  # type: ignore[arg-type]
    started = time.process_time()
    t_s = 0.0
    for i in range(0, audio.size - block + 1, block):
        ring.write(audio[i : i + block])  # what the capture callback does
        chunk = ring.read(ring.readable())
        for frame in frames.push(resampler.process(chunk).tobytes()):
            detector.feed(frame, t_s)
            encoder.encode(frame)
            t_s += 0.02
    return (time.process_time() - started) * 1000.0 / seconds


def _downlink_cpu_ms_per_s(rate_hz: int, codec: str, seconds: float) -> float:
    audio = _speech(seconds, rate_hz)
    block = rate_hz // 50
    encoder = make_encoder(codec, rate_hz, 20, OpusSettings())  # type: ignore[arg-type]
    payloads = [
        encoder.encode(audio[i : i + block].tobytes()) for i in range(0, audio.size - block + 1, block)
    ]
    decoder = make_decoder(codec, rate_hz)  # type: ignore[arg-type]
    jitter = JitterBuffer(rate_hz, JitterSettings())
    to_device = StreamResampler(rate_hz, DEVICE_RATE_HZ)
    ring = SpscRing(DEVICE_RATE_HZ)
    out = np.zeros(DEVICE_RATE_HZ // 50, dtype=np.int16)
    started = time.process_time()
    for k, payload in enumerate(payloads):
        now = k * 0.02
        jitter.push("chat", decoder.decode(payload), now)
        ring.write(to_device.process(jitter.pull(block, now)))
        ring.read_into(out)  # what the playback callback does
    return (time.process_time() - started) * 1000.0 / seconds


def bench_cpu(quick: bool) -> tuple[Table, list[dict[str, Any]]]:
    seconds = 5.0 if quick else 30.0
    table = Table(
        f"CPU per second of audio (ms CPU / s audio, {seconds:.0f} s of speech; device at 48 kHz)",
        ["path", "rate", "codec", "ms/s", "% of a core"],
    )
    rows: list[dict[str, Any]] = []
    for path, fn in (
        ("capture->vad->encode", _uplink_cpu_ms_per_s),
        ("decode->jitter->playout", _downlink_cpu_ms_per_s),
    ):
        for rate in (16000, 24000):
            for codec in ("opus", "pcm"):
                ms = fn(rate, codec, seconds)
                table.rows.append([path, f"{rate // 1000} kHz", codec, ms, ms / 10.0])
                rows.append(
                    {"path": path, "rate_hz": rate, "codec": codec, "cpu_ms_per_audio_s": round(ms, 3)}
                )
    return table, rows


# -- 2. Jitter --------------------------------------------------------------------------------------
class NaiveFifo:
    """What the official clients do: play from the first sample, pause on empty, never adapt."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self._queue: list[Int16Array] = []
        self._pos = 0
        self.depth = 0
        self.played = 0
        self.complete = False

    def push(self, pcm: Int16Array) -> None:
        self._queue.append(pcm)
        self.depth += int(pcm.size)

    def pull(self, n: int) -> Int16Array:
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._queue:
            head = self._queue[0]
            k = min(n - filled, head.size - self._pos)
            out[filled : filled + k] = head[self._pos : self._pos + k]
            filled += k
            self._pos += k
            if self._pos == head.size:
                self._queue.pop(0)
                self._pos = 0
        self.depth -= filled
        self.played += filled
        return out


@dataclass
class Arrivals:
    """Chunks with arrival time (s) and the ideal time (s) their first sample could be played."""

    times_s: list[float]
    chunks: list[Int16Array]
    complete_at_s: float


def trace_arrivals() -> Arrivals:
    lines = TRACE.read_text().splitlines()
    times: list[float] = []
    chunks: list[Int16Array] = []
    complete_ms = 0
    t0: int | None = None
    for direction, raw in zip(lines[0::2], lines[1::2], strict=True):
        if direction != "receive":
            continue
        event = json.loads(raw)
        at = int(event["detail"]["respond_at"])
        if event["event_type"] == "conversation.audio.delta":
            t0 = at if t0 is None else t0
            times.append((at - t0) / 1000.0)
            chunks.append(
                np.frombuffer(base64.b64decode(event["data"]["content"]), dtype="<i2").astype(np.int16)
            )
        elif event["event_type"] == "conversation.audio.completed":
            complete_ms = at
    assert t0 is not None
    return Arrivals(times, chunks, (complete_ms - t0) / 1000.0)


def paced_arrivals(seconds: float, packet_ms: int, jitter_ms: float, loss: float, seed: int) -> Arrivals:
    """Packets sent every `packet_ms`, each delayed by 0..jitter_ms over an in-order transport
    (a WebSocket is TCP: a late packet holds back the ones behind it). A lost packet is noticed
    when the next one arrives, and the decoder conceals it: the next delivery carries PLC for the
    gap plus its own audio (zeros stand in for PLC here; only timing matters)."""
    rng = np.random.default_rng(seed)
    rate = 24000
    n = rate * packet_ms // 1000
    audio = _speech(seconds, rate)
    times: list[float] = []
    chunks: list[Int16Array] = []
    last_arrival = 0.0
    lost_samples = 0
    # Network delay wanders (Wi-Fi contention, cellular scheduling) rather than being independent
    # per packet: an AR(1) process with a ~200 ms correlation time, spanning 0..jitter_ms.
    corr = float(np.exp(-packet_ms / _JITTER_CORRELATION_MS))
    y = 0.0
    for i in range(audio.size // n):
        y = corr * y + float(np.sqrt(1 - corr * corr)) * rng.normal(0.0, 0.3)
        delay_s = jitter_ms / 1000.0 * min(1.0, max(0.0, 0.5 + y))
        if rng.random() < loss:
            lost_samples += n
            continue
        arrival = max(last_arrival, i * packet_ms / 1000.0 + delay_s)
        last_arrival = arrival
        chunk = audio[i * n : (i + 1) * n]
        if lost_samples:
            chunk = np.concatenate([np.zeros(lost_samples, dtype=np.int16), chunk])
            lost_samples = 0
        times.append(arrival)
        chunks.append(chunk)
    return Arrivals(times, chunks, last_arrival)


def _in_order(send_s: np.ndarray, delay_s: np.ndarray) -> list[float]:
    """Arrival times over TCP: a late packet holds back every packet behind it."""
    arrivals: list[float] = []
    last = 0.0
    for sent, delay in zip(send_s, delay_s, strict=True):
        last = max(last, float(sent + delay))
        arrivals.append(last)
    return arrivals


def _paced_chunks(seconds: float, packet_ms: int) -> tuple[np.ndarray, list[Int16Array]]:
    rate = 24000
    n = rate * packet_ms // 1000
    audio = _speech(seconds, rate)
    count = audio.size // n
    send_s = np.arange(count) * packet_ms / 1000.0
    return send_s, [audio[i * n : (i + 1) * n] for i in range(count)]


def spike_arrivals(
    seconds: float, stall_ms: tuple[float, float], every_s: tuple[float, float], seed: int
) -> Arrivals:
    """Wi-Fi over TCP: 20 ms packets with 20-30 ms of delay, and every `every_s` (uniform) a stall of
    `stall_ms` (uniform) while the link retransmits, after which everything sent meanwhile arrives at
    once (a burst)."""
    rng = np.random.default_rng(seed)
    send_s, chunks = _paced_chunks(seconds, 20)
    delay_s = 0.020 + rng.uniform(0.0, 0.010, send_s.size)
    t = float(rng.uniform(*every_s))
    while t < seconds:
        stall_s = float(rng.uniform(*stall_ms)) / 1000.0
        inside = (send_s >= t) & (send_s < t + stall_s)
        delay_s[inside] = t + stall_s + 0.020 - send_s[inside]
        t += stall_s + float(rng.uniform(*every_s))
    times = _in_order(send_s, delay_s)
    return Arrivals(times, chunks, times[-1])


def cellular_arrivals(seconds: float, seed: int) -> Arrivals:
    """4G-like: 40 ms base delay, a wandering 0-60 ms of extra delay (AR(1), ~100 ms correlation),
    deliveries batched on a 10 ms scheduling grid, and a 150-300 ms handover stall every 8-15 s."""
    rng = np.random.default_rng(seed)
    send_s, chunks = _paced_chunks(seconds, 20)
    corr = float(np.exp(-20.0 / 100.0))
    y = 0.0
    delay_s = np.empty(send_s.size)
    for i in range(send_s.size):
        y = corr * y + float(np.sqrt(1 - corr * corr)) * rng.normal(0.0, 0.3)
        delay_s[i] = 0.040 + 0.060 * min(1.0, max(0.0, 0.5 + y))
    t = float(rng.uniform(8.0, 15.0))
    while t < seconds:
        stall_s = float(rng.uniform(0.150, 0.300))
        inside = (send_s >= t) & (send_s < t + stall_s)
        delay_s[inside] = np.maximum(delay_s[inside], t + stall_s + 0.040 - send_s[inside])
        t += stall_s + float(rng.uniform(8.0, 15.0))
    arrive_s = np.ceil((send_s + delay_s) / 0.010) * 0.010
    times = _in_order(np.zeros(send_s.size), arrive_s)
    return Arrivals(times, chunks, times[-1])


@dataclass
class PlayResult:
    underruns: int
    underrun_ms: float
    start_delay_ms: float
    mean_latency_ms: float
    p95_latency_ms: float
    audio_s: float


def simulate(arrivals: Arrivals, adaptive: bool, rate_hz: int = 24000) -> PlayResult:
    """Pull 20 ms blocks on a fixed clock; measure underruns and each chunk's playout latency."""
    block = rate_hz // 50
    jb = JitterBuffer(rate_hz, JitterSettings())
    naive = NaiveFifo(rate_hz)
    starts: list[int] = []  # media position (samples) of each chunk's first sample
    pos = 0
    for c in arrivals.chunks:
        starts.append(pos)
        pos += int(c.size)
    total = pos
    played_at: list[tuple[float, int]] = []  # (time of pull, played samples after it)
    k = 0
    step = 0
    complete = False
    naive_underruns = 0
    naive_underrun = 0
    naive_starving = False
    while True:
        t = step * 0.02
        # Integer steps and a tolerance: a packet due exactly at a pull must be there for it.
        while k < len(arrivals.chunks) and arrivals.times_s[k] <= t + 1e-9:
            if adaptive:
                jb.push("c", arrivals.chunks[k], t)
            else:
                naive.push(arrivals.chunks[k])
            k += 1
        if not complete and t + 1e-9 >= arrivals.complete_at_s and k == len(arrivals.chunks):
            complete = True
            jb.complete("c")
        if adaptive:
            jb.pull(block, t)
            # Dropped audio (the oldest, at the ceiling) moves the media position on as playing does.
            played = round((jb.played_ms("c") + jb.stats().dropped_ms) * rate_hz / 1000)
        else:
            before = naive.played
            naive.pull(block)
            got = naive.played - before
            if naive.played > 0 and got < block and not complete:
                naive_underrun += block - got
                if not naive_starving:
                    naive_underruns += 1
                naive_starving = True
            elif got == block:
                naive_starving = False
            played = naive.played
        played_at.append((t, played))
        step += 1
        if played >= total or t > arrivals.complete_at_s + 30:
            break
    times = np.array([p[0] for p in played_at])
    counts = np.array([p[1] for p in played_at])
    latencies = []
    for start, arrive in zip(starts, arrivals.times_s, strict=True):
        idx = int(np.searchsorted(counts, start + 1))
        if idx >= counts.size:
            continue
        before = counts[idx - 1] if idx > 0 else 0
        t_play = times[idx] + (start - before) / rate_hz
        # Added latency: beyond the later of the chunk's arrival and the moment its media offset
        # could play had playback started at the first arrival (a burst sent ahead of real time
        # cannot be played sooner than that by any player).
        earliest = max(arrive, arrivals.times_s[0] + start / rate_hz)
        latencies.append((t_play - earliest) * 1000.0)
    lat = np.array(latencies) if latencies else np.zeros(1)
    stats = jb.stats()
    return PlayResult(
        underruns=stats.underruns if adaptive else naive_underruns,
        underrun_ms=stats.underrun_ms if adaptive else naive_underrun * 1000.0 / rate_hz,
        start_delay_ms=float(lat[0]),
        mean_latency_ms=float(np.mean(lat)),
        p95_latency_ms=float(np.percentile(lat, 95)),
        audio_s=total / rate_hz,
    )


def bench_jitter(quick: bool) -> tuple[Table, Table, list[dict[str, Any]]]:
    seconds = 10.0 if quick else 60.0
    seeds = [1] if quick else [1, 2, 3]
    scenarios: list[tuple[str, list[Arrivals]]] = [("trace bursts (real server)", [trace_arrivals()])]
    for packet_ms in (20, 60):
        for jitter_ms in (0.0, 30.0, 100.0):
            scenarios.append(
                (
                    f"paced {packet_ms} ms, jitter {jitter_ms:.0f} ms",
                    [paced_arrivals(seconds, packet_ms, jitter_ms, 0.0, s) for s in seeds],
                )
            )
    for label, stall, every in (
        ("spikes 200-500 ms every 2-6 s", (200.0, 500.0), (2.0, 6.0)),
        ("spikes 200-300 ms every 3-5 s", (200.0, 300.0), (3.0, 5.0)),
    ):
        scenarios.append((label, [spike_arrivals(seconds, stall, every, s) for s in seeds]))
    scenarios.append(
        ("4G-like (jitter, batching, handovers)", [cellular_arrivals(seconds, s) for s in seeds])
    )
    table = Table(
        "Jitter buffer vs naive FIFO (added latency = first sample played - max(arrival, real-time "
        "schedule from the first arrival); 20 ms pulls)",
        [
            "scenario",
            "player",
            "underruns/min",
            "underrun ms/min",
            "start ms",
            "mean added ms",
            "p95 added ms",
        ],
    )
    rows: list[dict[str, Any]] = []
    verdict = Table(
        "Adaptive vs FIFO per profile (underrun: adaptive <= FIFO; latency: extra mean added ms, "
        f"bounded by the start-up target of {JitterSettings().min_delay_ms:.0f} ms)",
        ["scenario", "underrun ms/min adaptive / FIFO", "underrun not worse", "extra mean added ms"],
    )
    for name, runs in scenarios:
        by_player: dict[str, dict[str, Any]] = {}
        for player, adaptive in (("adaptive", True), ("naive FIFO", False)):
            results = [simulate(a, adaptive) for a in runs]
            minutes = sum(r.audio_s for r in results) / 60.0
            row = {
                "scenario": name,
                "player": player,
                "underruns_per_min": sum(r.underruns for r in results) / minutes,
                "underrun_ms_per_min": sum(r.underrun_ms for r in results) / minutes,
                "start_delay_ms": float(np.mean([r.start_delay_ms for r in results])),
                "mean_added_latency_ms": float(np.mean([r.mean_latency_ms for r in results])),
                "p95_added_latency_ms": float(np.mean([r.p95_latency_ms for r in results])),
            }
            by_player[player] = row
            rows.append({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
            table.rows.append([name, player, *(row[k] for k in list(row)[2:])])
        ada, fifo = by_player["adaptive"], by_player["naive FIFO"]
        not_worse = ada["underrun_ms_per_min"] <= fifo["underrun_ms_per_min"] + 1e-6
        extra_ms = ada["mean_added_latency_ms"] - fifo["mean_added_latency_ms"]
        verdict.rows.append(
            [
                name,
                f"{ada['underrun_ms_per_min']:.1f} / {fifo['underrun_ms_per_min']:.1f}",
                "yes" if not_worse else "NO",
                round(extra_ms, 2),
            ]
        )
        rows.append(
            {
                "scenario": name,
                "player": "verdict",
                "underrun_not_worse": not_worse,
                "extra_added_ms": round(extra_ms, 2),
            }
        )
    return table, verdict, rows


def run(quick: bool) -> BenchReport:
    """Both benchmarks; `quick` keeps them to a few seconds."""
    cpu_table, cpu_rows = bench_cpu(quick)
    jitter_table, verdict_table, jitter_rows = bench_jitter(quick)
    return BenchReport(
        tables=[cpu_table, jitter_table, verdict_table], data={"cpu": cpu_rows, "jitter": jitter_rows}
    )
