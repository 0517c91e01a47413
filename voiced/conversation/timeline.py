"""Per-turn timing, and the latency samples the benchmarks read.

A :class:`TurnTimeline` collects the moments of one user turn and its reply; when the reply is over
the daemon logs it as one summary line. :class:`LatencyStats` keeps bounded samples of the
client-side latencies that voiced controls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


def _ms(start_s: float | None, end_s: float | None) -> float | None:
    if start_s is None or end_s is None:
        return None
    return round((end_s - start_s) * 1000.0, 1)


@dataclass(slots=True)
class TurnTimeline:
    """The moments (monotonic seconds) of one turn. Fill it as things happen; read :meth:`summary`."""

    speech_start_s: float | None = None
    speech_end_s: float | None = None
    complete_sent_s: float | None = None
    chat_id: str | None = None
    first_delta_s: float | None = None
    first_sample_s: float | None = None
    chat_done_s: float | None = None
    heard: str = ""
    reply: str = ""
    played_ms: float = 0.0
    interrupted: bool = False
    interrupted_s: float | None = None
    underruns_at_start: int = 0
    underruns: int = 0
    tool_calls: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The fields of the one-line turn summary, latencies in ms (None when not reached)."""
        return {
            "chat_id": self.chat_id,
            "heard": self.heard,
            "reply": self.reply,
            "speech_end_to_complete_ms": _ms(self.speech_end_s, self.complete_sent_s),
            "speech_end_to_first_delta_ms": _ms(self.speech_end_s, self.first_delta_s),
            "first_delta_to_first_sample_ms": _ms(self.first_delta_s, self.first_sample_s),
            "speech_end_to_first_sample_ms": _ms(self.speech_end_s, self.first_sample_s),
            "played_ms": round(self.played_ms, 1),
            "interrupted": self.interrupted,
            "underruns": self.underruns,
            "tool_calls": list(self.tool_calls),
        }


class LatencyStats:
    """Bounded samples (ms) of each client-side latency, by name. Cheap enough for the audio path."""

    def __init__(self, max_samples: int = 2000) -> None:
        self._max_samples = max_samples
        self.samples: dict[str, deque[float]] = {}
        #: Called with (name, ms) for every sample (the metrics' histograms); must return at once.
        self.on_sample: Callable[[str, float], None] | None = None

    def add(self, name: str, start_s: float | None, end_s: float | None) -> None:
        """Record ``end_s - start_s`` under ``name``; nothing when either moment is unknown."""
        if start_s is None or end_s is None:
            return
        bucket = self.samples.get(name)
        if bucket is None:
            bucket = self.samples[name] = deque(maxlen=self._max_samples)
        bucket.append((end_s - start_s) * 1000.0)
        if self.on_sample is not None:
            self.on_sample(name, bucket[-1])

    def percentile(self, name: str, pct: float) -> float | None:
        """The ``pct`` percentile of ``name`` in ms, or None without samples."""
        values = sorted(self.samples.get(name, ()))
        if not values:
            return None
        index = min(len(values) - 1, max(0, round(pct / 100.0 * (len(values) - 1))))
        return values[index]
