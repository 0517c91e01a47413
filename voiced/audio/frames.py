"""Fixed-size frames of s16le mono PCM and the conversions every other module uses.

The internal mic format is 16 kHz mono int16 in 20 ms frames (320 samples, 640 bytes): webrtcvad
rejects 24 kHz, and 20 ms is both a webrtcvad and an Opus frame size.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

MIC_RATE_HZ = 16000
FRAME_MS = 20
MIC_FRAME_SAMPLES = MIC_RATE_HZ * FRAME_MS // 1000
MIC_FRAME_BYTES = MIC_FRAME_SAMPLES * 2
BYTES_PER_SAMPLE = 2
SILENCE_DBFS = -120.0

Int16Array = npt.NDArray[np.int16]


def samples_for(sample_rate_hz: int, duration_ms: float) -> int:
    """Number of samples in `duration_ms` at `sample_rate_hz` (rounded down)."""
    return int(sample_rate_hz * duration_ms // 1000)


def ms_for(sample_rate_hz: int, n_samples: int) -> float:
    """Duration in ms of `n_samples` at `sample_rate_hz`."""
    return n_samples * 1000.0 / sample_rate_hz


def as_int16(pcm: bytes | bytearray | memoryview | npt.NDArray[np.generic]) -> Int16Array:
    """View s16le bytes (or an array) as a 1-D int16 array. Bytes must have an even length."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype == np.int16:
            return np.asarray(pcm, dtype=np.int16).reshape(-1)
        if np.issubdtype(pcm.dtype, np.floating):
            return float_to_int16(pcm.reshape(-1).astype(np.float32))
        clipped: Int16Array = np.clip(pcm.reshape(-1), -32768, 32767).astype(np.int16)
        return clipped
    if len(pcm) % 2:
        raise ValueError(f"s16le PCM must have an even number of bytes, got {len(pcm)}")
    out: Int16Array = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.int16, copy=False)
    return out


def float_to_int16(x: npt.NDArray[np.float32]) -> Int16Array:
    """Convert float samples in [-1, 1] to int16 with clipping."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def int16_to_float(x: Int16Array) -> npt.NDArray[np.float32]:
    """Convert int16 samples to float32 in [-1, 1)."""
    return x.astype(np.float32) / 32768.0


def _dbfs_from_energy(energy: float, n_samples: int) -> float:
    if n_samples == 0 or energy <= 0.0:
        return SILENCE_DBFS
    # 10*log10(mean square / full scale^2) is 20*log10(rms / full scale) without the square root.
    return max(SILENCE_DBFS, 10.0 * math.log10(energy / (n_samples * 32768.0 * 32768.0)))


def level_dbfs(pcm: bytes | npt.NDArray[np.generic]) -> float:
    """RMS level in dBFS of s16le bytes or int16 samples; SILENCE_DBFS (-120) for digital silence."""
    x = as_int16(pcm)
    if x.size == 0:
        return SILENCE_DBFS
    xf = x.astype(np.float64)
    return _dbfs_from_energy(float(np.dot(xf, xf)), int(x.size))


class LevelMeter:
    """RMS level in dBFS of fixed-size s16le frames with no per-frame array allocation.

    Keep one per stream; `level(frame)` converts into a preallocated buffer and takes one dot product.
    Frames of another size fall back to `level_dbfs`.
    """

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._buf = np.zeros(frame_samples, dtype=np.float64)

    def level(self, frame: bytes | bytearray | memoryview) -> float:
        """Level of one frame of `frame_samples` s16le samples (same value as `level_dbfs`)."""
        if len(frame) != self.frame_samples * BYTES_PER_SAMPLE:
            return level_dbfs(bytes(frame))
        np.copyto(self._buf, np.frombuffer(frame, dtype="<i2"))
        return _dbfs_from_energy(float(np.dot(self._buf, self._buf)), self.frame_samples)


class FrameAssembler:
    """Cuts a stream of s16le chunks of any size into fixed frames of `frame_samples`.

    Feed chunks with `push`; it returns every complete frame. A trailing partial frame stays inside
    until more data arrives; call `flush(pad=True)` at the end of a stream to get it zero-padded.
    Memory is bounded by one frame plus the chunk being pushed.
    """

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_samples = frame_samples
        self.frame_bytes = frame_samples * BYTES_PER_SAMPLE
        self._pending = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._pending)

    def push(self, chunk: bytes) -> list[bytes]:
        """Append `chunk`; return all complete frames (possibly none)."""
        self._pending += chunk
        n = len(self._pending) // self.frame_bytes
        if n == 0:
            return []
        out = [bytes(self._pending[i * self.frame_bytes : (i + 1) * self.frame_bytes]) for i in range(n)]
        del self._pending[: n * self.frame_bytes]
        return out

    def flush(self, pad: bool = True) -> list[bytes]:
        """Return the partial frame (zero-padded when `pad`, dropped otherwise) and empty the assembler."""
        if not self._pending:
            return []
        rest = bytes(self._pending)
        self._pending.clear()
        if not pad:
            return []
        rest = rest[: len(rest) - len(rest) % 2]
        return [rest + b"\x00" * (self.frame_bytes - len(rest))]


def fade_out(x: Int16Array) -> Int16Array:
    """Return a copy of `x` with a linear ramp from full level to zero over its length."""
    if x.size == 0:
        return x.copy()
    ramp = np.linspace(1.0, 0.0, x.size + 1, dtype=np.float32)[1:]
    return np.round(x.astype(np.float32) * ramp).astype(np.int16)


def fade_in(x: Int16Array) -> Int16Array:
    """Return a copy of `x` with a linear ramp from zero to full level over its length."""
    if x.size == 0:
        return x.copy()
    ramp = np.linspace(0.0, 1.0, x.size + 1, dtype=np.float32)[1:]
    return np.round(x.astype(np.float32) * ramp).astype(np.int16)
