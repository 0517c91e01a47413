"""The one shape of every audio device: `AudioSource` (a microphone) and `AudioSink` (a speaker),
and the error tree a user can meet. ``voiced.devices.factory`` builds them by kind.

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

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from voiced.audio.frames import Int16Array
from voiced.errors import EXIT_DEVICE, VoicedError


class DeviceError(VoicedError):
    """Base of all device errors; the message tells the user what to do.

    Missing and lost devices are waited for; any other DeviceError that reaches the top ends the
    process with ``EXIT_DEVICE``.
    """

    exit_code = EXIT_DEVICE


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
            f"Set audio.devices.{kind}_device to an index or a part of one of these names (`voiced devices`)."
        )


class UnsupportedRate(DeviceError):  # noqa: N818  (name fixed by the daemon API)
    """The device cannot run at any rate we can use."""


class DeviceLost(DeviceError):  # noqa: N818  (name fixed by the daemon API)
    """The stream died (device unplugged, sound server restarted). Stop it and open a new one."""


class EndOfStream(DeviceError):  # noqa: N818  (a signal, not a fault; name fixed by the daemon API)
    """A file or memory source has no more frames (configure after_end to pad or loop instead)."""


@dataclass(frozen=True, slots=True)
class MicFrame:
    """One microphone frame: 20 ms of 16 kHz mono s16le and when it was captured.

    ``captured_at_s`` is the capture time of the frame's first sample on the event loop's clock
    (``time.monotonic``), taken from the device clock where the device has one (PortAudio's ADC
    time), not from when the frame was read: latency figures and echo cancellation rely on it.
    """

    pcm: bytes
    captured_at_s: float


class PlaybackTap(Protocol):
    """Receives exactly what a speaker hands to its device, with the time it will be heard.

    ``played`` runs on the device's own thread (a PortAudio callback) for every block: it must take
    constant time, never block and never raise. ``block`` is int16 mono at ``sample_rate_hz`` (the
    device's rate, after volume, fades and resampling) and is only valid during the call: copy it.
    ``output_time_s`` is when its first sample reaches the speaker, on the loop's clock.
    """

    def played(self, block: Int16Array, sample_rate_hz: int, output_time_s: float) -> None: ...


@runtime_checkable
class AudioSource(Protocol):
    """A microphone: `start()`, then `read_frame()` or `read_frames(n)` in a loop, then `stop()`."""

    sample_rate_hz: int
    frame_ms: int

    async def start(self) -> None:
        """Open/start the device. Raises a DeviceError subclass when it cannot."""
        ...

    async def read_frame(self) -> MicFrame:
        """Wait for the next `frame_ms` frame of 16 kHz mono s16le, with its capture time.

        Raises DeviceLost when the device goes away (stop this source and open a new one), and
        EndOfStream at the end of a file/memory source.
        """
        ...

    async def read_frames(self, max_frames: int) -> list[MicFrame]:
        """Wait until ``max_frames`` frames are captured and return them, oldest first (fewer only at
        the end of a file/memory source), each with its own capture time.

        One wake-up of the caller per call: pass 1 whenever a frame must be acted on as soon as it is
        captured (a turn open, audio playing), more only while nothing is waiting for the microphone.
        Raises as `read_frame`.
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
    #: Set by the owner before start() to see every block handed to the device (echo cancellation).
    tap: PlaybackTap | None

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


#: Opening, closing or re-scanning a device must finish within this (a hung sound server must not
#: freeze the event loop: the call runs in a worker thread, which is abandoned past the deadline).
DEVICE_CALL_DEADLINE_S = 10.0


async def off_loop(call: Callable[[], None], what: str, deadline_s: float = DEVICE_CALL_DEADLINE_S) -> None:
    """Run a blocking PortAudio call in a worker thread; DeviceLost when it misses ``deadline_s``."""
    try:
        await asyncio.wait_for(asyncio.to_thread(call), deadline_s)
    except TimeoutError:
        raise DeviceLost(f"{what} took longer than {deadline_s:.0f} s; is the sound server hung?") from None
