"""What the conversation core wants logged, and the rate limiter that keeps the log bounded.

The core has no logger: it returns :class:`Notice` actions, each of a fixed :class:`NoticeKind`.
The shell logs them through one :class:`NoticeLimiter`, keyed by kind — never by a string the server
sent — so a flood of any kind costs a few lines and constant memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class NoticeKind(enum.Enum):
    """Each kind: (log level, lines allowed in a burst before the limiter folds them)."""

    CONFIGURED = ("info", 20)
    HEARD = ("info", 20)
    TURN = ("info", 20)
    WAKE = ("info", 10)
    LISTEN_TIMEOUT = ("info", 10)
    STATE = ("debug", 1000)
    INTERRUPTED = ("info", 20)
    SERVER_CANCELLED = ("info", 20)
    TOOLS_CANCELLED = ("info", 10)
    TOOLS_ABANDONED = ("info", 10)
    TOOLS_NOT_SUBMITTED = ("warning", 5)
    CHAT_FAILED = ("warning", 5)
    UNANSWERED = ("warning", 5)
    SERVER_ERROR = ("warning", 3)
    UNKNOWN_EVENT = ("warning", 3)
    MALFORMED = ("warning", 3)
    OUT_OF_ORDER = ("warning", 3)
    INVALID_AUDIO = ("warning", 3)
    ILLEGAL_MOVE = ("warning", 3)
    UPLINK_DROPPED = ("warning", 3)
    INTERNAL_ERROR = ("error", 5)

    @property
    def level(self) -> str:
        """The log level: debug, info, warning or error."""
        return self.value[0]

    @property
    def burst(self) -> int:
        """Lines logged in a row before the limiter starts folding them."""
        return self.value[1]


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
