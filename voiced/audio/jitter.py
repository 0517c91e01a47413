"""Adaptive playout (jitter) buffer for decoded reply audio, tagged by chat id.

Input: decoded s16le chunks of any size, pushed with their arrival time — in bursts (the Coze server
sends PCM at ~6x real time in ~250 ms deltas) or paced with network jitter (Opus packets).
Output: exactly `n_samples` per `pull`, called at the device's pace.

Policy, in one place:
- Start-up: playback of a reply starts when the queued depth reaches `target_ms` or the reply is
  complete. After an underrun it re-buffers to the target again (with a fade-out into the gap and a
  fade-in out of it, so a gap never clicks).
- Target: `min_delay_ms..max_delay_ms`, from the observed lateness of arrivals. For each chunk,
  transit = arrival time - media time of its first sample; lateness = transit - the smallest transit
  seen in that reply (floored at the first chunk's transit - max_delay_ms). The target is the
  largest lateness in the last `_LATENESS_WINDOW` arrivals.
  A burst arrives early (every chunk sets a new minimum), so it adds no delay.
- Bounds: a burst (the sender's lead over real time, counted from the reply's first chunk, is at
  least `paced_ceiling_ms`) is held whole up to `memory_cap_ms`. Otherwise the depth may not exceed
  max(`paced_ceiling_ms`, lead + `max_delay_ms`); the oldest audio is dropped and counted
  (`overflows`, `dropped_ms`) — e.g. packets released together after a stall.
- Interrupts: `cancel(chat_id)` removes that reply's audio and remembers the chat as cancelled (later
  chunks are discarded and counted); `flush()` removes everything. Both leave a `fade_ms` faded tail
  that the next pull plays first, so the cut is click-free.
- Counters: underruns (transitions into starvation while a started reply is in progress and not
  complete), underrun_ms, overflows, dropped_ms, late_chunks (arrived while the player was starving
  for them), discarded_chunks (cancelled chat), abandoned (replies that ran dry, were never
  completed and got nothing for `abandon_after_ms`: the buffer goes idle instead of starving forever).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from voiced.audio.frames import Int16Array, as_int16, fade_in, fade_out
from voiced.audio.settings import JitterSettings

_LATENESS_WINDOW = 200
# How long a network stall is remembered when bounding the depth (see _enforce_bounds).
_STALL_MEMORY_S = 30.0
_MAX_TRACKED_CHATS = 64
_MAX_CANCELLED_CHATS = 256


@dataclass(frozen=True, slots=True)
class JitterStats:
    """A snapshot of the buffer's state and counters (all counters since construction)."""

    depth_ms: float
    target_ms: float
    jitter_ms: float
    underruns: int
    underrun_ms: float
    overflows: int
    dropped_ms: float
    late_chunks: int
    discarded_chunks: int
    pushed_chunks: int
    abandoned: int
    playing_chat_id: str | None


class _Segment:
    __slots__ = ("chat_id", "pos", "samples")

    def __init__(self, chat_id: str, samples: Int16Array) -> None:
        self.chat_id = chat_id
        self.samples = samples
        self.pos = 0

    @property
    def remaining(self) -> int:
        return int(self.samples.size) - self.pos


class _Chat:
    __slots__ = (
        "complete",
        "first_arrival_s",
        "first_pulled_at_s",
        "first_transit_s",
        "last_arrival_s",
        "min_transit_s",
        "played_samples",
        "received_samples",
        "starving",
    )

    def __init__(self) -> None:
        self.first_arrival_s: float | None = None
        self.received_samples = 0
        self.first_transit_s: float | None = None
        self.last_arrival_s = 0.0
        self.min_transit_s = math.inf
        self.played_samples = 0
        self.first_pulled_at_s: float | None = None
        self.complete = False
        self.starving = False


class JitterBuffer:
    """See the module docstring. Single-threaded: call every method from the same thread/loop."""

    def __init__(
        self, sample_rate_hz: int, settings: JitterSettings, *, abandon_after_ms: float = 3000.0
    ) -> None:
        if sample_rate_hz <= 0:
            raise ValueError("sample_rate_hz must be positive")
        self.sample_rate_hz = sample_rate_hz
        self.settings = settings
        self.abandon_after_ms = abandon_after_ms
        self._queue: deque[_Segment] = deque()
        self._depth = 0
        self._chats: OrderedDict[str, _Chat] = OrderedDict()
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._lateness_ms: deque[float] = deque(maxlen=_LATENESS_WINDOW)
        # (arrival_s, lateness_ms) with decreasing lateness: the sliding maximum over the last
        # _STALL_MEMORY_S, O(1) amortised per push; bounded by the arrivals in that window.
        self._stall_peaks: deque[tuple[float, float]] = deque()
        self._started = False
        self._current: str | None = None
        self._tail = np.zeros(0, dtype=np.int16)
        self._fade_in_next = False
        self.underruns = 0
        self.underrun_samples = 0
        self.overflows = 0
        self.dropped_samples = 0
        self.late_chunks = 0
        self.discarded_chunks = 0
        self.pushed_chunks = 0
        self.abandoned = 0

    # -- helpers -----------------------------------------------------------------------------------
    def _ms(self, n_samples: int) -> float:
        return n_samples * 1000.0 / self.sample_rate_hz

    def _samples(self, ms: float) -> int:
        return round(ms * self.sample_rate_hz / 1000.0)

    def _chat(self, chat_id: str) -> _Chat:
        state = self._chats.get(chat_id)
        if state is None:
            state = _Chat()
            self._chats[chat_id] = state
            while len(self._chats) > _MAX_TRACKED_CHATS:
                self._chats.popitem(last=False)
        return state

    # -- producer side ----------------------------------------------------------------------------
    def push(self, chat_id: str, pcm: bytes | Int16Array, now_s: float) -> None:
        """Queue a decoded chunk of reply `chat_id` that arrived at `now_s` (s16le bytes or int16).

        Chunks of a cancelled chat are discarded and counted. Raises ValueError for odd-length bytes
        (decoders never produce them: `PcmDecoder` carries a stray byte to the next payload).
        """
        if chat_id in self._cancelled:
            self.discarded_chunks += 1
            return
        samples = as_int16(pcm).copy()
        if samples.size == 0:
            return
        self.pushed_chunks += 1
        chat = self._chat(chat_id)
        if chat.first_arrival_s is None:
            chat.first_arrival_s = now_s
        chat.last_arrival_s = now_s
        transit_s = now_s - chat.received_samples / self.sample_rate_hz
        if chat.first_transit_s is None:
            chat.first_transit_s = transit_s
        # The reference is the earliest transit seen, but never more than max_delay before the first
        # chunk's: a sender far ahead of real time (a burst) would otherwise make every later,
        # still-early chunk look "late" against its fastest moment.
        floor_s = chat.first_transit_s - self.settings.max_delay_ms / 1000.0
        chat.min_transit_s = max(min(chat.min_transit_s, transit_s), floor_s)
        lateness_ms = max(0.0, transit_s - chat.min_transit_s) * 1000.0
        self._lateness_ms.append(lateness_ms)
        self._remember_stall(now_s, lateness_ms)
        if chat.starving:
            self.late_chunks += 1
        chat.received_samples += int(samples.size)
        self._queue.append(_Segment(chat_id, samples))
        self._depth += int(samples.size)
        self._enforce_bounds(chat, now_s)

    def _remember_stall(self, now_s: float, lateness_ms: float) -> None:
        peaks = self._stall_peaks
        while peaks and peaks[-1][1] <= lateness_ms:
            peaks.pop()
        peaks.append((now_s, lateness_ms))
        while peaks[0][0] < now_s - _STALL_MEMORY_S:
            peaks.popleft()

    @property
    def recent_stall_ms(self) -> float:
        """The largest lateness of an arrival in the last 30 s (a network stall shows up here)."""
        return self._stall_peaks[0][1] if self._stall_peaks else 0.0

    def _enforce_bounds(self, chat: _Chat, now_s: float) -> None:
        assert chat.first_arrival_s is not None
        # The sender's lead: how far ahead of real time it has delivered this reply. A lead beyond the
        # ceiling means a burst (the Coze server sends ~6x real time): hold it, bounded by the cap.
        lead_ms = max(0.0, self._ms(chat.received_samples) - (now_s - chat.first_arrival_s) * 1000.0)
        if lead_ms >= self.settings.paced_ceiling_ms:
            allowed_ms = self.settings.memory_cap_ms
        else:
            # After a network stall everything sent meanwhile arrives at once: that depth is what the
            # next stall of the same size needs, so it is kept (a FIFO keeps it too). Only depth that
            # no recent stall explains, e.g. a blocked device, is trimmed to the ceiling.
            allowed_ms = max(
                self.settings.paced_ceiling_ms,
                lead_ms + self.settings.max_delay_ms,
                self.recent_stall_ms + self.settings.block_ms,
            )
        allowed_ms = min(allowed_ms, self.settings.memory_cap_ms)
        excess = self._depth - self._samples(allowed_ms)
        if excess <= 0:
            return
        self.overflows += 1
        self.dropped_samples += excess
        self._depth -= excess
        while excess > 0:
            head = self._queue[0]
            take = min(excess, head.remaining)
            head.pos += take
            excess -= take
            if head.remaining == 0:
                self._queue.popleft()
        # Resume smoothly after the cut rather than jumping into the middle of a waveform.
        self._fade_in_next = True

    def complete(self, chat_id: str) -> None:
        """Mark reply `chat_id` complete: it starts playing even below the target, and running dry
        at its end is not an underrun."""
        if chat_id in self._cancelled:
            return
        self._chat(chat_id).complete = True

    # -- interrupts -------------------------------------------------------------------------------
    def _take_tail(self, fade_samples: int, chat_id: str | None) -> None:
        """Cut the faded tail of what is playing now (only if it is `chat_id`, or anything if None)."""
        if not self._started or not self._queue:
            return
        head = self._queue[0]
        if chat_id is not None and head.chat_id != chat_id:
            return
        if self._chats.get(head.chat_id) is None or self._chats[head.chat_id].played_samples == 0:
            return
        n = min(fade_samples, head.remaining)
        self._tail = fade_out(head.samples[head.pos : head.pos + n])

    def cancel(self, chat_id: str, fade_ms: float | None = None) -> float:
        """Drop everything queued for `chat_id` with a short fade; discard its future chunks.

        Returns the ms of that reply actually pulled (played). The next `pull` starts with the faded
        tail. Idempotent.
        """
        fade = self._samples(self.settings.fade_ms if fade_ms is None else fade_ms)
        self._take_tail(fade, chat_id)
        kept: deque[_Segment] = deque()
        for seg in self._queue:
            if seg.chat_id == chat_id:
                self._depth -= seg.remaining
            else:
                kept.append(seg)
        self._queue = kept
        self._cancelled[chat_id] = None
        while len(self._cancelled) > _MAX_CANCELLED_CHATS:
            self._cancelled.popitem(last=False)
        if self._current == chat_id:
            self._current = None
            self._started = False
        chat = self._chats.get(chat_id)
        if chat is not None:
            chat.starving = False
        return self.played_ms(chat_id)

    def flush(self, fade_ms: float | None = None) -> None:
        """Drop everything queued (all chats) with a short fade. Chats are NOT marked cancelled:
        call `cancel` for the ones whose late chunks must be discarded."""
        fade = self._samples(self.settings.fade_ms if fade_ms is None else fade_ms)
        self._take_tail(fade, None)
        self._queue.clear()
        self._depth = 0
        self._started = False
        self._current = None
        for chat in self._chats.values():
            chat.starving = False

    def is_cancelled(self, chat_id: str) -> bool:
        """True when `chat_id` was cancelled (its chunks are being discarded)."""
        return chat_id in self._cancelled

    # -- consumer side ----------------------------------------------------------------------------
    def _ready(self) -> bool:
        if not self._queue:
            return False
        if self._ms(self._depth) >= self.target_ms:
            return True
        head_chat = self._chats.get(self._queue[0].chat_id)
        # A reply that ran dry resumes as soon as audio is back: over an in-order transport the late
        # packet arrives together with the ones held behind it, so waiting for the target again only
        # adds silence (measured: 2.5x the underrun time of a plain FIFO at 100 ms of jitter).
        return head_chat is not None and (head_chat.complete or head_chat.starving)

    def pull(self, n_samples: int, now_s: float) -> Int16Array:
        """Return exactly `n_samples` int16 samples for the device (silence when nothing is ready)."""
        out = np.zeros(n_samples, dtype=np.int16)
        filled = 0
        if self._tail.size:
            k = min(n_samples, int(self._tail.size))
            out[:k] = self._tail[:k]
            self._tail = self._tail[k:]
            filled = k
        if not self._started and self._ready():
            self._started = True
        if self._started:
            filled = self._drain_into(out, filled, now_s)
        if filled < n_samples:
            self._on_dry(out, filled, n_samples, now_s)
        return out

    def _drain_into(self, out: Int16Array, filled: int, now_s: float) -> int:
        start = filled
        while filled < out.size and self._queue:
            seg = self._queue[0]
            k = min(int(out.size) - filled, seg.remaining)
            out[filled : filled + k] = seg.samples[seg.pos : seg.pos + k]
            seg.pos += k
            filled += k
            self._depth -= k
            chat = self._chat(seg.chat_id)
            if chat.first_pulled_at_s is None:
                chat.first_pulled_at_s = now_s
            chat.played_samples += k
            chat.starving = False
            self._current = seg.chat_id
            if seg.remaining == 0:
                self._queue.popleft()
        if self._fade_in_next and filled > start:
            fade = min(filled - start, self._samples(self.settings.fade_ms))
            out[start : start + fade] = fade_in(out[start : start + fade])
            self._fade_in_next = False
        return filled

    def _on_dry(self, out: Int16Array, filled: int, n_samples: int, now_s: float) -> None:
        current = self._chats.get(self._current) if self._current is not None else None
        if current is None:
            return
        if current.complete and not self._queue:
            # The reply played out to its end: back to idle, not an underrun.
            self._current = None
            self._started = False
            return
        if current.starving and (now_s - current.last_arrival_s) * 1000.0 >= self.abandon_after_ms:
            # Never completed and nothing arrives (a dropped connection): stop "playing" it.
            self.abandoned += 1
            current.starving = False
            self._current = None
            self._started = False
            return
        if not current.starving:
            self.underruns += 1
            current.starving = True
            if self._started and filled > 0:
                fade = min(filled, self._samples(self.settings.fade_ms))
                out[filled - fade : filled] = fade_out(out[filled - fade : filled])
            self._fade_in_next = True
        self._started = False
        self.underrun_samples += n_samples - filled

    # -- queries ----------------------------------------------------------------------------------
    def played_ms(self, chat_id: str) -> float:
        """Milliseconds of reply `chat_id` pulled so far (0 for an unknown or forgotten chat)."""
        chat = self._chats.get(chat_id)
        return 0.0 if chat is None else self._ms(chat.played_samples)

    def first_pulled_at(self, chat_id: str) -> float | None:
        """`now_s` of the pull that returned the first sample of `chat_id`, or None."""
        chat = self._chats.get(chat_id)
        return None if chat is None else chat.first_pulled_at_s

    def is_complete(self, chat_id: str) -> bool:
        """True once `complete(chat_id)` was called."""
        chat = self._chats.get(chat_id)
        return chat is not None and chat.complete

    @property
    def playing_chat_id(self) -> str | None:
        """The reply being played (or starving mid-reply); None when idle."""
        return self._current

    @property
    def idle(self) -> bool:
        """True when nothing is queued, no faded tail is pending and no reply is mid-play."""
        return not self._queue and self._tail.size == 0 and self._current is None

    @property
    def depth_ms(self) -> float:
        """Queued audio in ms (not counting a pending fade tail)."""
        return self._ms(self._depth)

    @property
    def jitter_ms(self) -> float:
        """Largest lateness observed in the recent window."""
        return max(self._lateness_ms, default=0.0)

    @property
    def target_ms(self) -> float:
        """Current start-up target, clamped to [min_delay_ms, max_delay_ms]."""
        return min(self.settings.max_delay_ms, max(self.settings.min_delay_ms, self.jitter_ms))

    def stats(self) -> JitterStats:
        """Snapshot of depth, target and counters."""
        return JitterStats(
            depth_ms=self.depth_ms,
            target_ms=self.target_ms,
            jitter_ms=self.jitter_ms,
            underruns=self.underruns,
            underrun_ms=self._ms(self.underrun_samples),
            overflows=self.overflows,
            dropped_ms=self._ms(self.dropped_samples),
            late_chunks=self.late_chunks,
            discarded_chunks=self.discarded_chunks,
            pushed_chunks=self.pushed_chunks,
            abandoned=self.abandoned,
            playing_chat_id=self._current,
        )
