"""The wake word corpus, synthesized offline with espeak-ng (deterministic for one espeak-ng version).

    python -m benchmarks.wake_corpus --out /tmp/wake-corpus [--quick]

writes one 16 kHz mono WAV per clip and ``manifest.json`` (clip, set, condition, voice, speed,
pitch, seconds). The same clips are built in memory by the wake benchmark and the tests.

Positive set: "okay nabu" (alone and as "okay nabu, what time is it") in several espeak-ng voices,
speeds and pitches, each clean, with pink noise at 10 dB SNR, and through a synthetic room impulse
response (RT60 0.5 s, direct-to-reverberant ratio 0 dB). Negative set: minutes of ordinary speech
read in several voices, some of it with "okay" in it, clean and with the same noise. Nothing here is
tuned on: the stage runs with the model's own threshold and window.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voiced.audio.frames import Int16Array
from voiced.audio.resample import resample

RATE_HZ = 16000
LEAD_S = 0.5
TRAIL_S = 0.8
SNR_DB = 10.0
RT60_S = 0.5
#: Direct-to-reverberant ratio of the synthetic room.
DRR_DB = 0.0

# espeak-ng voices and variants (+f: female, +m: male variants) available with the Debian package.
VOICES = ("en-us", "en-gb+f3", "en-gb-scotland", "en-029+f2", "en-gb-x-rp+m3", "en-us-nyc+f4")
SPEEDS_WPM = (130, 165, 200)
PITCHES = (30, 50, 75)
WAKE_TEXTS = ("okay nabu", "okay nabu, what time is it?")

# Ordinary household speech: questions, chatter, a television; "okay" but never the wake word.
NEGATIVE_TEXT = (
    "Could you pass me the salt, please? The soup needs a little more. "
    "I think the bus leaves at a quarter past eight, so we should hurry. "
    "Okay, let's go to the market after lunch and buy some apples. "
    "The weather tomorrow will be cloudy with a chance of rain in the afternoon. "
    "Did you remember to water the plants on the balcony? "
    "My sister is coming to visit next weekend with her two children. "
    "In other news, the city council approved the new budget for public transport. "
    "Turn left at the second traffic light and then keep going straight. "
    "I can't find my keys anywhere, have you seen them? "
    "The football match ended in a draw after extra time. "
    "Okay, okay, I heard you the first time. "
    "We need to buy milk, bread, eggs and a bag of rice. "
    "The meeting has been moved to Thursday at ten in the morning. "
    "Scientists have discovered a new species of frog in the rainforest. "
    "Please close the window, it's getting cold in here. "
    "What do you want for dinner tonight, pasta or soup? "
    "The train to the airport is delayed by about twenty minutes. "
    "She plays the piano every evening before going to bed. "
    "Remember to call the dentist and book an appointment. "
    "A banana, a lemon and a bottle of olive oil, that's all. "
    "The children are playing in the garden with the neighbours' dog. "
    "This recipe takes about forty minutes from start to finish. "
    "Okay, now mix the flour with the butter until it looks like sand. "
    "Tomorrow is a public holiday, so the shops will be closed. "
    "He has been learning to speak Spanish for almost three years. "
    "Nobody knows exactly how old that tree in the park is. "
    "Let me know when you are ready to leave, I'll get the car. "
    "The museum opens at nine and closes at six every day except Monday. "
    "I'd like a cup of tea with a little milk and no sugar. "
    "The new phone has a bigger screen and a better camera. "
)

Samples = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Clip:
    """One corpus clip: 16 kHz mono int16 and how it was made."""

    name: str
    positive: bool
    condition: str
    voice: str
    speed_wpm: int
    pitch: int
    pcm: Int16Array

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return self.pcm.size / RATE_HZ


def synthesize(text: str, voice: str, speed_wpm: int, pitch: int) -> Int16Array:
    """espeak-ng speech at 16 kHz, leading and trailing silence trimmed. Needs espeak-ng installed."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    speech = resample(data, rate, RATE_HZ)
    loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > 200)
    return speech[loud[0] : loud[-1] + 1] if loud.size else speech


def pink_noise(n_samples: int, seed: int) -> Samples:
    """Unit-RMS pink (1/f) noise, shaped in the frequency domain."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(size=n_samples))
    freqs = np.fft.rfftfreq(n_samples)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n_samples)
    return np.asarray(noise / np.sqrt(np.mean(noise**2)), dtype=np.float64)


def room_impulse(seed: int, rt60_s: float = RT60_S, drr_db: float = DRR_DB) -> Samples:
    """A synthetic room: direct path, a few early reflections, then an exponentially decaying tail
    whose energy is ``drr_db`` below the direct sound's (0 dB: a talker a metre or two away)."""
    rng = np.random.default_rng(seed)
    n = int(rt60_s * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.005 * RATE_HZ)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    ir = tail
    ir[0] = 1.0
    for delay_ms, gain in ((3.1, 0.5), (7.4, -0.4), (11.9, 0.3), (17.3, -0.25)):
        ir[int(delay_ms * RATE_HZ / 1000)] += gain
    return np.asarray(ir / np.sqrt(np.sum(ir**2)), dtype=np.float64)


def convolve(signal: Samples, ir: Samples) -> Samples:
    """Linear convolution through the FFT, cut to the signal's length."""
    n = signal.size + ir.size - 1
    size = 1 << (n - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(ir, size), size)[: signal.size]
    return np.asarray(out, dtype=np.float64)


def to_int16(signal: Samples) -> Int16Array:
    """Round and clip to int16."""
    out: Int16Array = np.clip(np.round(signal), -32768, 32767).astype(np.int16)
    return out


def speech_rms(speech: Int16Array) -> float:
    """RMS over the louder frames only, so pauses do not lower the level the noise is set against."""
    x = speech.astype(np.float64)
    frames = x[: x.size // 320 * 320].reshape(-1, 320)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms[rms > 0.1 * rms.max()] if rms.size else np.array([1.0])
    return float(np.sqrt(np.mean(active**2)))


def with_condition(speech: Int16Array, condition: str, seed: int, *, pad: bool = True) -> Int16Array:
    """Pad with silence (when ``pad``) and apply ``clean``, ``noise10db`` or ``reverb``."""
    x = speech.astype(np.float64)
    if pad:
        x = np.concatenate([np.zeros(int(LEAD_S * RATE_HZ)), x, np.zeros(int(TRAIL_S * RATE_HZ))])
    if condition == "noise10db":
        level = speech_rms(speech) / 10 ** (SNR_DB / 20)
        x = x + pink_noise(x.size, seed) * level
    elif condition == "reverb":
        x = convolve(x, room_impulse(seed))
    elif condition != "clean":
        raise ValueError(f"unknown condition {condition!r}")
    # A quiet room's own noise floor (about -61 dBFS) under everything.
    x = x + np.random.default_rng(seed + 1).normal(0.0, 30.0, x.size)
    return to_int16(x)


def positives(quick: bool = False) -> list[Clip]:
    """The wake phrases: every voice x (speed, pitch) x condition (a diagonal of speed/pitch if quick)."""
    if quick:
        grid = list(zip(SPEEDS_WPM, PITCHES, strict=True))
    else:
        grid = [(s, p) for s in SPEEDS_WPM for p in PITCHES]
    clips: list[Clip] = []
    for v, voice in enumerate(VOICES):
        for g, (speed, pitch) in enumerate(grid):
            text = WAKE_TEXTS[(v + g) % len(WAKE_TEXTS)]
            speech = synthesize(text, voice, speed, pitch)
            for condition in ("clean", "noise10db", "reverb"):
                seed = 1000 + 100 * v + 10 * g
                tag = "cmd" if "," in text else "wake"
                name = f"pos_{voice}_s{speed}_p{pitch}_{tag}_{condition}".replace("+", "-")
                clips.append(
                    Clip(name, True, condition, voice, speed, pitch, with_condition(speech, condition, seed))
                )
    return clips


def negatives(quick: bool = False) -> list[Clip]:
    """Ordinary speech, one long clip per voice: about 2 minutes each (two voices if quick)."""
    voices = VOICES[:2] if quick else VOICES
    clips: list[Clip] = []
    for v, voice in enumerate(voices):
        speed = SPEEDS_WPM[v % len(SPEEDS_WPM)]
        pitch = PITCHES[(v + 1) % len(PITCHES)]
        condition = "noise10db" if v % 2 else "clean"
        speech = synthesize(NEGATIVE_TEXT, voice, speed, pitch)
        name = f"neg_{voice}_s{speed}_p{pitch}_{condition}".replace("+", "-")
        pcm = with_condition(speech, condition, 7 + v)
        clips.append(Clip(name, False, condition, voice, speed, pitch, pcm))
    return clips


def write(clips: list[Clip], out_dir: Path) -> Path:
    """Write every clip as a WAV and a manifest; returns the manifest's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for clip in clips:
        with wave.open(str(out_dir / f"{clip.name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE_HZ)
            w.writeframes(clip.pcm.astype("<i2").tobytes())
        manifest.append(
            {
                "clip": f"{clip.name}.wav",
                "set": "positive" if clip.positive else "negative",
                "condition": clip.condition,
                "voice": clip.voice,
                "speed_wpm": clip.speed_wpm,
                "pitch": clip.pitch,
                "seconds": round(clip.seconds, 3),
            }
        )
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wake_corpus", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory for the WAVs and manifest.json")
    parser.add_argument("--quick", action="store_true", help="the smaller corpus the quick benchmark uses")
    args = parser.parse_args(argv)
    pos = positives(args.quick)
    neg = negatives(args.quick)
    path = write(pos + neg, args.out)
    minutes = sum(c.seconds for c in neg) / 60
    print(f"{len(pos)} positive clips, {len(neg)} negative clips ({minutes:.1f} min) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
