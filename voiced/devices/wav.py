"""WAV file microphone and speaker."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.devices.base import DeviceError
from voiced.devices.memory import AfterEnd, ClockedSink, MemorySource


def read_wav_mono(path: str | Path) -> tuple[Int16Array, int]:
    """Read a 16-bit PCM WAV as mono int16 (channels averaged) and its rate.

    Raises DeviceError with a conversion hint for a missing file or another sample format.
    """
    p = Path(path)
    try:
        with wave.open(str(p)) as w:
            if w.getsampwidth() != 2:
                raise DeviceError(
                    f"{p}: {8 * w.getsampwidth()}-bit WAV; voiced reads 16-bit PCM "
                    f"(convert: sox {p.name} -b 16 out.wav)"
                )
            channels = w.getnchannels()
            rate = w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    except FileNotFoundError as exc:
        raise DeviceError(f"WAV file not found: {p}") from exc
    except (wave.Error, EOFError) as exc:
        raise DeviceError(
            f"{p} is not a PCM WAV file ({exc}); convert it: sox {p.name} -b 16 out.wav"
        ) from exc
    if channels > 1:
        mono: Int16Array = data.reshape(-1, channels).mean(axis=1).round().astype(np.int16)
        return mono, rate
    return data, rate


class WavSource(MemorySource):
    """A microphone reading a WAV file (any rate, mono or stereo), delivered as 16 kHz frames.

    `paced=True` releases frames in real time, False as fast as read. `after_end` as MemorySource.
    """

    def __init__(
        self, path: str | Path, *, frame_ms: int = 20, paced: bool = True, after_end: AfterEnd = "raise"
    ) -> None:
        pcm, rate = read_wav_mono(path)
        super().__init__(pcm, rate, frame_ms=frame_ms, paced=paced, after_end=after_end)
        self.path = Path(path)


class WavSink(ClockedSink):
    """A speaker that records, in real time, what would be heard into a 16-bit mono WAV at `path`."""

    def __init__(
        self, path: str | Path, sample_rate_hz: int, *, block_ms: int = 20, ring_ms: int = 200
    ) -> None:
        super().__init__(sample_rate_hz, block_ms=block_ms, ring_ms=ring_ms)
        self.path = Path(path)
        self._wav: wave.Wave_write | None = None

    async def start(self) -> None:
        """Create the file and start the real-time drain."""
        if self._wav is None:
            try:
                w = wave.open(str(self.path), "wb")  # noqa: SIM115  (closed in stop)
            except OSError as exc:
                raise DeviceError(f"cannot write WAV {self.path}: {exc}") from exc
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate_hz)
            self._wav = w
        await super().start()

    def _emit(self, block: Int16Array, at_s: float) -> None:
        if self._wav is not None:
            self._wav.writeframes(block.astype("<i2").tobytes())

    async def stop(self) -> None:
        """Stop and close the file (its header is finalised here)."""
        await super().stop()
        wav, self._wav = self._wav, None
        if wav is not None:
            wav.close()
