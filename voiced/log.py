"""Logging: structlog with journald lines under systemd, readable lines on a terminal, JSON otherwise.

Call :func:`configure` once at start-up, and :func:`register_secret` with every secret (the Coze
token) as soon as it is known: a processor replaces each occurrence in any logged value, so even a
third-party message that quotes a header cannot leak it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TextIO, TypeVar

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


#: What ``[log] format`` may say; ``auto`` resolves to one of the others by :func:`resolve_format`.
LogFormat = Literal["auto", "journal", "console", "json"]
#: syslog priorities by level name: journald reads a ``<N>`` prefix on each line as the priority.
_PRIORITIES = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "info": 6, "debug": 7}
# A value written bare in a key=value line; anything else is quoted and escaped.
_BARE_VALUE = re.compile(r"[^\s\"'=\\]+")


def under_journald(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd handed this process (``JOURNAL_STREAM``).

    systemd sets ``JOURNAL_STREAM=DEV:INODE`` for the service's stdout/stderr; a child whose output
    was redirected elsewhere inherits the variable, so the stream's own device and inode must match.
    A stream with no file descriptor cannot be checked and is trusted to be the journal.
    """
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return True
    return expected == f"{info.st_dev}:{info.st_ino}"


def resolve_format(fmt: str, stream: TextIO) -> Literal["journal", "console", "json"]:
    """The format ``fmt`` means on ``stream``: ``auto`` is journal under journald, console on a
    terminal, JSON otherwise."""
    if fmt == "journal":
        return "journal"
    if fmt == "console":
        return "console"
    if fmt == "json":
        return "json"
    if fmt != "auto":
        raise ValueError(f"log format {fmt!r}: use auto, journal, console or json")
    if under_journald(stream):
        return "journal"
    return "console" if stream.isatty() else "json"


def _kv_value(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    if _BARE_VALUE.fullmatch(text):
        return text
    # JSON string escaping: quotes, backslashes and newlines stay on one line (one journal entry).
    return json.dumps(text, ensure_ascii=False)


def journal_line(level: str, fields: Mapping[str, Any]) -> str:
    """One journald line: ``<priority>`` then ``key=value`` pairs, the message first as ``msg``."""
    priority = _PRIORITIES.get(level, 6)
    return f"<{priority}>" + " ".join(f"{key}={_kv_value(value)}" for key, value in fields.items())


def _journal_renderer(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    level = str(event_dict.pop("level", "info"))
    fields: dict[str, Any] = {"msg": event_dict.pop("event", ""), "level": level}
    fields.update(event_dict)
    return journal_line(level, fields)


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        fields: dict[str, Any] = {"msg": record.getMessage(), "level": level, "logger": record.name}
        if record.exc_text:
            fields["exception"] = record.exc_text
        return journal_line(level, fields)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        if record.exc_text:
            fields["exception"] = record.exc_text
        return json.dumps(fields, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger. ``fmt`` is a :data:`LogFormat`.

    Every format runs the same processors (redaction, then :func:`bound_fields`) before rendering:
    ``journal`` writes ``<priority>key=value`` lines with no timestamp (journald adds its own),
    ``console`` human lines in local time, ``json`` one JSON object per line with a UTC timestamp.
    Also routes alsa-lib's own error printing into the log (see :func:`install_alsa_error_handler`).
    """
    out = stream if stream is not None else sys.stderr
    chosen = resolve_format(fmt, out)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    formatter: logging.Formatter
    if chosen == "journal":
        renderer: Any = _journal_renderer
        formatter = _JournalFormatter()
    elif chosen == "console":
        processors.append(structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False))
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        formatter = logging.Formatter(
            "%(asctime)s [%(levelname)-9s] %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
        )
    else:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
        formatter = _JsonFormatter()
    processors += [structlog.processors.format_exc_info, _redact_processor, bound_fields, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(_RedactingFilter())
    handler.addFilter(BoundingFilter())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # websockets logs every frame at debug; keep it quiet unless asked.
    logging.getLogger("websockets").setLevel(logging.WARNING if numeric > logging.DEBUG else logging.DEBUG)
    install_alsa_error_handler()


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


# --- alsa-lib's own error printing ------------------------------------------------------------------

# snd_lib_error_handler_t is variadic in C; the handler takes the fixed arguments and ignores the
# printf arguments (a callee may ignore trailing arguments on every ABI voiced runs on).
_ALSA_HANDLER_TYPE = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)


class AlsaErrorLog:
    """Counts alsa-lib's error reports and logs at most ``burst`` of them per ``period_s``.

    alsa-lib prints every error to stderr (``ALSA lib pcm.c:… underrun occurred``), hundreds of
    lines when a sound server hiccups. Each report is counted (:attr:`total`); the first ``burst`` in
    a window are logged with their source location and printf format (the arguments cannot be read
    portably), and the rest are folded into one line when the window ends. Thread-safe: alsa-lib
    calls it from the audio threads.
    """

    def __init__(
        self, *, period_s: float = 60.0, burst: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.period_s = period_s
        self.burst = burst
        self.total = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._window_started_s = -float("inf")
        self._logged = 0
        self._folded = 0
        self._timer: threading.Timer | None = None
        self._log = get_logger("alsa")

    def report(self, file: str, line: int, function: str, err: int, message: str) -> None:
        """Record one alsa-lib error report; log it unless this window already had ``burst``."""
        with self._lock:
            self.total += 1
            now = self._clock()
            if now - self._window_started_s >= self.period_s:
                self._flush_locked()
                self._window_started_s, self._logged = now, 0
            if self._logged >= self.burst:
                self._folded += 1
                if self._timer is None:
                    self._timer = threading.Timer(self._window_started_s + self.period_s - now, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._logged += 1
            fields: dict[str, Any] = {"where": f"{file}:{line} ({function})", "total": self.total}
            if err:
                fields["error"] = os.strerror(abs(err))
            self._log.warning(f"alsa-lib: {message.strip()}", **fields)

    def flush(self) -> None:
        """Log how many reports were folded since the last line (the window's end does this too)."""
        # Also the window's timer thread: at exit the log's stream may already be closed, and a
        # count of folded reports is not worth a traceback then.
        with self._lock, contextlib.suppress(ValueError, OSError):
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._folded:
            self._log.warning(
                "alsa-lib reported more errors (not logged one by one)",
                folded=self._folded,
                total=self.total,
                period_s=self.period_s,
            )
            self._folded = 0


#: The process's one alsa-lib error log; ``alsa_errors.total`` counts every report.
alsa_errors = AlsaErrorLog()
# alsa-lib keeps only the C pointer: the ctypes callback must live as long as the process.
_alsa_handlers: list[Any] = []


def _on_alsa_error(
    file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None
) -> None:
    # An exception must never unwind into C.
    with contextlib.suppress(Exception):
        alsa_errors.report(
            (file or b"?").decode(errors="replace"),
            line,
            (function or b"?").decode(errors="replace"),
            err,
            (fmt or b"").decode(errors="replace"),
        )


def install_alsa_error_handler() -> bool:
    """Route alsa-lib's error printing into :data:`alsa_errors` (idempotent; call it any time).

    Returns False where alsa-lib is not installed. The handler is process-wide and shared with the
    copy of alsa-lib PortAudio loads (the same shared object).
    """
    if _alsa_handlers:
        return True
    name = ctypes.util.find_library("asound") or "libasound.so.2"
    try:
        library = ctypes.CDLL(name)
        setter = library.snd_lib_error_set_handler
    except (OSError, AttributeError):
        return False
    setter.argtypes = [_ALSA_HANDLER_TYPE]
    setter.restype = ctypes.c_int
    handler = _ALSA_HANDLER_TYPE(_on_alsa_error)
    if setter(handler) != 0:
        return False
    _alsa_handlers.append(handler)
    return True
