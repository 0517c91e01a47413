"""Offline speech for the emulated bot: espeak-ng when installed, a deterministic synthetic voice otherwise.

Replies must be real audio a person can listen to (issue 2 §4), and a CI machine has no network, so no
cloud TTS. espeak-ng takes ~20 ms per sentence; results are cached per (text, rate, speech rate). The
synthetic voice is a vowel-formant babble with word rhythm and pitch declination: not words, but clearly
speech-like to a listener and to webrtcvad, and identical on every machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
from collections import OrderedDict
from typing import Literal

import numpy as np
import soxr
import structlog

log = structlog.get_logger("voiced.emulator.tts")

ESPEAK_RATE_HZ = 22050
SYNTH_RATE_HZ = 16000
_CACHE_ENTRIES = 512
# espeak-ng's default speaking rate in words per minute; speech_rate scales it (protocol.md §3.1).
_ESPEAK_BASE_WPM = 165
_ESPEAK_TIMEOUT_S = 10.0


def _wav_payload(wav: bytes) -> bytes:
    """The sample bytes of espeak-ng's streamed WAV (its size fields are placeholders, so skip them)."""
    marker = wav.find(b"data", 12)
    if not wav.startswith(b"RIFF") or marker < 0:
        raise ValueError("espeak-ng did not produce a WAV stream")
    payload = wav[marker + 8 :]
    return payload[: len(payload) // 2 * 2]


def _resample(pcm: bytes, from_hz: int, to_hz: int) -> bytes:
    if from_hz == to_hz or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    out: np.ndarray = soxr.resample(samples, from_hz, to_hz, quality="HQ")
    return np.asarray(out, dtype=np.int16).tobytes()


# First two formants (Hz) of the vowel letters; consonants get a short noisy burst.
_FORMANTS_HZ = {
    "a": (730, 1090),
    "e": (530, 1840),
    "i": (300, 2200),
    "o": (570, 840),
    "u": (320, 900),
    "y": (300, 2200),
}
_SYLLABLE = re.compile(r"[aeiouy]+", re.IGNORECASE)


def synthetic_speech(text: str, sample_rate_hz: int = SYNTH_RATE_HZ, speech_rate: int = 0) -> bytes:
    """Deterministic speech-like s16le mono audio for ``text`` (same text → same bytes, anywhere)."""
    rate = sample_rate_hz
    tempo = 1.0 + speech_rate / 100.0
    words = re.findall(r"[\w']+|[.,!?;:]", text)
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    n_words = max(1, sum(1 for w in words if w[0].isalnum()))
    word_index = 0
    for word in words:
        if not word[0].isalnum():
            pause_ms = 220 if word in ".!?" else 120
            pieces.append(np.zeros(int(rate * pause_ms / 1000 / tempo)))
            continue
        # Pitch falls over the sentence (declination) and rises a little on each word's start.
        f0_hz = 150.0 - 40.0 * word_index / n_words
        word_index += 1
        vowels = _SYLLABLE.findall(word) or ["a"]
        for vowel in vowels:
            duration_s = (0.11 + 0.03 * len(vowel)) / tempo
            n = int(rate * duration_s)
            t = np.arange(n) / rate
            f0 = f0_hz * (1.05 - 0.1 * t / duration_s)
            phase = 2 * np.pi * np.cumsum(f0) / rate
            f1, f2 = _FORMANTS_HZ.get(vowel[0].lower(), (600, 1500))
            wave = np.zeros(n)
            for harmonic in range(1, 30):
                freq = f0_hz * harmonic
                if freq >= rate / 2:
                    break
                # Harmonics near a formant are loud: a crude vocal-tract filter.
                gain = np.exp(-(((freq - f1) / 180.0) ** 2)) + 0.6 * np.exp(-(((freq - f2) / 250.0) ** 2))
                wave += (gain + 0.02) * np.sin(harmonic * phase) / harmonic**0.3
            envelope = np.minimum(1.0, np.minimum(t, duration_s - t) / 0.02)
            consonant = int(rate * 0.03 / tempo)
            burst = rng.normal(0.0, 0.08, consonant) * np.hanning(consonant)
            pieces.append(burst)
            pieces.append(wave * envelope)
        pieces.append(np.zeros(int(rate * 0.06 / tempo)))
    signal = np.concatenate(pieces) if pieces else np.zeros(int(rate * 0.2))
    peak = float(np.max(np.abs(signal))) or 1.0
    return (signal / peak * 0.5 * 32767).astype(np.int16).tobytes()


class Voice:
    """Speaks sentences as s16le mono PCM at any rate, with a bounded cache.

    Create one per emulator and call :meth:`speak`; it never raises for a sentence: when espeak-ng fails
    the synthetic voice answers instead (and the failure is logged once).
    """

    def __init__(self, mode: Literal["auto", "espeak", "synthetic"] = "auto") -> None:
        self._espeak = shutil.which("espeak-ng") if mode != "synthetic" else None
        if mode == "espeak" and self._espeak is None:
            raise RuntimeError("voice='espeak' but espeak-ng is not installed (apt install espeak-ng)")
        self._cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._espeak_failed = False

    @property
    def engine(self) -> str:
        """``espeak-ng`` or ``synthetic``: what :meth:`speak` uses."""
        return "espeak-ng" if self._espeak and not self._espeak_failed else "synthetic"

    async def speak(self, text: str, sample_rate_hz: int, speech_rate: int = 0) -> bytes:
        """The sentence as s16le mono PCM at ``sample_rate_hz`` (cached)."""
        key = (text, sample_rate_hz, speech_rate)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        pcm = await self._synthesize(text, sample_rate_hz, speech_rate)
        self._cache[key] = pcm
        if len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return pcm

    async def _synthesize(self, text: str, sample_rate_hz: int, speech_rate: int) -> bytes:
        if self._espeak and not self._espeak_failed:
            try:
                native = await self._run_espeak(self._espeak, text, speech_rate)
                return _resample(native, ESPEAK_RATE_HZ, sample_rate_hz)
            except (OSError, ValueError, TimeoutError) as exc:
                self._espeak_failed = True
                log.warning("espeak_failed_using_synthetic_voice", error=str(exc))
        return _resample(synthetic_speech(text, SYNTH_RATE_HZ, speech_rate), SYNTH_RATE_HZ, sample_rate_hz)

    @staticmethod
    async def _run_espeak(binary: str, text: str, speech_rate: int) -> bytes:
        wpm = max(80, int(_ESPEAK_BASE_WPM * (1.0 + speech_rate / 100.0)))
        # The text goes through stdin so that no sentence can be read as a command-line option.
        process = await asyncio.create_subprocess_exec(
            binary, "--stdout", "-v", "en", "-s", str(wpm),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(_ESPEAK_TIMEOUT_S):
                stdout, _ = await process.communicate(text.encode("utf-8"))
        finally:
            if process.returncode is None:
                process.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), _ESPEAK_TIMEOUT_S)
        if process.returncode != 0:
            raise ValueError(f"espeak-ng exited with status {process.returncode}")
        return _wav_payload(stdout)
