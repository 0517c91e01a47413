"""A reproducible corpus of spoken turns with natural pauses, synthesised with espeak-ng.

Each turn is a few phrases ("Turn on the lights", "um", "in the kitchen") spoken by one of several
espeak-ng voices at one of several speeds, with the pauses people leave between clauses and around
hesitations (150-900 ms, drawn from a seeded generator), between a lead-in and a tail of room noise,
in two conditions: a quiet room (about -60 dBFS of noise) and a noisy one (pink noise 15 dB below
the speech). The ground truth is exact: where speech starts, where it ends, and every internal pause.

    python -m benchmarks.speech_corpus --out DIR [--count N] [--seed S]

writes DIR/NNN-quiet.wav, DIR/NNN-noisy.wav (16 kHz mono s16le) and DIR/corpus.json (the truth).
The same seed and espeak-ng version give the same corpus; the benchmarks build it in memory.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import subprocess
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.audio.resample import resample

RATE_HZ = 16000
ESPEAK_TIMEOUT_S = 20.0
LEAD_S = 1.0
TAIL_S = 2.5
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m3", "en-029")
SPEEDS_WPM = (140, 160, 185)

# Turns as phrases; "um"/"uh"/"so" are hesitations (longer pauses around them).
TURNS: tuple[tuple[str, ...], ...] = (
    ("Turn on the lights", "in the kitchen", "and the hallway"),
    ("What is the weather", "um", "tomorrow morning"),
    ("Set a timer", "for", "twelve minutes"),
    ("Can you remind me", "uh", "to call my sister", "at six"),
    ("Play some music", "something quiet"),
    ("How long does it take", "to get to the airport", "by train"),
    ("I need", "um", "a recipe", "for pancakes", "without eggs"),
    ("Add milk", "bread", "and coffee", "to the shopping list"),
    ("What time is it", "in Tokyo"),
    ("So", "the meeting tomorrow", "can you move it", "to the afternoon"),
    ("Tell me a joke", "a short one"),
    ("Is the front door locked", "or did I", "uh", "leave it open"),
)
_HESITATIONS = frozenset({"um", "uh", "so", "for", "or did i"})


@dataclass(frozen=True)
class Turn:
    """One spoken turn: the samples and its ground truth (seconds from the first sample)."""

    name: str
    condition: str
    text: str
    voice: str
    speed_wpm: int
    speech_start_s: float
    speech_end_s: float
    pauses_s: tuple[tuple[float, float], ...]  # (start, end) of every pause inside the turn
    samples: Int16Array

    def truth(self) -> dict[str, object]:
        """The JSON-able ground truth (no samples)."""
        out = asdict(self)
        out.pop("samples")
        return out


@functools.lru_cache(maxsize=512)
def synthesise(text: str, voice: str, speed_wpm: int) -> Int16Array:
    """espeak-ng speech for `text` at 16 kHz, trimmed to its first and last audible sample.

    Raises RuntimeError naming the cause when espeak-ng is missing, fails or hangs (20 s timeout).
    """
    try:
        result = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "--stdout", text],
            check=True,
            capture_output=True,
            timeout=ESPEAK_TIMEOUT_S,
        )
    except FileNotFoundError as exc:
        raise RuntimeError("espeak-ng is not installed: sudo apt-get install espeak-ng") from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"espeak-ng hung for {ESPEAK_TIMEOUT_S:.0f} s on {text!r}") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"espeak-ng failed on {text!r}: {exc.stderr[:200]!r}") from exc
    with wave.open(io.BytesIO(result.stdout)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    data = resample(data, rate, RATE_HZ)
    audible = np.flatnonzero(np.abs(data.astype(np.int32)) > 200)
    if audible.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r} with voice {voice}")
    return data[audible[0] : audible[-1] + 1]


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    pink: np.ndarray = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    out: np.ndarray = pink / float(np.sqrt(np.mean(pink**2)))
    return out


def _pause_s(before: str, after: str, rng: np.random.Generator) -> float:
    if before.lower() in _HESITATIONS or after.lower() in _HESITATIONS:
        return float(rng.uniform(0.3, 0.9))  # a hesitation: the speaker is thinking
    return float(rng.uniform(0.15, 0.5))  # a clause boundary


def build(count: int = 36, seed: int = 7) -> list[Turn]:
    """`count` turns (cycling through TURNS with different voices, speeds and pauses), each in the
    quiet and the noisy condition: 2 x count Turn objects."""
    rng = np.random.default_rng(seed)
    turns: list[Turn] = []
    for i in range(count):
        phrases = TURNS[i % len(TURNS)]
        voice = VOICES[i % len(VOICES)]
        speed = SPEEDS_WPM[(i // len(VOICES)) % len(SPEEDS_WPM)]
        parts: list[np.ndarray] = [np.zeros(int(LEAD_S * RATE_HZ))]
        pauses: list[tuple[float, float]] = []
        cursor = int(LEAD_S * RATE_HZ)
        for k, phrase in enumerate(phrases):
            if k:
                gap = int(_pause_s(phrases[k - 1], phrase, rng) * RATE_HZ)
                pauses.append((cursor / RATE_HZ, (cursor + gap) / RATE_HZ))
                parts.append(np.zeros(gap))
                cursor += gap
            speech = synthesise(phrase, voice, speed).astype(np.float64)
            parts.append(speech)
            cursor += speech.size
        end = cursor
        parts.append(np.zeros(int(TAIL_S * RATE_HZ)))
        clean = np.concatenate(parts)
        speech_rms = float(np.sqrt(np.mean(clean[int(LEAD_S * RATE_HZ) : end] ** 2)))
        for condition in ("quiet", "noisy"):
            if condition == "quiet":
                noise = rng.normal(0.0, 30.0, clean.size)
            else:
                noise = _pink_noise(clean.size, rng) * speech_rms * 10 ** (-15 / 20)
            mixed = np.clip(np.round(clean + noise), -32768, 32767).astype(np.int16)
            turns.append(
                Turn(
                    name=f"{i:03d}",
                    condition=condition,
                    text=", ".join(phrases),
                    voice=voice,
                    speed_wpm=speed,
                    speech_start_s=LEAD_S,
                    speech_end_s=end / RATE_HZ,
                    pauses_s=tuple(pauses),
                    samples=mixed,
                )
            )
    return turns


def write(turns: list[Turn], out: Path) -> None:
    """Write the WAVs and corpus.json into `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    for turn in turns:
        with wave.open(str(out / f"{turn.name}-{turn.condition}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE_HZ)
            w.writeframes(turn.samples.tobytes())
    (out / "corpus.json").write_text(json.dumps([t.truth() for t in turns], indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speech_corpus", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for the WAVs and corpus.json")
    parser.add_argument("--count", type=int, default=36, help="turns per condition")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    turns = build(args.count, args.seed)
    write(turns, args.out)
    print(f"wrote {len(turns)} turns to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
