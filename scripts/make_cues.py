#!/usr/bin/env python3
"""Synthesize the feedback sounds into voiced/assets/cues/*.wav (numpy only; deterministic).

    python scripts/make_cues.py            # rewrite the four WAVs
    python scripts/make_cues.py --check    # exit 1 if the committed files differ from a fresh render

Each sound is a few sine partials with a smooth attack and an exponential decay, at 24 kHz mono
16-bit, peaking at -6 dBFS (the player scales by listen.cue_volume_pct). Rising means "listening",
falling means "done"; the error sounds are low and rough so they are not mistaken for either.
"""

from __future__ import annotations

import argparse
import io
import sys
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE_HZ = 24000
PEAK = 10 ** (-6 / 20)
OUT_DIR = Path(__file__).resolve().parent.parent / "voiced" / "assets" / "cues"

Signal = npt.NDArray[np.float64]


def note(
    freq_hz: float, duration_s: float, *, decay_s: float, harmonics: tuple[float, ...] = (1.0,)
) -> Signal:
    """One note: harmonic partials with relative amplitudes ``harmonics``, 5 ms attack, exp decay."""
    t = np.arange(round(duration_s * RATE_HZ)) / RATE_HZ
    tone = sum(a * np.sin(2 * np.pi * freq_hz * (k + 1) * t) for k, a in enumerate(harmonics))
    attack = np.minimum(1.0, t / 0.005)
    release = np.minimum(1.0, (duration_s - t) / 0.010)  # no click at the end
    return np.asarray(tone * attack * release * np.exp(-t / decay_s), dtype=np.float64)


def sequence(*parts: tuple[Signal, float]) -> Signal:
    """Mix notes, each starting at its offset in seconds."""
    end = max(round(offset * RATE_HZ) + sig.size for sig, offset in parts)
    out = np.zeros(end)
    for sig, offset in parts:
        start = round(offset * RATE_HZ)
        out[start : start + sig.size] += sig
    return out


def render() -> dict[str, Signal]:
    """The four sounds, normalized to the same peak."""
    bell = (1.0, 0.3, 0.1)
    rough = (1.0, 0.6, 0.45, 0.3, 0.2)
    sounds = {
        # Two rising notes (E6 then B6): "I'm listening".
        "wake": sequence((note(1318.5, 0.14, decay_s=0.08, harmonics=bell), 0.0),
                         (note(1975.5, 0.20, decay_s=0.10, harmonics=bell), 0.08)),
        # The same two notes falling: "going back to sleep".
        "done": sequence((note(1975.5, 0.14, decay_s=0.08, harmonics=bell), 0.0),
                         (note(1318.5, 0.22, decay_s=0.10, harmonics=bell), 0.08)),
        # Two low pulses on one pitch: "no connection, trying again".
        "offline": sequence((note(392.0, 0.16, decay_s=0.12, harmonics=rough), 0.0),
                            (note(392.0, 0.16, decay_s=0.12, harmonics=rough), 0.25)),
        # Three descending low notes: "I cannot work (token or configuration)".
        "fatal": sequence((note(440.0, 0.18, decay_s=0.15, harmonics=rough), 0.0),
                          (note(349.2, 0.18, decay_s=0.15, harmonics=rough), 0.22),
                          (note(261.6, 0.35, decay_s=0.20, harmonics=rough), 0.44)),
    }
    return {kind: sig * (PEAK / np.max(np.abs(sig))) for kind, sig in sounds.items()}


def wav_bytes(signal: Signal) -> bytes:
    """16-bit mono WAV of ``signal`` (floats in [-1, 1])."""
    pcm = np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files only")
    args = parser.parse_args(argv)
    stale = []
    for kind, signal in render().items():
        path = OUT_DIR / f"{kind}.wav"
        data = wav_bytes(signal)
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(path.name)
            continue
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path.name}: {signal.size / RATE_HZ * 1000:.0f} ms")
    if stale:
        print(f"stale: {', '.join(stale)}: run python scripts/make_cues.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
