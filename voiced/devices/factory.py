"""Build a microphone or a speaker by kind: PortAudio, a WAV file, memory or null.

The implementations are imported lazily: a WAV-only run must not need libportaudio2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.devices.base import AudioSink, AudioSource
from voiced.devices.settings import DeviceSettings

if TYPE_CHECKING:
    from voiced.devices.memory import AfterEnd


SourceKind = Literal["portaudio", "wav", "memory"]
SinkKind = Literal["portaudio", "wav", "memory", "null"]


def open_source(
    settings: DeviceSettings,
    kind: SourceKind,
    *,
    path: str | Path | None = None,
    pcm: Int16Array | bytes | None = None,
    pcm_rate_hz: int = 16000,
    paced: bool = True,
    after_end: AfterEnd = "raise",
) -> AudioSource:
    """Build (not start) a microphone.

    - "portaudio": the sound card named by `settings.input_device` (index, name part, or None).
    - "wav": the WAV file at `path` (any rate, mono or stereo; mixed to mono, resampled to 16 kHz).
    - "memory": the samples `pcm` at `pcm_rate_hz`.
    `paced` releases frames in real time (False: as fast as the caller reads, for tests).
    `after_end`: "raise" (EndOfStream), "silence" (pad forever: the demo's "say it once"), "loop".
    Call `await source.start()` next.
    """
    if kind == "portaudio":
        from voiced.devices.portaudio import PortAudioSource  # noqa: PLC0415  (needs libportaudio2)

        return PortAudioSource(settings)
    from voiced.devices.memory import MemorySource  # noqa: PLC0415
    from voiced.devices.wav import WavSource  # noqa: PLC0415

    if kind == "wav":
        if path is None:
            raise ValueError("a wav source needs path=")
        return WavSource(path, paced=paced, after_end=after_end)
    if kind == "memory":
        if pcm is None:
            raise ValueError("a memory source needs pcm=")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16) if isinstance(pcm, bytes) else pcm
        return MemorySource(samples, pcm_rate_hz, paced=paced, after_end=after_end)
    raise ValueError(f"unknown source kind {kind!r}; expected portaudio, wav or memory")


def open_sink(
    settings: DeviceSettings,
    kind: SinkKind,
    sample_rate_hz: int,
    *,
    path: str | Path | None = None,
) -> AudioSink:
    """Build (not start) a speaker taking int16 mono at `sample_rate_hz`.

    - "portaudio": `settings.output_device`; resampled to the device rate when needed.
    - "wav": writes what would be heard, in real time, to the WAV at `path`.
    - "memory": keeps what would be heard in memory (`MemorySink.audio()`), in real time.
    - "null": discards, in real time.
    Call `await sink.start()` next.
    """
    if kind == "portaudio":
        from voiced.devices.portaudio import PortAudioSink  # noqa: PLC0415  (needs libportaudio2)

        return PortAudioSink(settings, sample_rate_hz)
    from voiced.devices.memory import MemorySink  # noqa: PLC0415
    from voiced.devices.null import NullSink  # noqa: PLC0415
    from voiced.devices.wav import WavSink  # noqa: PLC0415

    block_ms = settings.playback_block_ms
    idle_ms = settings.playback_idle_close_ms
    if kind == "wav":
        if path is None:
            raise ValueError("a wav sink needs path=")
        return WavSink(
            path, sample_rate_hz, block_ms=block_ms, ring_ms=settings.ring_ms, idle_after_ms=idle_ms
        )
    if kind == "memory":
        return MemorySink(sample_rate_hz, block_ms=block_ms, ring_ms=settings.ring_ms, idle_after_ms=idle_ms)
    if kind == "null":
        return NullSink(sample_rate_hz, block_ms=block_ms, ring_ms=settings.ring_ms, idle_after_ms=idle_ms)
    raise ValueError(f"unknown sink kind {kind!r}; expected portaudio, wav, memory or null")
