"""Opus for the uplink: quality against CPU at complexity 0-10, and the packet size (`frame_ms`).

Speech: the quiet and the noisy turns of `benchmarks.speech_corpus` (five espeak-ng voices, three
speeds), 16 kHz,
the default 24 kbit/s, VOIP application, FEC on. Per complexity:

- encode µs per 20 ms frame (process CPU, best of repeats);
- log-spectral distance (dB, lower is better) between the input and the decoded output over the
  frames that carry speech: what changes the sound, regardless of phase;
- segmental SNR (dB, higher is better) of the time-aligned waveform over the same frames (Opus is
  perceptual, so this is modest and mostly tracks how much of the waveform is coded).

Per packet size (20/40/60 ms) at the default complexity: encode CPU and appends per second of audio
and uplink bytes per second as JSON on the wire (the payload as base64 inside the append envelope).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks import BenchReport, Table
from benchmarks.speech_corpus import build
from voiced.audio.codec import make_decoder, make_encoder, make_packet_encoder
from voiced.audio.settings import OpusSettings
from voiced.protocol.append import append_frame

NAME = "opus"
RATE_HZ = 16000
FRAME = 320


def _speech(quick: bool, condition: str) -> np.ndarray:
    turns = [t for t in build(count=5 if quick else 15) if t.condition == condition]
    return np.concatenate([t.samples for t in turns])


def _roundtrip(signal: np.ndarray, complexity: int) -> tuple[np.ndarray, float]:
    enc = make_encoder("opus", RATE_HZ, 20, OpusSettings(complexity=complexity))
    dec = make_decoder("opus", RATE_HZ)
    frames = [signal[i : i + FRAME].tobytes() for i in range(0, signal.size - FRAME + 1, FRAME)]
    started = time.process_time()
    packets = [enc.encode(f) for f in frames]
    us = (time.process_time() - started) * 1e6 / len(frames)
    out = np.frombuffer(b"".join(dec.decode(p) for p in packets), dtype=np.int16)
    return out, us


def _align(ref: np.ndarray, out: np.ndarray, max_lag: int = 640) -> tuple[np.ndarray, np.ndarray]:
    probe = ref[: min(ref.size, 5 * RATE_HZ)].astype(np.float64)
    scores = [float(np.dot(probe, out[lag : lag + probe.size].astype(np.float64))) for lag in range(max_lag)]
    lag = int(np.argmax(scores))
    n = min(ref.size, out.size - lag)
    return ref[:n].astype(np.float64), out[lag : lag + n].astype(np.float64)


def _quality(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(log-spectral distance dB, segmental SNR dB) over 32 ms windows that carry speech."""
    win = 512
    hop = 256
    window = np.hanning(win)
    lsd: list[float] = []
    seg: list[float] = []
    for i in range(0, ref.size - win, hop):
        r = ref[i : i + win]
        o = out[i : i + win]
        energy = float(np.mean(r**2))
        if energy < (32768.0 * 10 ** (-45 / 20)) ** 2:  # skip pauses and room noise
            continue
        pr = np.abs(np.fft.rfft(r * window)) ** 2 + 1e-3
        po = np.abs(np.fft.rfft(o * window)) ** 2 + 1e-3
        lsd.append(float(np.sqrt(np.mean((10 * np.log10(pr) - 10 * np.log10(po)) ** 2))))
        err = float(np.mean((r - o) ** 2))
        seg.append(float(np.clip(10 * np.log10(energy / max(err, 1e-9)), -10.0, 35.0)))
    return float(np.mean(lsd)), float(np.mean(seg))


def _packet_rows(signal: np.ndarray, complexity: int) -> list[dict[str, Any]]:
    rows = []
    seconds = signal.size / RATE_HZ
    frames = [signal[i : i + FRAME].tobytes() for i in range(0, signal.size - FRAME + 1, FRAME)]
    for frame_ms in (20, 40, 60):
        packer = make_packet_encoder(
            "opus", RATE_HZ, 20, OpusSettings(complexity=complexity, frame_ms=frame_ms)
        )
        started = time.process_time()
        wire_bytes = 0
        count = 0
        for f in frames:
            for packet in packer.push(f):
                wire_bytes += len(append_frame(packet, "0123456789ab-1234"))
                count += 1
        cpu_ms = (time.process_time() - started) * 1000.0
        rows.append(
            {
                "frame_ms": frame_ms,
                "appends_per_s": round(count / seconds, 1),
                "encode_and_append_cpu_ms_per_s": round(cpu_ms / seconds, 3),
                "uplink_json_bytes_per_s": round(wire_bytes / seconds),
            }
        )
    return rows


def run(quick: bool) -> BenchReport:
    """Complexity sweep and packet sizes; `quick` uses a third of the speech."""
    signal = _speech(quick, "quiet")
    noisy = _speech(quick, "noisy")
    table = Table(
        f"Opus 16 kHz 24 kbit/s, {signal.size / RATE_HZ:.0f} s of espeak-ng speech per room: quality vs CPU",
        [
            "complexity",
            "encode µs/frame",
            "LSD dB quiet",
            "seg SNR dB quiet",
            "LSD dB noisy",
            "seg SNR dB noisy",
        ],
    )
    rows: list[dict[str, Any]] = []
    repeats = 1 if quick else 3
    for complexity in range(11):
        best_us = float("inf")
        out = np.zeros(0, dtype=np.int16)
        for _ in range(repeats):
            out, us = _roundtrip(signal, complexity)
            best_us = min(best_us, us)
        lsd, seg = _quality(*_align(signal, out))
        noisy_out, _ = _roundtrip(noisy, complexity)
        lsd_noisy, seg_noisy = _quality(*_align(noisy, noisy_out))
        table.rows.append([complexity, best_us, lsd, seg, lsd_noisy, seg_noisy])
        rows.append(
            {
                "complexity": complexity,
                "encode_us_per_frame": round(best_us, 2),
                "log_spectral_distance_db": round(lsd, 3),
                "segmental_snr_db": round(seg, 3),
                "log_spectral_distance_db_noisy": round(lsd_noisy, 3),
                "segmental_snr_db_noisy": round(seg_noisy, 3),
            }
        )
    default = OpusSettings().complexity
    packets = _packet_rows(signal, default)
    packet_table = Table(
        f"Opus packet size at complexity {default}: encoder + append serialisation per second of audio",
        ["frame_ms", "appends/s", "CPU ms/s", "uplink JSON bytes/s"],
        [[p[k] for k in p] for p in packets],
    )
    return BenchReport(
        tables=[table, packet_table],
        data={"complexity": rows, "packet_size": packets, "speech_s": round(signal.size / RATE_HZ, 1)},
    )


if __name__ == "__main__":
    for t in run(quick=True).tables:
        print(t.render())
