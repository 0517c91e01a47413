#!/usr/bin/env python3
"""Regenerate voiced/assets/wake_utterance_16k.wav, the demo's microphone in wake_word mode.

    python scripts/make_wake_utterance.py

"Okay Nabu, what time is it?" in espeak-ng's en-us voice at 160 words per minute, 16 kHz mono
s16le: 0.5 s of a quiet room's noise, "Okay Nabu", a 0.45 s breath, "what time is it?", then 1.0 s
of noise. The pause is what a person leaves after a wake word said in one breath; the device wakes
during it and takes what follows as the turn. Prints where each part starts and ends.
"""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiced.audio.resample import resample  # noqa: E402

OUT = ROOT / "voiced" / "assets" / "wake_utterance_16k.wav"
RATE_HZ = 16000
LEAD_S = 0.5
PAUSE_S = 0.45
TRAIL_S = 1.0
NOISE_RMS = 30.0  # about -61 dBFS, as the other bundled utterance


def speech(text: str) -> np.ndarray:
    """espeak-ng at 16 kHz with the silence around it trimmed."""
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    pcm = resample(data, rate, RATE_HZ)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 200)
    return pcm[loud[0] : loud[-1] + 1]


def main() -> int:
    wake = speech("Okay Nabu")
    command = speech("what time is it?")
    parts = [np.zeros(int(LEAD_S * RATE_HZ)), wake, np.zeros(int(PAUSE_S * RATE_HZ)), command]
    parts.append(np.zeros(int(TRAIL_S * RATE_HZ)))
    signal = np.concatenate([p.astype(np.float64) for p in parts])
    signal += np.random.default_rng(11).normal(0.0, NOISE_RMS, signal.size)
    pcm = np.clip(np.round(signal), -32768, 32767).astype("<i2")
    with wave.open(str(OUT), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(pcm.tobytes())
    wake_end_s = LEAD_S + wake.size / RATE_HZ
    command_start_s = wake_end_s + PAUSE_S
    command_end_s = command_start_s + command.size / RATE_HZ
    print(
        f"{OUT.name}: wake word {LEAD_S:.3f}-{wake_end_s:.3f} s, "
        f"command {command_start_s:.3f}-{command_end_s:.3f} s, total {pcm.size / RATE_HZ:.3f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
