"""Sound cards through PortAudio (sounddevice): capture and playback behind AudioSource / AudioSink.

Capture is a blocking stream read by one dedicated thread, one 20 ms frame per read (PortAudio waits
for the device periods in C), or as many frames as the reader asks for per `read_frames` call (one
read and one wake-up of the loop per batch while idle); playback is a callback stream. Both device
threads do constant-time work only: one bounded copy into / out of an SPSC ring
(`voiced.audio.ring`), a counter, and (capture) a thread-safe wake-up of the event loop, only when a
reader is waiting and the ring holds the rest of what it asked for (every wake-up costs the process
a pass through the loop).
Resampling, framing and everything else happen on the loop. A blocking read measured cheaper than a
callback: sounddevice's callback wrapper builds several objects per block, a read builds one buffer.

Device loss: the stream's finished-callback or a failed read (PortAudio ended the stream: unplugged
device, sound server gone) or no audio for `stall_timeout_s` (a stream that silently stopped) turns
into `DeviceLost` from `read_frame()` / `check()`. The caller stops the object and opens a new one;
call `reinitialise()` first when the set of devices may have changed (PortAudio scans only at init).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from voiced.audio.frames import FRAME_MS, MIC_FRAME_SAMPLES, MIC_RATE_HZ, FrameAssembler, Int16Array, as_int16
from voiced.audio.resample import StreamResampler
from voiced.audio.ring import SpscRing
from voiced.devices.alsa_probe import reduced_probing
from voiced.devices.base import (
    DeviceLost,
    DeviceNotFound,
    MicFrame,
    PlaybackTap,
    PortAudioMissing,
    UnsupportedRate,
    off_loop,
)
from voiced.devices.settings import DeviceSettings

Direction = Literal["input", "output"]
# Rates tried, after the pipeline rate and the device's default, before giving up.
_FALLBACK_RATES_HZ = (48000, 44100, 32000, 24000, 22050, 16000, 8000)
_RESAMPLER_SLACK_SAMPLES = 32
# Capture clock: how fast the sample count's anchor follows measured capture times that are later
# than it (drift), and how far later they must be, for how many reads in a row, before it jumps to
# them (samples were lost to an overflow). A measurement is never early, only late (a backlog the
# driver under-reports), so an earlier one is taken at once.
_CLOCK_GAIN = 0.02
_CLOCK_RESYNC_S = 0.05
_CLOCK_RESYNC_READS = 5


def load_sounddevice() -> Any:
    """Import sounddevice, turning a missing libportaudio2 into PortAudioMissing.

    Its import starts PortAudio, which probes every ALSA device: without the plugins no voice device
    uses (see `voiced.devices.alsa_probe`)."""
    if "sounddevice" in sys.modules:
        return sys.modules["sounddevice"]
    try:
        with reduced_probing():
            import sounddevice  # noqa: PLC0415  (raises OSError without libportaudio2)
    except OSError as exc:
        raise PortAudioMissing(str(exc)) from exc
    return sounddevice


def reinitialise() -> None:
    """Re-scan devices (PortAudio only does it at init). Only call with no stream open."""
    sd = load_sounddevice()
    sd._terminate()
    with reduced_probing():
        sd._initialize()


def _channels_key(direction: Direction) -> str:
    return "max_input_channels" if direction == "input" else "max_output_channels"


def device_names(direction: Direction) -> list[str]:
    """`index: name` of every device usable in `direction`."""
    sd = load_sounddevice()
    key = _channels_key(direction)
    return [f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices()) if d[key] > 0]


# Which sink/source the ALSA `pulse` plugin opens: libpulse reads these at every stream open.
_SERVER_ENV = {"input": "PULSE_SOURCE", "output": "PULSE_SINK"}


def _server_device_index(spec: str, direction: Direction, devices: list[Any], usable: set[int]) -> int | None:
    """The PortAudio `pulse` device, pointed at the server sink/source ``spec`` names; None if none."""
    from voiced.devices.listing import find_server_device  # noqa: PLC0415  (listing imports this module)

    pulse = next((i for i in sorted(usable) if devices[i]["name"].lower() == "pulse"), None)
    if pulse is None:
        return None
    match = find_server_device(spec, "source" if direction == "input" else "sink")
    if match is None:
        return None
    os.environ[_SERVER_ENV[direction]] = match.name
    return pulse


def resolve_device(spec: str | int | None, direction: Direction) -> int:
    """Index of the device for `spec`: None = default, an int (or digit string) = index,
    ``pulse:NAME`` = the sound server's sink/source NAME (through PortAudio's `pulse` device), else
    the first device whose name equals or contains `spec` (case-insensitive), else a sound-server
    sink/source whose name or description contains it. Raises DeviceNotFound."""
    sd = load_sounddevice()
    key = _channels_key(direction)
    devices = list(sd.query_devices())
    usable = {i for i, d in enumerate(devices) if d[key] > 0}
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if isinstance(spec, str) and spec.lower().startswith("pulse:"):
        index = _server_device_index(spec, direction, devices, usable)
        if index is not None:
            return index
        raise DeviceNotFound(spec, direction, device_names(direction) + _server_names(direction))
    if spec is None:
        default = sd.default.device[0 if direction == "input" else 1]
        if isinstance(default, int) and default in usable:
            return default
        if usable:
            return min(usable)
    elif isinstance(spec, int):
        if spec in usable:
            return spec
    else:
        wanted = spec.lower()
        exact = [i for i in sorted(usable) if devices[i]["name"].lower() == wanted]
        partial = [i for i in sorted(usable) if wanted in devices[i]["name"].lower()]
        if exact or partial:
            return (exact or partial)[0]
        index = _server_device_index(spec, direction, devices, usable)
        if index is not None:
            return index
    raise DeviceNotFound(spec, direction, device_names(direction) + _server_names(direction))


def _server_names(direction: Direction) -> list[str]:
    from voiced.devices.listing import SERVER_PREFIX, list_server_devices  # noqa: PLC0415  (as above)

    kind = "source" if direction == "input" else "sink"
    return [f"{SERVER_PREFIX}{d.name} ({d.description})" for d in list_server_devices() if d.kind == kind]


def supports(index: int, direction: Direction, rate_hz: int, channels: int = 1) -> bool:
    """True when PortAudio accepts int16 at `rate_hz` with `channels` on device `index`."""
    return _refusal(index, direction, rate_hz, channels) is None


# paInvalidSampleRate, paInvalidChannelCount: the device answered, it just does not take the format.
_PA_FORMAT_REFUSED = frozenset({-9997, -9998})


def _refusal(index: int, direction: Direction, rate_hz: int, channels: int) -> Exception | None:
    """None when PortAudio accepts the format, else the error it raised."""
    sd = load_sounddevice()
    check = sd.check_input_settings if direction == "input" else sd.check_output_settings
    try:
        check(device=index, samplerate=rate_hz, channels=channels, dtype="int16")
    except Exception as exc:  # PortAudioError or ValueError: the combination is not supported
        return exc
    return None


def _pa_code(exc: Exception) -> int | None:
    """The PortAudio error code of a PortAudioError (args: message, code), else None."""
    args: tuple[object, ...] = exc.args
    code = args[1] if len(args) >= 2 else None
    return code if isinstance(code, int) else None


def choose_format(
    index: int, direction: Direction, wanted_rate_hz: int, *, strict: bool = False
) -> tuple[int, int]:
    """(rate_hz, channels) to open: the wanted rate if possible, else one we resample from
    (`strict`: only the wanted rate).

    Mono is preferred; a device that only opens in stereo gets channel 0 (capture) or the same
    signal on every channel (playback). Raises UnsupportedRate.
    """
    sd = load_sounddevice()
    info = sd.query_devices(index)
    rates = (
        [wanted_rate_hz] if strict else [wanted_rate_hz, int(info["default_samplerate"]), *_FALLBACK_RATES_HZ]
    )
    refusals: list[Exception] = []
    for channels in (1, 2):
        if channels > info[_channels_key(direction)]:
            break
        for rate in dict.fromkeys(rates):
            refusal = _refusal(index, direction, rate, channels)
            if refusal is None:
                return rate, channels
            refusals.append(refusal)
    if refusals and not any(_pa_code(r) in _PA_FORMAT_REFUSED for r in refusals):
        # Not one format refusal: the device did not answer at all. A sound server that just
        # crashed looks like this (its devices are still listed): wait for it, do not give up.
        raise DeviceLost(
            f"{direction} device {index} ({info['name']}) is listed but does not answer "
            f"({refusals[0]}): is the sound server running?"
        )
    raise UnsupportedRate(
        f"{direction} device {index} ({info['name']}) accepts none of the rates {sorted(set(rates))} Hz "
        "for 16-bit audio; choose another device (`voiced devices`)."
    )


def _start_stream(
    stream_class: Any,
    index: int,
    rate_hz: int,
    channels: int,
    *,
    block_samples: int,
    callback: Callable[..., None] | None,
    finished: Callable[[], None],
) -> Any:
    """Open and start a raw int16 stream wired to ``callback`` (None: a blocking stream to read) and
    ``finished``; a refusal is DeviceLost.

    Raw streams hand the callback PortAudio's own buffer: no NumPy array is built (and reshaped, which
    NumPy 2.5 deprecates) per block by sounddevice; the callback views it with ``np.frombuffer``.
    """
    sd = load_sounddevice()
    direction = "input" if stream_class is sd.RawInputStream else "output"
    try:
        stream = stream_class(
            device=index,
            samplerate=rate_hz,
            channels=channels,
            dtype="int16",
            blocksize=block_samples,
            callback=callback,
            finished_callback=finished,
        )
        stream.start()
    except sd.PortAudioError as exc:
        raise DeviceLost(
            f"cannot start {direction} device {index}: {exc}; check it is free and plugged in"
        ) from exc
    return stream


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _close_stream(stream: Any) -> None:
    for op in (stream.abort, stream.close):
        with contextlib.suppress(Exception):  # the device may be gone; closing is best effort
            op()


def _frame_reader(stream: Any) -> Callable[[int], tuple[Any, bool, int]]:
    """A function reading ``frames`` from a blocking input stream: (int16 samples, overflowed, frames
    already waiting behind them)."""

    def read(frames: int) -> tuple[Any, bool, int]:
        data, overflowed = stream.read(frames)
        return np.frombuffer(data, dtype=np.int16), bool(overflowed), int(stream.read_available)

    return read


# The capture thread's next read returns within a frame; a read hung on a sick sound server is given
# this long before the stream is aborted under it.
_READER_JOIN_S = 0.5


def _end_capture(stream: Any, reader: threading.Thread | None) -> None:
    """Let the capture thread see it is retired, then close its stream (worker thread).

    Closing frees the stream: never while the thread may still be reading it. A thread stuck past an
    abort keeps the stream (leaked, not freed under it)."""
    if reader is not None:
        reader.join(_READER_JOIN_S)
        if reader.is_alive():
            with contextlib.suppress(Exception):
                stream.abort()
            reader.join(_READER_JOIN_S)
            if reader.is_alive():
                return
    _close_stream(stream)


class PortAudioSource:
    """A sound-card microphone delivering 16 kHz mono 20 ms frames (resampled if the card cannot).

    `device_rate_hz` forces the rate the card is opened at (some USB cards glitch at low rates);
    by default 16 kHz is tried first, then the card's default and common rates.
    """

    sample_rate_hz = MIC_RATE_HZ
    frame_ms = FRAME_MS

    def __init__(
        self, settings: DeviceSettings, *, stall_timeout_s: float = 2.0, device_rate_hz: int | None = None
    ) -> None:
        self.settings = settings
        self.stall_timeout_s = stall_timeout_s
        self._forced_rate_hz = device_rate_hz
        self.device_index: int | None = None
        self.device_rate_hz = MIC_RATE_HZ
        self.channels = 1
        self._stream: Any = None
        self._ring = SpscRing(MIC_RATE_HZ)
        self._loop: asyncio.AbstractEventLoop | None = None
        # The reader's pending wait (set by the loop, read by the callback) and the device samples it
        # waits for; the callback remembers the last waiter it woke so that it wakes each one once.
        self._waiter: asyncio.Future[None] | None = None
        self._wanted_samples = 1
        # Frames the capture thread reads at once (set by the loop in read_frames, read by the thread).
        self._frames_per_read = 1
        self._max_frames_per_read = 1
        self._woken: asyncio.Future[None] | None = None
        self._lost: str | None = None
        self._frames: deque[MicFrame] = deque()
        self._assembler = FrameAssembler(MIC_FRAME_SAMPLES)
        # The device clock: (device samples written to the ring so far, loop time just after the
        # last of them was captured), replaced whole by each callback (one atomic assignment).
        self._anchor: tuple[int, float] = (0, 0.0)
        self._clock_base_s: float | None = None
        self._late_reads = 0
        # Bumped by stop(): the capture thread and finished-callback of an older stream stand down.
        self._generation = 0
        self._reader: threading.Thread | None = None
        self._written_total = 0
        self._read_total = 0
        self._out_total = 0
        self._frames_out = 0
        self._resampler = StreamResampler(MIC_RATE_HZ, MIC_RATE_HZ)
        self.overruns = 0  # blocks the ring had no room for (the loop fell behind)
        self.input_overflows = 0  # PortAudio's own overflow flag
        self.callbacks = 0  # device reads (one 20 ms frame each, or an idle batch of them)

    async def start(self) -> None:
        """Open the configured input device and start capturing. Raises a DeviceError subclass.

        PortAudio's open can block (a sick sound server): it runs in a worker thread under a deadline.
        """
        self._loop = asyncio.get_running_loop()
        try:
            await off_loop(self._open, "opening the microphone")
        except DeviceLost:
            await self.stop()
            raise

    def _open(self) -> None:
        sd = load_sounddevice()
        index = resolve_device(self.settings.input_device, "input")
        rate, channels = choose_format(
            index, "input", self._forced_rate_hz or MIC_RATE_HZ, strict=self._forced_rate_hz is not None
        )
        self.device_index, self.device_rate_hz, self.channels = index, rate, channels
        # Room for two idle batches: the thread writes one while the loop may not have taken the last.
        batch_samples = (self.settings.idle_read_frames + 1) * rate * FRAME_MS // 1000
        ring_samples = max(rate * self.settings.ring_ms // 1000, 4 * rate * FRAME_MS // 1000)
        self._ring = SpscRing(max(ring_samples, 2 * batch_samples))
        # A batch never needs more than half the ring (the loop may still hold the previous one).
        self._max_frames_per_read = max(1, self._ring.capacity_samples // (2 * rate * FRAME_MS // 1000))
        self._resampler = StreamResampler(rate, MIC_RATE_HZ)
        self._assembler = FrameAssembler(MIC_FRAME_SAMPLES)
        self._anchor = (0, time.monotonic())
        self._clock_base_s = None
        self._late_reads = 0
        self._written_total = self._read_total = self._out_total = self._frames_out = 0
        self._lost = None
        generation = self._generation
        stream = _start_stream(
            sd.RawInputStream,
            index,
            rate,
            channels,
            block_samples=rate * self.settings.capture_block_ms // 1000,
            callback=None,
            finished=lambda: self._finished(generation),
        )
        self._stream = stream
        self._reader = threading.Thread(
            target=self._read_loop, args=(stream, generation), name="voiced-mic", daemon=True
        )
        self._reader.start()

    def _notify(self, waiter: asyncio.Future[None]) -> None:
        loop = self._loop
        if loop is None:
            return
        self._woken = waiter
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, waiter)

    def _read_loop(self, stream: Any, generation: int) -> None:
        """The capture thread: read as many frames as the reader asks for at a time until stop() or a
        failed read (PortAudio's blocking read of several blocks waits for each device period in C)."""
        rate = self.device_rate_hz
        block = rate * FRAME_MS // 1000
        step = self.channels
        read = _frame_reader(stream)
        while generation == self._generation:
            frames = block * self._frames_per_read
            try:
                data, overflowed, backlog = read(frames)
            except Exception as exc:  # PortAudioError (stream gone) or a closed stream
                if generation == self._generation and self._lost is None:
                    self._lost = f"reading the microphone failed ({str(exc)[:200]}): device unplugged?"
                    waiter = self._waiter
                    if waiter is not None:
                        self._notify(waiter)
                return
            self._deliver(data, frames, step, overflowed, time.monotonic() - backlog / rate)

    def _deliver(self, data: Any, frames: int, step: int, overflowed: bool, newest_s: float) -> None:
        # Capture thread: a bounded copy, the device clock and a wake-up, nothing else.
        self.callbacks += 1
        if overflowed:
            self.input_overflows += 1
        written = self._ring.write(data if step == 1 else data[::step])
        if written < frames:
            self.overruns += 1
        self._written_total += written
        # The device clock: samples counted since the start, anchored to the loop's clock by the time
        # the newest sample was captured (read time less what is already waiting behind it), smoothed
        # so that a late wake-up of this thread does not move the frames' times.
        counted_s = self._written_total / self.device_rate_hz
        base_s = self._clock_base_s
        measured_s = newest_s - counted_s
        if base_s is None or measured_s < base_s:
            base_s = measured_s
            self._late_reads = 0
        elif measured_s - base_s > _CLOCK_RESYNC_S:
            self._late_reads += 1
            if self._late_reads >= _CLOCK_RESYNC_READS:
                base_s, self._late_reads = measured_s, 0
        else:
            base_s += _CLOCK_GAIN * (measured_s - base_s)
            self._late_reads = 0
        self._clock_base_s = base_s
        self._anchor = (self._written_total, base_s + counted_s)
        # After the write: the reader publishes its waiter before it looks at the ring, so one of
        # the two always sees the other's step.
        waiter = self._waiter
        if waiter is not None and waiter is not self._woken and self._ring.readable() >= self._wanted_samples:
            self._notify(waiter)

    def _finished(self, generation: int) -> None:
        if generation != self._generation:
            return  # closed on purpose
        if self._lost is None:
            self._lost = "the input stream ended (device unplugged or sound server gone)"
        waiter = self._waiter
        if waiter is not None:
            self._notify(waiter)

    async def read_frame(self) -> MicFrame:
        """Next 20 ms frame of 16 kHz mono s16le with its capture time from the device clock.

        Raises DeviceLost when the device goes away.
        """
        return (await self.read_frames(1))[0]

    async def read_frames(self, max_frames: int) -> list[MicFrame]:
        """The next ``max_frames`` 20 ms frames, oldest first, each with its capture time from the
        device clock, after one wake-up. From the next device read on, the capture thread reads
        ``max_frames`` at a time (a read already under way finishes first: up to that many frames
        later after a switch back to 1).

        Raises DeviceLost when the device goes away.
        """
        count = min(max(1, max_frames), self._max_frames_per_read)
        self._frames_per_read = count
        while len(self._frames) < count:
            if self._lost is not None:
                if self._frames:
                    break
                raise DeviceLost(self._lost)
            if self._stream is None:
                raise DeviceLost("input stream is not open: call start()")
            anchor_total, anchor_end_s = self._anchor  # before the ring: it may only be older
            chunk = self._ring.read(self._ring.readable())
            if chunk.size:
                self._read_total += int(chunk.size)
                # Loop time just after the newest sample read was captured, from the device clock.
                end_s = anchor_end_s + (self._read_total - anchor_total) / self.device_rate_hz
                out = self._resampler.process(chunk)
                self._out_total += int(out.size)
                for pcm in self._assembler.push(out.tobytes()):
                    first = self._frames_out * MIC_FRAME_SAMPLES
                    self._frames_out += 1
                    self._frames.append(MicFrame(pcm, end_s - (self._out_total - first) / MIC_RATE_HZ))
                continue
            await self._wait_for_frames(count - len(self._frames))
        frames = self._frames
        return [frames.popleft() for _ in range(min(count, len(frames)))]

    async def _wait_for_frames(self, missing_frames: int) -> None:
        """Sleep until the capture thread has the rest of ``missing_frames`` frames (or the stream
        ends or stalls)."""
        missing_out = missing_frames * MIC_FRAME_SAMPLES - self._assembler.pending_bytes // 2
        self._wanted_samples = max(1, missing_out * self.device_rate_hz // MIC_RATE_HZ)
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            if self._ring.readable() >= self._wanted_samples or self._lost is not None:
                return  # arrived while the waiter was being published
            async with asyncio.timeout(self.stall_timeout_s + missing_frames * FRAME_MS / 1000.0):
                await waiter
        except TimeoutError:
            active = bool(self._stream is not None and self._stream.active)
            self._lost = f"no audio from the input device for {self.stall_timeout_s:.1f} s" + (
                "" if active else " (stream stopped)"
            )
        finally:
            self._waiter = None

    async def stop(self) -> None:
        """End the capture thread, then abort and close the stream (abort, not stop: stop can hang on
        a stalled stream), off the loop."""
        self._generation += 1
        stream, self._stream = self._stream, None
        reader, self._reader = self._reader, None
        if stream is not None:
            with contextlib.suppress(DeviceLost):
                await off_loop(lambda: _end_capture(stream, reader), "closing the microphone")
        self._frames.clear()


# The speaker's stream, in one table: what the loop may do in each state (see PortAudioSink).
#   state      stream  check()                       write()           leaves by
#   closed     none    DeviceLost (call start())     queues            start() -> open
#   open       yes     stall check; parks when idle  queues            idle hold -> parking; stop()
#   parking    going   nothing to check              queues            closed -> parked (or reopening)
#   parked     none    nothing to check              queues, reopens   -> reopening
#   reopening  coming  nothing to check              queues            opened -> open; refused -> lost
SinkState = Literal["closed", "open", "parking", "parked", "reopening"]


class PortAudioSink:
    """A sound-card speaker fed at `sample_rate_hz`, resampled to the rate the card runs at.

    `device_rate_hz` forces the card's rate; by default `sample_rate_hz` is tried first.

    Idle speaker: once the owner has said `mark_idle()` and the ring has stayed empty for
    `settings.playback_idle_close_ms`, the next `check()` closes the stream (PortAudio's callback
    thread and the sound server client's thread stop waking) and the next `write()` reopens it on the
    same device and format, off the loop; what was written meanwhile waits in the ring and plays from
    its first sample. A refused reopen turns into DeviceLost from `check()`, like a lost device.
    """

    def __init__(
        self,
        settings: DeviceSettings,
        sample_rate_hz: int,
        *,
        stall_timeout_s: float = 2.0,
        device_rate_hz: int | None = None,
    ) -> None:
        self.settings = settings
        self._forced_rate_hz = device_rate_hz
        self.sample_rate_hz = sample_rate_hz
        self.block_samples = sample_rate_hz * settings.playback_block_ms // 1000
        self.stall_timeout_s = stall_timeout_s
        self.idle_close_s = settings.playback_idle_close_ms / 1000.0
        self.device_index: int | None = None
        self.device_rate_hz = sample_rate_hz
        self.channels = 1
        self._stream: Any = None
        self._state: SinkState = "closed"
        # Bumped whenever a stream is closed on purpose: its finished-callback is then not a loss.
        self._generation = 0
        self._control: asyncio.Task[None] | None = None
        self._idle_since_s: float | None = None
        self._ring = SpscRing(sample_rate_hz)
        self._scratch = np.zeros(0, dtype=np.int16)
        self._resampler = StreamResampler(sample_rate_hz, sample_rate_hz)
        self._lost: str | None = None
        self._written_any = False
        self._last_callback_s = 0.0
        self.callbacks = 0
        self.underrun_samples = 0  # device-rate samples of silence inserted after the first write
        self.prefill_underrun_samples = 0  # the same, during back-to-back (pre-fill) callbacks
        self._period_s = settings.playback_block_ms / 1000.0
        self.device_underflows = 0  # PortAudio's own underflow flag
        self.tap: PlaybackTap | None = None
        self.idle_closes = 0  # streams closed because nothing played
        self.reopens = 0  # streams reopened by a write after an idle close
        # Write that asked for the reopen -> the first callback of the reopened stream, in ms.
        self.last_reopen_ms: float | None = None
        self._reopen_asked_s: float | None = None

    @property
    def state(self) -> SinkState:
        """Where the output stream is (see the table above `PortAudioSink`)."""
        return self._state

    @property
    def dropped_samples(self) -> int:
        """Device-rate samples `write` could not store."""
        return self._ring.rejected_samples

    async def start(self) -> None:
        """Open the configured output device and start playing (silence until written).

        PortAudio's open can block (a sick sound server): it runs in a worker thread under a deadline.
        """
        try:
            await off_loop(self._open, "opening the speaker")
        except DeviceLost:
            await self.stop()
            raise
        self._state = "open"

    def _open(self) -> None:
        index = resolve_device(self.settings.output_device, "output")
        wanted = self._forced_rate_hz or self.sample_rate_hz
        rate, channels = choose_format(index, "output", wanted, strict=self._forced_rate_hz is not None)
        self.device_index, self.device_rate_hz, self.channels = index, rate, channels
        block = rate * self.settings.playback_block_ms // 1000
        self._ring = SpscRing(max(rate * self.settings.ring_ms // 1000, 3 * block))
        self._scratch = np.zeros(block, dtype=np.int16)
        self._resampler = StreamResampler(self.sample_rate_hz, rate)
        self._lost = None
        self._open_stream()

    def _open_stream(self) -> None:
        """Open and start a stream on the chosen device and format (worker thread)."""
        sd = load_sounddevice()
        assert self.device_index is not None
        generation = self._generation
        self._last_callback_s = time.monotonic()
        stream = _start_stream(
            sd.RawOutputStream,
            self.device_index,
            self.device_rate_hz,
            self.channels,
            block_samples=self._scratch.size,
            callback=self._callback,
            finished=lambda: self._finished(generation),
        )
        if generation != self._generation:
            # stop() ran while this worker was opening (its deadline passed): nobody owns the stream.
            _close_stream(stream)
            return
        self._stream = stream

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio thread: a bounded copy out of the ring, nothing else.
        self.callbacks += 1
        now = time.monotonic()
        asked_s = self._reopen_asked_s
        if asked_s is not None:
            self._reopen_asked_s = None
            self.last_reopen_ms = (now - asked_s) * 1000.0
        # Back-to-back callbacks (PortAudio/ALSA pre-filling the device buffer at start or after an
        # xrun) ask for more than the producer could have had ready; only a callback on the device's
        # regular cadence that finds the ring short is the producer's fault.
        on_cadence = now - self._last_callback_s >= self._period_s / 2
        self._last_callback_s = now
        if status.output_underflow:
            self.device_underflows += 1
        buf = self._scratch[:frames] if frames <= self._scratch.size else np.zeros(frames, dtype=np.int16)
        n = self._ring.read_into(buf)
        if n < frames and self._written_any:
            if on_cadence:
                self.underrun_samples += frames - n
            else:
                self.prefill_underrun_samples += frames - n
        out = np.frombuffer(outdata, dtype=np.int16)
        if self.channels == 1:
            out[:] = buf[:frames]
        else:
            out.reshape(frames, self.channels)[:] = buf[:frames, None]
        tap = self.tap
        if tap is not None:
            dac_s = float(time_info.outputBufferDacTime)
            heard_s = now + (dac_s - float(time_info.currentTime)) if dac_s > 0 else now
            tap.played(buf[:frames], self.device_rate_hz, heard_s)

    def _finished(self, generation: int) -> None:
        if self._lost is None and generation == self._generation:
            self._lost = "the output stream ended (device unplugged or sound server gone)"

    def _to_caller(self, device_samples: int) -> int:
        return device_samples * self.sample_rate_hz // self.device_rate_hz

    def writable_samples(self) -> int:
        """Samples at `sample_rate_hz` that fit now (less a little slack for the resampler)."""
        return max(0, self._to_caller(self._ring.writable()) - _RESAMPLER_SLACK_SAMPLES)

    def queued_samples(self) -> int:
        """Samples at `sample_rate_hz` waiting in the ring."""
        return self._to_caller(self._ring.readable())

    def write(self, pcm: Int16Array) -> None:
        """Resample to the device rate and queue (non-blocking; overflow is dropped and counted).

        A stream closed while idle is reopened in the background; the queued samples wait for it.
        """
        self._written_any = True
        self._idle_since_s = None
        self._ring.write(self._resampler.process(as_int16(pcm)))
        if self._state == "parked" and self._control is None:
            self._reopen_asked_s = time.monotonic()
            self._control = asyncio.get_running_loop().create_task(self._reopen(), name="speaker-reopen")

    def mark_idle(self) -> None:
        """Nothing more to play for now: the ring running dry is not an underrun until the next write,
        and the stream closes once it has stayed dry for `settings.playback_idle_close_ms`."""
        self._written_any = False
        self._idle_since_s = time.monotonic()

    def clear(self, fade_ms: float) -> None:
        """Drop what is queued with a fade; the callback applies it at its next block."""
        self._ring.request_clear(round(fade_ms * self.device_rate_hz / 1000.0))
        self._resampler.reset()

    def check(self) -> None:
        """Raise DeviceLost if the stream ended or stopped calling back; close it when long idle."""
        if self._lost is not None:
            raise DeviceLost(self._lost)
        if self._state != "open":
            if self._state == "closed":
                raise DeviceLost("output stream is not open: call start()")
            return  # closed on purpose, or being closed/reopened: no callbacks to expect
        now_s = time.monotonic()
        silent_for_s = now_s - self._last_callback_s
        if silent_for_s > self.stall_timeout_s:
            self._lost = f"the output device stopped calling back for {silent_for_s:.1f} s"
            raise DeviceLost(self._lost)
        idle_since_s = self._idle_since_s
        if (
            self.idle_close_s > 0
            and idle_since_s is not None
            and now_s - idle_since_s >= self.idle_close_s
            and self._ring.readable() == 0
            and self._control is None
        ):
            self._control = asyncio.get_running_loop().create_task(self._park(), name="speaker-park")

    async def _park(self) -> None:
        """Close the idle stream off the loop; reopen at once if a write came in meanwhile."""
        stream, self._stream = self._stream, None
        self._state = "parking"
        self._generation += 1
        try:
            with contextlib.suppress(DeviceLost):  # a hung close: the stream is abandoned either way
                await off_loop(lambda: _close_stream(stream), "closing the idle speaker")
            self.idle_closes += 1
            self._state = "parked"
        finally:
            self._control = None
        if self._ring.readable():
            self._reopen_asked_s = time.monotonic()
            self._control = asyncio.get_running_loop().create_task(self._reopen(), name="speaker-reopen")

    async def _reopen(self) -> None:
        """Open the stream again on the same device and format; a refusal is a lost device."""
        self._state = "reopening"
        try:
            await off_loop(self._open_stream, "reopening the speaker")
        except DeviceLost as exc:
            self._state = "parked"
            self._lost = str(exc)
        else:
            self._state = "open"
            self.reopens += 1
        finally:
            self._control = None

    async def stop(self) -> None:
        """Abort and close the stream, off the loop."""
        control, self._control = self._control, None
        if control is not None and not control.done():
            control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await control
        self._state = "closed"
        self._generation += 1
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(DeviceLost):
                await off_loop(lambda: _close_stream(stream), "closing the speaker")
