"""Every log line stays bounded whatever a server or plugin puts in a field, and repeated warnings of
one kind are rate-limited by a table that cannot grow."""

from __future__ import annotations

import enum
import logging

import structlog

from tests.reliability.conftest import CapturedLogs
from voiced.log import MAX_FIELD_CHARS, WarningLimiter, get_logger, truncate_text


def test_a_900_kb_logid_and_event_text_are_truncated_with_a_marker(logs: CapturedLogs) -> None:
    huge = "L" * 900_000
    get_logger("test").warning(
        "server error " + huge, logid=huge, nested={"a": [huge] * 100}, raw=huge.encode()
    )
    logging.getLogger("websockets.client").warning("frame %s", huge)
    lines = logs.text.splitlines()
    assert len(lines) == 2
    assert all(len(line) < 12 * MAX_FIELD_CHARS for line in lines), [len(line) for line in lines]
    record = logs.events()[0]
    assert "truncated" in str(record["logid"]) and "truncated" in str(record["event"])


def test_a_line_with_thousands_of_fields_is_bounded(logs: CapturedLogs) -> None:
    fields = {f"k{i}": "v" * 100 for i in range(5000)}
    get_logger("test").info("many", **fields)
    (line,) = logs.text.splitlines()
    assert len(line) < 16 * 1024
    assert logs.events()[0]["dropped_fields"]


def test_truncate_text_keeps_short_text() -> None:
    assert truncate_text("abc", 3) == "abc"
    assert truncate_text("abcd", 3).startswith("abc…[truncated 1 chars]")


class Kind(enum.Enum):
    UNKNOWN_EVENT = "unknown event"
    UPLINK_DROP = "uplink drop"


def test_the_limiter_lets_a_burst_through_then_counts_what_it_dropped() -> None:
    now = [0.0]
    limiter = WarningLimiter[Kind](period_s=10.0, burst=3, clock=lambda: now[0])
    passed = [limiter.allow(Kind.UNKNOWN_EVENT) for _ in range(1000)]
    assert passed[:3] == [0, 0, 0] and passed[3:] == [None] * 997
    assert limiter.allow(Kind.UPLINK_DROP) == 0, "kinds are limited separately"
    assert limiter.dropped(Kind.UNKNOWN_EVENT) == 997
    now[0] = 10.5
    assert limiter.allow(Kind.UNKNOWN_EVENT) == 997, "the next line reports how many were dropped"
    assert limiter.dropped(Kind.UNKNOWN_EVENT) == 0


def test_structlog_is_restored_between_tests() -> None:
    assert structlog.is_configured()
