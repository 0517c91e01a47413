"""A rate limit for repeated log lines: the first few of a kind, then one per interval with a count."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Says whether to log one more line of ``kind``; pass it ``now_s`` or let it read the clock."""

    def __init__(
        self, interval_s: float = 10.0, burst: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = interval_s
        self._burst = burst
        self._clock = clock
        self._seen: dict[str, tuple[float, int, int]] = {}

    def allow(self, kind: str) -> int | None:
        """None to stay quiet; otherwise how many lines of ``kind`` were suppressed since the last one."""
        now_s = self._clock()
        window_start_s, logged, suppressed = self._seen.get(kind, (now_s, 0, 0))
        if now_s - window_start_s >= self._interval_s:
            window_start_s, logged = now_s, 0
        if logged < self._burst:
            self._seen[kind] = (window_start_s, logged + 1, 0)
            return suppressed
        self._seen[kind] = (window_start_s, logged, suppressed + 1)
        if len(self._seen) > 256:
            # Kinds are few and fixed in practice; forget them all rather than grow.
            self._seen.clear()
        return None
