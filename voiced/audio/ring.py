"""A bounded single-producer / single-consumer ring of int16 samples.

One side (e.g. the event loop) only calls the producer methods, the other (e.g. the PortAudio callback
thread) only the consumer methods. Each index is written by exactly one side, and a Python int
assignment is atomic under the GIL, so no lock is needed and the device callback never blocks: its
work is one or two bounded numpy copies.

Drop policies (named, with counters):
- `write` never overwrites unread samples: it stores what fits and returns the count; the producer
  decides what to do with the rest (`rejected_samples` counts them).
- `read_into` pads with silence when the ring runs dry (`underrun_samples` counts the padding).
- `request_clear` lets the *producer* discard everything written so far: the consumer honours the
  request at its next read, fading out the first `fade_samples` so there is no click.
"""

from __future__ import annotations

import numpy as np

from voiced.audio.frames import Int16Array


class SpscRing:
    """Bounded SPSC ring of int16 samples; see the module docstring for who may call what."""

    def __init__(self, capacity_samples: int) -> None:
        if capacity_samples <= 0:
            raise ValueError("capacity_samples must be positive")
        self.capacity_samples = capacity_samples
        # One slot stays free so that "full" and "empty" are distinguishable from the indices alone.
        self._buf = np.zeros(capacity_samples + 1, dtype=np.int16)
        self._size = capacity_samples + 1
        self._write_idx = 0  # written only by the producer
        self._read_idx = 0  # written only by the consumer
        self._clear_seq = 0  # producer: bumped on each clear request
        self._clear_upto = 0  # producer: write index at the time of the request
        self._clear_fade = 0
        self._clear_seen = 0  # consumer: last request honoured
        self.rejected_samples = 0  # producer-side counter
        self.underrun_samples = 0  # consumer-side counter
        self.cleared_samples = 0  # consumer-side counter

    # -- shared, read-only -------------------------------------------------------------------------
    def readable(self) -> int:
        """Samples available to the consumer (may be stale by one concurrent write; never too high)."""
        return (self._write_idx - self._read_idx) % self._size

    def writable(self) -> int:
        """Samples the producer can write now without rejection."""
        return self.capacity_samples - self.readable()

    # -- producer ----------------------------------------------------------------------------------
    def write(self, samples: Int16Array) -> int:
        """Copy as many samples as fit; return how many were stored (the rest is counted as rejected)."""
        n = min(int(samples.size), self.writable())
        if n < samples.size:
            self.rejected_samples += int(samples.size) - n
        if n == 0:
            return 0
        w = self._write_idx
        first = min(n, self._size - w)
        self._buf[w : w + first] = samples[:first]
        if n > first:
            self._buf[: n - first] = samples[first:n]
        self._write_idx = (w + n) % self._size
        return n

    def request_clear(self, fade_samples: int) -> None:
        """Ask the consumer to drop everything written so far, fading out over `fade_samples`.

        Takes effect at the consumer's next `read_into`; samples written after this call are kept.
        """
        self._clear_upto = self._write_idx
        self._clear_fade = max(0, fade_samples)
        self._clear_seq += 1

    # -- consumer ----------------------------------------------------------------------------------
    def read_into(self, out: Int16Array) -> int:
        """Fill `out` from the ring; pad the rest with zeros. Return the number of real samples."""
        if self._clear_seen != self._clear_seq:
            self._honour_clear()
        n = min(int(out.size), self.readable())
        r = self._read_idx
        first = min(n, self._size - r)
        out[:first] = self._buf[r : r + first]
        if n > first:
            out[first:n] = self._buf[: n - first]
        if n < out.size:
            out[n:] = 0
            self.underrun_samples += int(out.size) - n
        self._read_idx = (r + n) % self._size
        return n

    def read(self, n_samples: int) -> Int16Array:
        """Read exactly `n_samples` or fewer if fewer are available (no padding)."""
        if self._clear_seen != self._clear_seq:
            self._honour_clear()
        out = np.empty(min(n_samples, self.readable()), dtype=np.int16)
        self.read_into(out)
        return out

    def _honour_clear(self) -> None:
        seq = self._clear_seq
        upto = self._clear_upto
        fade = self._clear_fade
        r = self._read_idx
        pending = (upto - r) % self._size
        if pending > self.readable():
            # The producer's index snapshot is behind a concurrent read; nothing left to clear.
            pending = 0
        fade = min(fade, pending)
        if fade > 0:
            # Fade the next `fade` samples in place and keep them; drop the rest up to the snapshot.
            idx = (np.arange(fade) + r) % self._size
            ramp = np.linspace(1.0, 0.0, fade + 1, dtype=np.float32)[1:]
            self._buf[idx] = np.round(self._buf[idx].astype(np.float32) * ramp).astype(np.int16)
            dropped = pending - fade
            # Move the faded samples to sit just before `upto`, so the reader continues seamlessly
            # into whatever the producer wrote after the request.
            new_r = (upto - fade) % self._size
            if dropped > 0:
                faded = self._buf[idx].copy()
                self._buf[(np.arange(fade) + new_r) % self._size] = faded
            self.cleared_samples += dropped
            self._read_idx = new_r
        else:
            self.cleared_samples += pending
            self._read_idx = upto % self._size
        self._clear_seen = seq
