"""Shared helpers for the audio tests: fixture loading and synthetic signals (deterministic)."""

from __future__ import annotations

import base64
import json
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiced.audio.frames import Int16Array

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TRACES = FIXTURES / "traces"
UTTERANCE = REPO / "voiced" / "assets" / "utterance_16k.wav"
LIGHTS = FIXTURES / "audio" / "lights_16k.wav"


def read_wav(path: Path) -> tuple[Int16Array, int]:
    """(int16 samples, rate) of a mono s16le WAV."""
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        return data, w.getframerate()


def speech_edges(name: str) -> tuple[float, float]:
    """True (start_s, end_s) of the speech in a fixture, from edges.json."""
    edges = json.loads((FIXTURES / "audio" / "edges.json").read_text())[name]
    return float(edges["speech_start_s"]), float(edges["speech_end_s"])


def sine(freq_hz: float, duration_s: float, rate_hz: int, amplitude: float = 8000.0) -> Int16Array:
    """A sine tone as int16."""
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    return np.round(np.sin(2 * np.pi * freq_hz * t) * amplitude).astype(np.int16)


def speechlike(duration_s: float, rate_hz: int, seed: int = 0) -> Int16Array:
    """Noise shaped like voiced speech: a 120 Hz pulse train through formant-ish bands, syllabic AM."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    f0 = 120.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = np.cumsum(2 * np.pi * f0 / rate_hz)
    source = np.sign(np.sin(phase)) * 0.6 + rng.normal(0, 0.2, n)
    spectrum = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(n, 1 / rate_hz)
    shape = sum(np.exp(-((freqs - f) ** 2) / (2 * 150.0**2)) for f in (500.0, 1500.0, 2500.0))
    shaped = np.fft.irfft(spectrum * shape, n)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    shaped = shaped * envelope
    shaped = shaped / np.max(np.abs(shaped)) * 12000.0
    out: Int16Array = np.round(shaped).astype(np.int16)
    return out


def noise(duration_s: float, rate_hz: int, rms: float = 30.0, seed: int = 1) -> Int16Array:
    """Low-level white noise (a quiet room)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, rms, int(duration_s * rate_hz))).astype(np.int16)


@dataclass(frozen=True)
class TraceDelta:
    """One audio delta of a recorded session: server time (s, relative) and the PCM."""

    at_s: float
    chat_id: str
    pcm: bytes


@dataclass(frozen=True)
class TraceReply:
    """The audio part of a recorded session."""

    deltas: list[TraceDelta]
    completed_at_s: float
    chat_id: str


def load_trace(name: str = "websocket_chat_success") -> TraceReply:
    """Parse the trace file directly (pairs of lines: direction, JSON) into its audio timeline."""
    lines = (TRACES / f"{name}.txt").read_text().splitlines()
    deltas: list[TraceDelta] = []
    completed_ms: int | None = None
    t0_ms: int | None = None
    chat_id = ""
    for direction, raw in zip(lines[0::2], lines[1::2], strict=True):
        if direction != "receive":
            continue
        event = json.loads(raw)
        at_ms = int(event["detail"]["respond_at"])
        if event["event_type"] == "conversation.audio.delta":
            if t0_ms is None:
                t0_ms = at_ms
            chat_id = event["data"]["chat_id"]
            deltas.append(TraceDelta(at_ms / 1000.0, chat_id, base64.b64decode(event["data"]["content"])))
        elif event["event_type"] == "conversation.audio.completed":
            completed_ms = at_ms
    assert t0_ms is not None and completed_ms is not None
    rel = [TraceDelta(d.at_s - t0_ms / 1000.0, d.chat_id, d.pcm) for d in deltas]
    return TraceReply(rel, (completed_ms - t0_ms) / 1000.0, chat_id)
