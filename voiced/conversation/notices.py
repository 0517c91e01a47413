"""What the conversation core wants logged, and the rate limiter that keeps the log bounded.

The core has no logger: it returns :class:`Notice` actions, each of a fixed :class:`NoticeKind`.
The shell logs them through one :class:`NoticeLimiter`, keyed by kind — never by a string the server
sent — so a flood of any kind costs a few lines and constant memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@enum.unique
class NoticeKind(enum.Enum):
    """Each kind: (its name, log level, lines allowed in a burst before the limiter folds them)."""

    CONFIGURED = ("configured", "info", 20)
    HEARD = ("heard", "info", 20)
    TURN = ("turn", "info", 20)
    WAKE = ("wake", "info", 10)
    LISTEN_TIMEOUT = ("listen_timeout", "info", 10)
    STATE = ("state", "debug", 1000)
    INTERRUPTED = ("interrupted", "info", 20)
    SERVER_CANCELLED = ("server_cancelled", "info", 20)
    TOOLS_CANCELLED = ("tools_cancelled", "info", 10)
    TOOLS_ABANDONED = ("tools_abandoned", "info", 10)
    TOOLS_NOT_SUBMITTED = ("tools_not_submitted", "warning", 5)
    CHAT_FAILED = ("chat_failed", "warning", 5)
    UNANSWERED = ("unanswered", "warning", 5)
    SERVER_ERROR = ("server_error", "warning", 3)
    UNKNOWN_EVENT = ("unknown_event", "warning", 3)
    MALFORMED = ("malformed", "warning", 3)
    OUT_OF_ORDER = ("out_of_order", "warning", 3)
    INVALID_AUDIO = ("invalid_audio", "warning", 3)
    ILLEGAL_MOVE = ("illegal_move", "warning", 3)
    UPLINK_DROPPED = ("uplink_dropped", "warning", 3)
    INTERNAL_ERROR = ("internal_error", "error", 5)

    @property
    def level(self) -> str:
        """The log level: debug, info, warning or error."""
        return self.value[1]

    @property
    def burst(self) -> int:
        """Lines logged in a row before the limiter starts folding them."""
        return self.value[2]


@dataclass(frozen=True, slots=True)
class Notice:
    """Log ``message`` with ``fields`` (the shell bounds each field's size)."""

    kind: NoticeKind
    message: str
    fields: dict[str, object] = field(default_factory=dict)


class NoticeLimiter:
    """Per kind: ``kind.burst`` lines, then one line per ``interval_s`` carrying how many were folded.

    Memory is one entry per :class:`NoticeKind`, whatever arrives.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._window: dict[NoticeKind, tuple[float, int, int]] = {}

    def admit(self, kind: NoticeKind, now_s: float) -> int | None:
        """None to stay quiet; else how many occurrences this line stands for (1, or 1 + folded)."""
        start_s, logged, folded = self._window.get(kind, (now_s, 0, 0))
        if now_s - start_s >= self.interval_s:
            # A new window: report what the last one folded.
            self._window[kind] = (now_s, 1, 0)
            return folded + 1
        if logged < kind.burst:
            self._window[kind] = (start_s, logged + 1, folded)
            return 1
        self._window[kind] = (start_s, logged, folded + 1)
        return None
