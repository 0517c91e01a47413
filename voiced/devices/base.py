"""The one shape of every audio device: `AudioSource` (a microphone) and `AudioSink` (a speaker),
the error tree a user can meet, and the factories `open_source` / `open_sink`.

Formats: a source always delivers 16 kHz mono s16le in 20 ms frames (`frame_ms`; it resamples inside
when the device cannot run at 16 kHz; `DeviceSettings.capture_block_ms` is only the callback size).
A sink takes int16 mono at its `sample_rate_hz` (the decoded rate,
usually 24 kHz) and resamples inside to whatever the device runs at.

Errors (all subclasses of `DeviceError`; each message says what to do):
    PortAudioMissing  libportaudio2 is not installed
    DeviceNotFound    no device matches the configured name/index (lists the available ones)
    UnsupportedRate   the device runs neither at the pipeline rate nor at a rate we can resample from
    DeviceLost        the stream died mid-way (unplugged, sound server restarted): reopen it
    EndOfStream       a file/memory source reached its end (not a fault)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.audio.settings import DeviceSettings

if TYPE_CHECKING:
    from voiced.devices.memory import AfterEnd


class DeviceError(Exception):
    """Base of all device errors; the message tells the user what to do."""


class PortAudioMissing(DeviceError):  # noqa: N818  (name fixed by the daemon API)
    """The PortAudio library could not be loaded."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "PortAudio is not installed: run `sudo apt-get install libportaudio2` "
            "(or use a WAV/null device)." + (f" Loader said: {detail}" if detail else "")
        )


class DeviceNotFound(DeviceError):  # noqa: N818  (name fixed by the daemon API)
    """No device matches the configured name or index."""

    def __init__(self, wanted: str | int | None, kind: str, available: list[str]) -> None:
        self.available = available
        names = "; ".join(available) if available else "none - is a sound card or sound server present?"
        what = "default device" if wanted is None else repr(wanted)
        super().__init__(
            f"no {kind} device matches {what}. Available {kind} devices: {names}. "
            f"Set audio.{kind}_device to an index or a part of one of these names (`voiced devices`)."
        )


class UnsupportedRate(DeviceError):  # noqa: N818  (name fixed by the daemon API)
    """The device cannot run at any rate we can use."""


class DeviceLost(DeviceError):  # noqa: N818  (name fixed by the daemon API)
    """The stream died (device unplugged, sound server restarted). Stop it and open a new one."""


class EndOfStream(DeviceError):  # noqa: N818  (a signal, not a fault; name fixed by the daemon API)
    """A file or memory source has no more frames (configure after_end to pad or loop instead)."""


@runtime_checkable
class AudioSource(Protocol):
    """A microphone: `start()`, then `read_frame()` in a loop, then `stop()`."""

    sample_rate_hz: int
    frame_ms: int

    async def start(self) -> None:
        """Open/start the device. Raises a DeviceError subclass when it cannot."""
        ...

    async def read_frame(self) -> bytes:
        """Wait for the next `frame_ms` frame of 16 kHz mono s16le.

        Raises DeviceLost when the device goes away (stop this source and open a new one), and
        EndOfStream at the end of a file/memory source.
        """
        ...

    async def stop(self) -> None:
        """Stop and release the device. Safe to call twice and after DeviceLost."""
        ...


@runtime_checkable
class AudioSink(Protocol):
    """A speaker fed through a bounded SPSC ring; the device drains it at its own pace."""

    sample_rate_hz: int
    block_samples: int

    async def start(self) -> None:
        """Open/start the device."""
        ...

    def writable_samples(self) -> int:
        """How many samples (at `sample_rate_hz`) `write` accepts now without dropping."""
        ...

    def queued_samples(self) -> int:
        """Samples (at `sample_rate_hz`) written but not yet handed to the device."""
        ...

    def write(self, pcm: Int16Array) -> None:
        """Queue samples without blocking. Write at most `writable_samples()`; excess is dropped and
        counted."""
        ...

    def mark_idle(self) -> None:
        """Nothing more to play for now (the pump stops feeding): running dry is not an underrun
        until the next `write`."""
        ...

    def clear(self, fade_ms: float) -> None:
        """Drop everything queued with a `fade_ms` fade-out (the interrupt path): the device goes
        silent within one block. Samples written after this call play normally."""
        ...

    async def stop(self) -> None:
        """Stop and release the device. Safe to call twice and after DeviceLost."""
        ...

    def check(self) -> None:
        """Raise DeviceLost if the stream has died."""
        ...


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
    if kind == "wav":
        if path is None:
            raise ValueError("a wav sink needs path=")
        return WavSink(path, sample_rate_hz, block_ms=block_ms, ring_ms=settings.ring_ms)
    if kind == "memory":
        return MemorySink(sample_rate_hz, block_ms=block_ms, ring_ms=settings.ring_ms)
    if kind == "null":
        return NullSink(sample_rate_hz, block_ms=block_ms, ring_ms=settings.ring_ms)
    raise ValueError(f"unknown sink kind {kind!r}; expected portaudio, wav, memory or null")
