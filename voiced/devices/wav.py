"""WAV file microphone and speaker."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.devices.base import DeviceError, DeviceLost
from voiced.devices.memory import AfterEnd, ClockedSink, MemorySource

#: Rates a WAV microphone may have; anything else is a broken header, not audio.
MIN_WAV_RATE_HZ = 4000
MAX_WAV_RATE_HZ = 384000
MAX_WAV_CHANNELS = 16


def read_wav_mono(path: str | Path) -> tuple[Int16Array, int]:
    """Read a 16-bit PCM WAV as mono int16 (channels averaged) and its rate.

    Raises DeviceError, one line with a conversion hint, for anything that is not a usable 16-bit
    PCM WAV: a missing file, a directory, another format, a broken header (rate 0, no channels).
    A file cut in the middle of a frame (a copy interrupted, an odd byte count) keeps its whole
    frames; the partial one is dropped.
    """
    p = Path(path)
    convert = f"convert it: sox {p.name} -b 16 out.wav"
    if p.is_dir():
        raise DeviceError(f"{p} is a directory, not a WAV file: give the path of a .wav file")
    try:
        with wave.open(str(p)) as w:
            width = w.getsampwidth()
            channels = w.getnchannels()
            rate = w.getframerate()
            if width != 2:
                raise DeviceError(f"{p}: {8 * width}-bit WAV; voiced reads 16-bit PCM ({convert})")
            if not 1 <= channels <= MAX_WAV_CHANNELS:
                raise DeviceError(f"{p}: the header says {channels} channels; {convert}")
            if not MIN_WAV_RATE_HZ <= rate <= MAX_WAV_RATE_HZ:
                raise DeviceError(f"{p}: the header says {rate} Hz, not a usable rate; {convert}")
            raw = w.readframes(w.getnframes())
    except FileNotFoundError as exc:
        raise DeviceError(f"WAV file not found: {p}") from exc
    except OSError as exc:
        raise DeviceError(f"cannot read WAV {p}: {exc.strerror or exc}") from exc
    except (wave.Error, EOFError, ValueError, struct.error) as exc:
        raise DeviceError(f"{p} is not a PCM WAV file ({str(exc)[:120]}); {convert}") from exc
    frame_bytes = 2 * channels
    whole = len(raw) - len(raw) % frame_bytes
    data = np.frombuffer(raw[:whole], dtype="<i2").astype(np.int16)
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


#: How often (in blocks) the WAV header's length is brought up to date while recording.
_HEADER_EVERY_BLOCKS = 50


class WavSink(ClockedSink):
    """A speaker that records, in real time, what would be heard into a 16-bit mono WAV at `path`.

    While the speaker is idle the file catches up with the silence at `check()`, the next write and
    `stop()` (see `ClockedSink`): the file is the same as if every block had been written on time.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate_hz: int,
        *,
        block_ms: int = 20,
        ring_ms: int = 200,
        idle_after_ms: int = 1500,
    ) -> None:
        super().__init__(sample_rate_hz, block_ms=block_ms, ring_ms=ring_ms, idle_after_ms=idle_after_ms)
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
            try:
                # The header's length is rewritten once a second (and at stop), not with every block:
                # three seeks and a write per 20 ms were a tenth of an idle daemon's CPU.
                self._wav.writeframesraw(block.astype("<i2", copy=False).tobytes())
                if self.blocks_played % _HEADER_EVERY_BLOCKS == 0:
                    self._wav.writeframes(b"")
            except OSError as exc:
                # A full disk or a dead mount: the speaker is lost (the daemon reopens it with backoff).
                raise DeviceLost(f"cannot write WAV {self.path}: {exc.strerror or exc}") from None

    def _emit_silence(self, first_at_s: float, count: int) -> None:
        if self._wav is None:
            return
        chunk = bytes(2 * self.block_samples * min(count, _HEADER_EVERY_BLOCKS))
        try:
            left = count
            while left > 0:
                n = min(left, _HEADER_EVERY_BLOCKS)
                self._wav.writeframesraw(chunk[: 2 * self.block_samples * n])
                left -= n
            every = _HEADER_EVERY_BLOCKS
            if self.blocks_played // every != (self.blocks_played - count) // every:
                self._wav.writeframes(b"")
        except OSError as exc:
            raise DeviceLost(f"cannot write WAV {self.path}: {exc.strerror or exc}") from None

    async def stop(self) -> None:
        """Stop and close the file (its header is finalised here)."""
        await super().stop()
        wav, self._wav = self._wav, None
        if wav is not None:
            try:
                wav.close()
            except OSError as exc:
                raise DeviceLost(f"cannot finish WAV {self.path}: {exc.strerror or exc}") from None
