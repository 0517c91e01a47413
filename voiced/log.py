"""Logging: structlog, JSON lines off a terminal (journald-friendly), readable console on one.

Call :func:`configure` once at start-up, and :func:`register_secret` with every secret (the Coze
token) as soon as it is known: a processor replaces each occurrence in any logged value, so even a
third-party message that quotes a header cannot leak it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Hashable, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TextIO, TypeVar

import structlog
from structlog.typing import FilteringBoundLogger

_secrets: set[str] = set()
KindT = TypeVar("KindT", bound=Hashable)
REDACTED = "***"


def register_secret(secret: str) -> None:
    """Never log ``secret``: every occurrence in a log line becomes ``***`` from now on."""
    if len(secret) >= 4:
        _secrets.add(secret)


# Any bearer credential, registered or not: websockets logs request headers at debug level on
# both ends, and the emulator in the same process may see a token nobody registered.
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


def redact(text: str) -> str:
    """``text`` with every registered secret, and any ``Bearer …`` credential, replaced."""
    text = _BEARER.sub(r"\1" + REDACTED, text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(value)
    return event_dict


class _RedactingFilter(logging.Filter):
    """Redacts stdlib records too (websockets and asyncio log through logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            # Tracebacks quote local values and messages: render them now, redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger. ``fmt`` is ``auto``, ``json`` or ``console``."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            bound_fields,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(_RedactingFilter())
    handler.addFilter(BoundingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # websockets logs every frame at debug; keep it quiet unless asked.
    logging.getLogger("websockets").setLevel(logging.WARNING if numeric > logging.DEBUG else logging.DEBUG)


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger bound to ``component=name``."""
    logger: FilteringBoundLogger = structlog.get_logger(component=name)
    return logger


# --- bounded fields and rate-limited warnings --------------------------------------------------------

#: No logged string (the event text or any field) is longer than this many characters.
MAX_FIELD_CHARS = 512
TRUNCATED_MARKER = "…[truncated {dropped} chars]"
# Fields a line may carry before the rest are folded into one ``dropped_fields`` count.
_MAX_FIELDS = 48
# Items kept of a list or dict field, and the size of such a field once rendered.
_MAX_ITEMS = 16
_MAX_CONTAINER_CHARS = 4 * MAX_FIELD_CHARS


def truncate_text(text: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    """``text`` cut to about ``max_chars`` characters, with a marker that says how much was dropped."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + TRUNCATED_MARKER.format(dropped=len(text) - max_chars)


def _bound_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return truncate_text(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, int | float | bool) or value is None:
        return value
    if not isinstance(value, dict | list | tuple) or depth >= 3:
        return truncate_text(str(value))
    bounded: Any
    if isinstance(value, dict):
        items = list(value.items())
        bounded = {truncate_text(str(k), 64): _bound_value(v, depth + 1) for k, v in items[:_MAX_ITEMS]}
        if len(items) > _MAX_ITEMS:
            bounded["…"] = f"{len(items) - _MAX_ITEMS} more keys"
    else:
        bounded = [_bound_value(v, depth + 1) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            bounded.append(f"… {len(value) - _MAX_ITEMS} more items")
    if depth == 0 and len(repr(bounded)) > _MAX_CONTAINER_CHARS:
        # Many bounded items still add up: the whole field becomes one bounded text.
        return truncate_text(repr(bounded), _MAX_CONTAINER_CHARS)
    return bounded


def bound_fields(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every string field (and the event text) at most :data:`MAX_FIELD_CHARS`.

    A server-supplied value (a 900 KB logid, a 100 KB event type) must not make a log line huge.
    The ``exception`` field (a rendered traceback) gets eight times the room, still bounded. Put this
    processor after ``format_exc_info`` and before the renderer.
    """
    keys = list(event_dict.keys())
    for key in keys[_MAX_FIELDS:]:
        del event_dict[key]
    if len(keys) > _MAX_FIELDS:
        event_dict["dropped_fields"] = len(keys) - _MAX_FIELDS
    for key, value in list(event_dict.items()):
        if key == "exception" and isinstance(value, str):
            event_dict[key] = truncate_text(value, 8 * MAX_FIELD_CHARS)
        else:
            event_dict[key] = _bound_value(value)
    return event_dict


class WarningLimiter(Generic[KindT]):
    """Lets through at most ``burst`` lines per ``period_s`` for each kind, and counts the rest.

    Key it by a FIXED set of kinds (an Enum or a Literal of the program's own names), never by a
    string the server or a plugin chose: the table then cannot grow. Use it like this::

        limiter = WarningLimiter[LogKind](period_s=10.0, burst=3)
        ...
        suppressed = limiter.allow(LogKind.UNKNOWN_EVENT)
        if suppressed is not None:
            log.warning("unknown event ignored", event_type=name, suppressed=suppressed)

    :meth:`allow` returns None when the line must be dropped, else how many lines of that kind were
    dropped since the last one let through (log it, so the volume stays visible). ``clock`` is
    ``time.monotonic`` unless a test passes its own.
    """

    def __init__(
        self, *, period_s: float = 10.0, burst: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if period_s <= 0 or burst < 1:
            raise ValueError("period_s must be > 0 and burst >= 1")
        self.period_s = period_s
        self.burst = burst
        self._clock = clock
        self._windows: dict[KindT, _Window] = {}

    def allow(self, kind: KindT) -> int | None:
        """None to drop this line; else the number of lines of ``kind`` dropped before it."""
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window.started_s >= self.period_s:
            dropped = window.dropped if window is not None else 0
            self._windows[kind] = _Window(now, 1, 0)
            return dropped
        if window.passed < self.burst:
            window.passed += 1
            dropped, window.dropped = window.dropped, 0
            return dropped
        window.dropped += 1
        return None

    def dropped(self, kind: KindT) -> int:
        """Lines of ``kind`` dropped and not yet reported by a later :meth:`allow`."""
        window = self._windows.get(kind)
        return 0 if window is None else window.dropped


class BoundingFilter(logging.Filter):
    """Bounds stdlib records (websockets and asyncio log through logging) like :func:`bound_fields`.

    Add it after the redacting filter, which renders the message and traceback into text first.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = truncate_text(record.getMessage())
        record.args = None
        if record.exc_text:
            record.exc_text = truncate_text(record.exc_text, 8 * MAX_FIELD_CHARS)
        return True


@dataclass
class _Window:
    started_s: float
    passed: int
    dropped: int


# --- the process's own stdout and stderr ---------------------------------------------------------------


class RedactingStream:
    """A text stream that passes everything written through :func:`redact` before the real one.

    Whole writes are redacted (``print(token)`` writes the token in one piece, and a traceback
    writes each line whole); a secret split across two ``write`` calls is not caught. Bytes written
    to ``.buffer`` or to the file descriptor bypass it.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def install_redacting_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`RedactingStream` (once; idempotent).

    Call it first thing in a program that runs plugins: their prints and the interpreter's own
    tracebacks (``sys.excepthook``, ``threading.excepthook``, asyncio's handler) then cannot show a
    registered secret. Call it before :func:`configure`, which keeps a reference to the stream.
    """
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
