"""In-memory microphone and speaker, for tests and the demo.

`MemorySource` releases 20 ms frames of a given signal, paced in real time or as fast as read.
`ClockedSink` is the shared engine of the file/memory/null speakers: a bounded SPSC ring drained by
loop timers at real time, one block per period, exactly like a sound card would; subclasses
decide what to do with each block. `MemorySink` keeps the blocks (bounded) so a test can compare
what was "heard" with what was sent.

Paced devices start their schedules on a boundary of the loop clock (`next_boundary_s`), so a
microphone, a speaker and the playout pump that share a period wake the process once per period
together rather than each at its own phase.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Literal

import numpy as np

from voiced.audio.frames import MIC_RATE_HZ, Int16Array, as_int16
from voiced.audio.resample import resample
from voiced.audio.ring import SpscRing
from voiced.devices.base import DeviceError, DeviceLost, EndOfStream, MicFrame, PlaybackTap

AfterEnd = Literal["raise", "silence", "loop"]

# A timer due within this much of a boundary is already on it (the loop runs timers up to its clock
# resolution early); the next boundary is the one after.
_BOUNDARY_MARGIN_S = 0.001


def next_boundary_s(after_s: float, period_s: float) -> float:
    """The first multiple of `period_s` on the loop clock later than `after_s` (by over a millisecond).

    Sleep until it to wake in step with every other timer on the same period: the loop serves timers
    due at the same moment in one wake-up of the process.
    """
    return math.floor((after_s + _BOUNDARY_MARGIN_S) / period_s + 1.0) * period_s


class MemorySource:
    """A microphone that plays back `pcm` (resampled to 16 kHz when `sample_rate_hz` differs).

    After the signal: `after_end="raise"` raises EndOfStream (the last partial frame is zero-padded
    first), "silence" pads with silence forever, "loop" starts over. `append()` adds more audio to
    play after what is queued (a live fake microphone).
    """

    sample_rate_hz = MIC_RATE_HZ

    def __init__(
        self,
        pcm: Int16Array,
        sample_rate_hz: int = MIC_RATE_HZ,
        *,
        frame_ms: int = 20,
        paced: bool = True,
        after_end: AfterEnd = "raise",
    ) -> None:
        self.frame_ms = frame_ms
        self.frame_samples = MIC_RATE_HZ * frame_ms // 1000
        self.paced = paced
        self.after_end: AfterEnd = after_end
        self._data = resample(as_int16(pcm).copy(), sample_rate_hz, MIC_RATE_HZ)
        self._pos = 0
        self._started = False
        self._t0 = 0.0
        self.frames_delivered = 0

    def append(self, pcm: Int16Array, sample_rate_hz: int = MIC_RATE_HZ) -> None:
        """Queue more audio after what has not been read yet."""
        more = resample(as_int16(pcm), sample_rate_hz, MIC_RATE_HZ)
        self._data = np.concatenate([self._data[self._pos :], more])
        self._pos = 0

    def mix(self, pcm: Int16Array, sample_rate_hz: int = MIC_RATE_HZ) -> None:
        """Add ``pcm`` to the signal from the next frame on, with saturation (a sound heard over
        whatever the microphone is capturing: an echo of the speaker)."""
        more = resample(as_int16(pcm), sample_rate_hz, MIC_RATE_HZ).astype(np.int32)
        rest = self._data[self._pos :].astype(np.int32)
        if rest.size < more.size:
            rest = np.concatenate([rest, np.zeros(more.size - rest.size, dtype=np.int32)])
        rest[: more.size] += more
        self._data = np.clip(rest, -32768, 32767).astype(np.int16)
        self._pos = 0

    @property
    def remaining_samples(self) -> int:
        """Samples of signal not yet delivered."""
        return int(self._data.size) - self._pos

    async def start(self) -> None:
        """Start the clock: with pacing, frame k is released at t0 + (k+1) * frame_ms, t0 the first
        frame boundary of the loop clock after now (`next_boundary_s`)."""
        self._started = True
        self._t0 = next_boundary_s(asyncio.get_running_loop().time(), self.frame_ms / 1000.0)
        self.frames_delivered = 0

    async def read_frame(self) -> MicFrame:
        """The next frame (see the class docstring for the end-of-signal policy)."""
        return (await self.read_frames(1))[0]

    async def read_frames(self, max_frames: int) -> list[MicFrame]:
        """The next ``max_frames`` frames, after one wait (fewer only when the signal ends on the way).

        Paced, the call returns when the last of them is due, and a frame's capture time is its place
        on the source's own clock (as a sound card's ADC time would be); unpaced, the frames were
        "captured" just before they were read.
        """
        if not self._started:
            raise DeviceError("source not started: call `await source.start()` first")
        count = max(1, max_frames)
        loop = asyncio.get_running_loop()
        frame_s = self.frame_ms / 1000.0
        if self.paced:
            first_s = self._t0 + self.frames_delivered * frame_s
            delay = first_s + count * frame_s - loop.time()
            await asyncio.sleep(max(0.0, delay))
        else:
            await asyncio.sleep(0)
            first_s = loop.time() - count * frame_s
        frames: list[MicFrame] = []
        for i in range(count):
            try:
                pcm = self._take()
            except EndOfStream:
                if frames:
                    return frames  # the next read raises
                raise
            self.frames_delivered += 1
            frames.append(MicFrame(pcm, first_s + i * frame_s))
        return frames

    def _take(self) -> bytes:
        n = self.frame_samples
        if self._pos + n <= self._data.size:
            out = self._data[self._pos : self._pos + n]
            self._pos += n
            return out.tobytes()
        rest = self._data[self._pos :]
        if self.after_end == "loop" and self._data.size:
            self._pos = n - rest.size
            return np.concatenate([rest, self._data[: self._pos]]).tobytes()
        if rest.size == 0 and self.after_end == "raise":
            raise EndOfStream("end of the audio signal")
        self._pos = int(self._data.size)
        return np.concatenate([rest, np.zeros(n - rest.size, dtype=np.int16)]).tobytes()

    async def stop(self) -> None:
        """Stop; `start()` may be called again (it continues where it stopped)."""
        self._started = False


class ClockedSink:
    """A speaker drained at real time on the loop clock; subclasses implement `_emit`.

    Block k plays at `t0 + k * block_ms`, on the block boundaries of the loop clock
    (`next_boundary_s`): one timer per block, then two hops through the loop's ready queue so that
    everything else due on the same boundary runs first (a microphone frame that flushes the output,
    the pump topping the ring up) and the block is what the ring holds after them.

    Idle speaker: once the owner has said `mark_idle()` (or before anything was written) and the
    ring has stayed empty for `idle_after_ms`, the speaker stops waking the process, as a sound card's
    closed stream would. The next `write()` or `clear()` resumes the schedule on the same grid: a
    write plays from the next boundary, as it would have while ticking. The timeline of what was
    heard stays continuous: the silent blocks of the idle stretch are counted in `blocks_played` and
    recorded (`_emit`, with their own times) when the speaker resumes, at `stop()`, and at every
    `check()` in between (the playout pump checks a few times a second while idle, so they are never
    far behind). Like a closed sound-card stream, the playback tap sees none of them: the echo
    canceller's reference stops while idle and restarts with the next block played, and
    `idle_after_ms` keeps it going long enough to cancel the tail of what was played. 0 never idles.

    `underrun_samples` counts silence the drain had to insert after the first write (the producer fell
    behind). `dropped_samples` counts samples `write` could not store (written past
    `writable_samples()`).
    """

    #: A write this close after a boundary is still in time for that boundary's block (the loop serves
    #: a boundary's timers together, up to its own lateness).
    _RESUME_LATE_S = 0.001

    def __init__(
        self, sample_rate_hz: int, *, block_ms: int = 20, ring_ms: int = 200, idle_after_ms: int = 1500
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.block_samples = sample_rate_hz * block_ms // 1000
        self.idle_after_s = idle_after_ms / 1000.0
        self._period_s = block_ms / 1000.0
        self._ring = SpscRing(max(2 * self.block_samples, sample_rate_hz * ring_ms // 1000))
        self._block = np.zeros(self.block_samples, dtype=np.int16)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None  # the next step of the schedule; None while idle
        self._t0 = 0.0
        self._next_k = 0  # index of the next block to play (or to record as idle silence)
        self._failure: Exception | None = None
        self._written_any = False
        # Loop time since when the owner has had nothing to play (-inf: nothing was ever written).
        self._idle_since_s: float | None = -math.inf
        self.underrun_samples = 0
        self.blocks_played = 0
        self.idle_stretches = 0  # times the speaker stopped waking because nothing played
        self.tap: PlaybackTap | None = None

    @property
    def dropped_samples(self) -> int:
        """Samples rejected by `write` because the ring was full."""
        return self._ring.rejected_samples

    @property
    def idle(self) -> bool:
        """Whether the speaker is started and has stopped waking the process (nothing to play)."""
        return self._loop is not None and self._handle is None and self._failure is None

    async def start(self) -> None:
        """Start the real-time schedule (one block per block period, from the next boundary)."""
        if self._loop is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._t0 = next_boundary_s(loop.time(), self._period_s) - self._period_s
        self._next_k = 1
        self._failure = None
        if not self._may_idle(loop.time()):
            self._arm()
        else:
            self.idle_stretches += 1

    def _may_idle(self, now_s: float) -> bool:
        idle_since_s = self._idle_since_s
        return (
            self.idle_after_s > 0
            and idle_since_s is not None
            and now_s - idle_since_s >= self.idle_after_s
            and self._ring.readable() == 0
        )

    def _arm(self) -> None:
        loop = self._loop
        assert loop is not None
        self._handle = loop.call_at(self._t0 + self._next_k * self._period_s, self._on_boundary)

    def _on_boundary(self) -> None:
        # A timer due on the boundary may have woken a task in this same pass of the loop; the task
        # itself runs in the next pass: play in the pass after it.
        assert self._loop is not None
        self._handle = self._loop.call_soon(self._after_boundary)

    def _after_boundary(self) -> None:
        assert self._loop is not None
        self._handle = self._loop.call_soon(self._play)

    def _play(self) -> None:
        self._handle = None
        try:
            k = self._next_k
            self._next_k = k + 1
            block = self._block
            n = self._ring.read_into(block)
            if n < block.size and self._written_any:
                self.underrun_samples += int(block.size) - n
            self.blocks_played += 1
            # The block's time on the device clock: its slot in the schedule, even when the loop
            # ran late (a sound card plays on; an echo canceller needs the device's timeline).
            played_at_s = self._t0 + k * self._period_s
            tap = self.tap
            if tap is not None:
                tap.played(block, self.sample_rate_hz, played_at_s)
            self._emit(block.copy(), played_at_s)
        except Exception as exc:  # the device is lost: check() says so, the owner reopens
            self._failure = exc
            return
        if self._may_idle(played_at_s):
            self.idle_stretches += 1
        else:
            self._arm()

    def _catch_up(self, now_s: float) -> int:
        """Record the idle silence up to `now_s`; return the index of the block due next."""
        # The first boundary not yet past (a boundary just past is still in time, see _RESUME_LATE_S).
        due_k = max(self._next_k, math.ceil((now_s - self._RESUME_LATE_S - self._t0) / self._period_s))
        count = due_k - self._next_k
        if count > 0 and self._failure is None:
            first_at_s = self._t0 + self._next_k * self._period_s
            self._next_k = due_k
            self.blocks_played += count
            try:
                self._emit_silence(first_at_s, count)
            except Exception as exc:
                self._failure = exc
        return due_k

    def _resume(self) -> None:
        loop = self._loop
        if loop is None or self._handle is not None or self._failure is not None:
            return
        self._catch_up(loop.time())
        if self._failure is None:
            self._arm()

    def _emit(self, block: Int16Array, at_s: float) -> None:
        """Handle one block the "device" just played (at loop time `at_s`)."""

    def _emit_silence(self, first_at_s: float, count: int) -> None:
        """Handle `count` silent blocks played while idle, the first at `first_at_s` (already
        counted in `blocks_played`). Subclasses that record can override this to do it in bulk."""
        for i in range(count):
            self._emit(np.zeros(self.block_samples, dtype=np.int16), first_at_s + i * self._period_s)

    def writable_samples(self) -> int:
        """Free space in the ring."""
        return self._ring.writable()

    def queued_samples(self) -> int:
        """Samples waiting in the ring."""
        return self._ring.readable()

    def write(self, pcm: Int16Array) -> None:
        """Queue samples (non-blocking; what does not fit is dropped and counted). An idle speaker
        resumes: the samples play from the next boundary."""
        self._written_any = True
        self._idle_since_s = None
        self._ring.write(as_int16(pcm))
        if self._handle is None:
            self._resume()

    def mark_idle(self) -> None:
        """Nothing more to play for now: the ring running dry is not an underrun until the next write,
        and the speaker stops waking once it has stayed dry for `idle_after_ms`."""
        self._written_any = False
        if self._idle_since_s is None:
            self._idle_since_s = self._loop.time() if self._loop is not None else -math.inf

    def clear(self, fade_ms: float) -> None:
        """Drop what is queued, fading out over `fade_ms`, at the next block."""
        self._ring.request_clear(round(fade_ms * self.sample_rate_hz / 1000.0))
        if self._handle is None:
            self._resume()

    def _record_idle_silence(self) -> None:
        """While idle, record the silence played so far (see the class docstring)."""
        loop = self._loop
        if loop is not None and self._handle is None and self._failure is None:
            self._catch_up(loop.time())

    def check(self) -> None:
        """Raise DeviceLost if the schedule died (a block could not be handled); while idle, first
        record the silence played so far."""
        self._record_idle_silence()
        failure = self._failure
        if failure is not None:
            raise DeviceLost(f"{type(self).__name__} stopped: {failure!r}")

    async def stop(self) -> None:
        """Stop the schedule; queued audio is discarded (an idle stretch is recorded up to now)."""
        loop, self._loop = self._loop, None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        elif loop is not None and self._failure is None:
            self._catch_up(loop.time())


class MemorySink(ClockedSink):
    """Keeps every played block (bounded by `max_seconds`, oldest dropped and counted).

    While the speaker is idle, `blocks` catches up with the silence at `check()`, `audio()`, the next
    write and `stop()` (see `ClockedSink`).
    """

    def __init__(
        self,
        sample_rate_hz: int,
        *,
        block_ms: int = 20,
        ring_ms: int = 200,
        max_seconds: float = 120.0,
        idle_after_ms: int = 1500,
    ) -> None:
        super().__init__(sample_rate_hz, block_ms=block_ms, ring_ms=ring_ms, idle_after_ms=idle_after_ms)
        max_blocks = max(1, int(max_seconds * 1000 / block_ms))
        self.blocks: deque[tuple[float, Int16Array]] = deque(maxlen=max_blocks)
        self.discarded_blocks = 0

    def _emit(self, block: Int16Array, at_s: float) -> None:
        if len(self.blocks) == self.blocks.maxlen:
            self.discarded_blocks += 1
        self.blocks.append((at_s, block))

    def _emit_silence(self, first_at_s: float, count: int) -> None:
        kept = min(count, self.blocks.maxlen or count)
        if kept < count:
            # Only the newest `maxlen` survive: whatever was kept before goes too.
            self.discarded_blocks += len(self.blocks) + count - kept
            self.blocks.clear()
        super()._emit_silence(first_at_s + (count - kept) * self._period_s, kept)

    def audio(self) -> Int16Array:
        """Everything played so far (silence included), concatenated."""
        self._record_idle_silence()
        if not self.blocks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([b for _, b in self.blocks])
