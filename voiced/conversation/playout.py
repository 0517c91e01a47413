"""The playout pump: the async shell that moves reply audio from the jitter buffer into a sink.

One `Playout` per speaker. Run `await playout.run()` inside the connection's TaskGroup; feed it with
`push` / `complete` from the downlink; call `interrupt` on barge-in. `run()` returns only by
cancellation or by raising `DeviceLost` (the caller reopens the sink and starts a new Playout over
the same JitterBuffer if it wants to continue the reply).

The sink's ring is kept shallow (`lead_blocks`, default 3 blocks, raised by one block each time the
device drains the ring completely, up to `max_lead_blocks`): the jitter buffer, not the ring, absorbs
network jitter, so the level reported for barge-in and the first-sample time match what is
being heard, and an interrupt (`sink.clear`) silences the device within one block.

While playing, the pump wakes once per block, on the block boundaries of the loop clock: the device
drains one block per period, so a lead of `lead_blocks` is topped up long before it runs out, and
in-memory devices paced on the same boundaries share the wake-up. Idle, it wakes on new audio or every
`_IDLE_CHECK_S` to check the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from voiced.audio.frames import level_dbfs
from voiced.audio.jitter import JitterBuffer, JitterStats
from voiced.devices.base import AudioSink
from voiced.devices.memory import next_boundary_s

# Echo reaches the mic through the ring and the room with some delay, so the barge-in level is the
# loudest recent block rather than the current one.
_LEVEL_WINDOW_BLOCKS = 5
# While idle the pump only wakes this often, to notice a dead device (a whole number of 20 ms blocks,
# so that the check shares a wake-up with the device's own).
_IDLE_CHECK_S = 0.24


@dataclass(frozen=True, slots=True)
class PlayoutStats:
    """Jitter buffer statistics plus the pump's own counters."""

    jitter: JitterStats
    blocks_written: int
    sink_queued_ms: float
    pump_lag_events: int


class Playout:
    """See the module docstring. All methods run on the event loop."""

    def __init__(
        self,
        sink: AudioSink,
        jitter: JitterBuffer,
        clock: Callable[[], float] = time.monotonic,
        *,
        lead_blocks: int = 3,
        max_lead_blocks: int = 6,
    ) -> None:
        if jitter.sample_rate_hz != sink.sample_rate_hz:
            raise ValueError(
                f"jitter buffer runs at {jitter.sample_rate_hz} Hz, "
                f"the sink takes {sink.sample_rate_hz} Hz: they must match"
            )
        self.sink = sink
        self.jitter = jitter
        self.clock = clock
        self.lead_blocks = max(1, lead_blocks)
        self.max_lead_blocks = max(self.lead_blocks, max_lead_blocks)
        self._block = sink.block_samples
        self._period_s = self._block / sink.sample_rate_hz
        self._levels: deque[float | None] = deque(maxlen=_LEVEL_WINDOW_BLOCKS)
        self._audible_until_s = 0.0
        self.blocks_written = 0
        self.pump_lag_events = 0
        self.idle_waits = 0
        self._audio_arrived = asyncio.Event()
        self._was_idle = False

    # -- the pump ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Pump forever (until cancelled). Raises DeviceLost when the sink dies."""
        loop = asyncio.get_running_loop()
        while True:
            self.sink.check()
            if self.jitter.idle and self.clock() >= self._audible_until_s:
                # Nothing to play: the device plays its own silence while the pump sleeps until
                # audio arrives (checking the device now and then). An always-on speaker spends
                # most of its life here, so this is where idle CPU is saved.
                if not self._was_idle:
                    self.sink.mark_idle()
                self._was_idle = True
                self.idle_waits += 1
                self._audio_arrived.clear()
                check_at_s = next_boundary_s(loop.time() + _IDLE_CHECK_S, self._period_s)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(check_at_s):
                        await self._audio_arrived.wait()
                continue
            queued = self.sink.queued_samples()
            if self._was_idle:
                # The ring ran dry on purpose while idle: not a lag.
                self._was_idle = False
            elif queued == 0 and self.blocks_written:
                # The device drained everything: we were late (a loop stall or bursty callbacks).
                # Keep one more block queued from now on, up to a bound.
                self.pump_lag_events += 1
                self.lead_blocks = min(self.lead_blocks + 1, self.max_lead_blocks)
            target = self.lead_blocks * self._block
            while queued < target and self.sink.writable_samples() >= self._block:
                self._write_block(queued)
                queued += self._block
            now_s = loop.time()
            await asyncio.sleep(next_boundary_s(now_s, self._period_s) - now_s)

    def _write_block(self, queued_before: int) -> None:
        now = self.clock()
        chat_before = self.jitter.playing_chat_id
        block = self.jitter.pull(self._block, now)
        audible = chat_before is not None or self.jitter.playing_chat_id is not None
        self.sink.write(block)
        self.blocks_written += 1
        if audible:
            self._levels.append(level_dbfs(block))
            end = now + (queued_before + self._block) / self.sink.sample_rate_hz
            self._audible_until_s = max(self._audible_until_s, end)
        else:
            self._levels.append(None)

    # -- control ----------------------------------------------------------------------------------
    def push(self, chat_id: str, pcm: bytes, now_s: float) -> None:
        """Queue decoded reply audio (s16le at the sink's rate) that arrived at `now_s`."""
        self.jitter.push(chat_id, pcm, now_s)
        self._audio_arrived.set()

    def complete(self, chat_id: str) -> None:
        """The reply's audio is complete (conversation.audio.completed): play out what is queued."""
        self.jitter.complete(chat_id)

    def interrupt(self, chat_id: str | None, fade_ms: float = 10.0) -> float:
        """Silence the reply now: cancel `chat_id` (its later chunks are discarded) or, with None,
        flush everything; the sink ring is cleared with a `fade_ms` fade within one block.

        Returns the ms of that chat actually handed to the device minus what was still queued in the
        ring (an estimate of what was heard; 0 for None).
        """
        playing = self.jitter.playing_chat_id
        queued_ms = self.sink.queued_samples() * 1000.0 / self.sink.sample_rate_hz
        # The ring does the fade (it holds what is about to be heard); a second fade from the
        # jitter buffer's tail would be an audible bump.
        if chat_id is None:
            self.jitter.flush(fade_ms=0.0)
            played = 0.0
        else:
            played = self.jitter.cancel(chat_id, fade_ms=0.0)
            if playing == chat_id:
                played = max(0.0, played - queued_ms)
        if chat_id is None or playing in (None, chat_id):
            # Only what is playing sits in the ring; cancelling a reply still queued behind it
            # must not cut the one being heard.
            self.sink.clear(fade_ms)
            self._levels.clear()
            self._audible_until_s = self.clock() + fade_ms / 1000.0
        return played

    # -- queries ----------------------------------------------------------------------------------
    @property
    def level_dbfs(self) -> float | None:
        """Loudest recent playback block in dBFS while a reply is playing; None when idle."""
        if not self.speaking:
            return None
        levels = [lv for lv in self._levels if lv is not None]
        return max(levels) if levels else None

    @property
    def speaking(self) -> bool:
        """True while reply audio is queued, playing or still in the device ring."""
        return not self.jitter.idle or self.clock() < self._audible_until_s

    def first_sample_at(self, chat_id: str) -> float | None:
        """Clock time when the first sample of `chat_id` was handed to the device, or None."""
        return self.jitter.first_pulled_at(chat_id)

    def played_ms(self, chat_id: str) -> float:
        """Ms of `chat_id` handed to the device so far."""
        return self.jitter.played_ms(chat_id)

    def stats(self) -> PlayoutStats:
        """Jitter statistics plus pump counters."""
        return PlayoutStats(
            jitter=self.jitter.stats(),
            blocks_written=self.blocks_written,
            sink_queued_ms=self.sink.queued_samples() * 1000.0 / self.sink.sample_rate_hz,
            pump_lag_events=self.pump_lag_events,
        )

    async def wait_idle(self, timeout_s: float) -> None:
        """Return once nothing is queued or playing (including the device ring).

        Raises TimeoutError after `timeout_s`. Needs `run()` to be running.
        """
        async with asyncio.timeout(timeout_s):
            while self.speaking:  # noqa: ASYNC110  (speaking is a function of the clock: poll per block)
                await asyncio.sleep(self._period_s)
