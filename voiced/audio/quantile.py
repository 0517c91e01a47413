"""A percentile over a sliding window of the last N values, updated in O(log N) per value.

The turn detector's noise floor is the 20th percentile of the last 50 idle frame levels. Recomputing
it with `np.percentile` per frame costs an array build and a partial sort every 20 ms; this keeps the
window sorted instead (a bisect to remove the oldest value, a bisect to insert the newest; the list
moves are memmoves of at most N pointers) and answers with the same linear interpolation as
`np.percentile`'s default method, so the result is exact, not an estimate.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque


class SlidingPercentile:
    """The `percent`-th percentile (0..100) of the last `window` values pushed.

    Call `push` for each new value and `value()` for the current percentile (None while fewer than
    `min_count` values have been seen since construction or `clear`). Memory is bounded by `window`.
    """

    def __init__(self, window: int, percent: float, min_count: int = 1) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if not 0.0 <= percent <= 100.0:
            raise ValueError("percent must be within 0..100")
        self.window = window
        self.percent = percent
        self.min_count = max(1, min_count)
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._cached: float | None = None
        self._dirty = False

    def __len__(self) -> int:
        return len(self._fifo)

    def clear(self) -> None:
        """Forget every value."""
        self._fifo.clear()
        self._sorted.clear()
        self._cached = None
        self._dirty = False

    def push(self, value: float) -> None:
        """Add `value`; the oldest one leaves once the window is full. NaN is rejected (ValueError)."""
        if math.isnan(value):
            raise ValueError("SlidingPercentile takes numbers, got NaN")
        if len(self._fifo) == self.window:
            oldest = self._fifo.popleft()
            del self._sorted[bisect_left(self._sorted, oldest)]
        self._fifo.append(value)
        insort(self._sorted, value)
        self._dirty = True

    def value(self) -> float | None:
        """The percentile of the values in the window (np.percentile's 'linear' method), or None."""
        n = len(self._sorted)
        if n < self.min_count:
            return None
        if self._dirty or self._cached is None:
            rank = self.percent / 100.0 * (n - 1)
            lo = int(rank)
            hi = min(lo + 1, n - 1)
            frac = rank - lo
            a, b = self._sorted[lo], self._sorted[hi]
            # The same two-sided lerp numpy uses, so results match it to the last bit in practice.
            self._cached = a + (b - a) * frac if frac < 0.5 else b - (b - a) * (1.0 - frac)
            self._dirty = False
        return self._cached
