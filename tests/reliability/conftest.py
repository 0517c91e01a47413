"""Fixtures of the reliability suite.

Every test here runs with voiced's logging configured at debug level into a buffer (structlog and the
stdlib loggers that websockets and asyncio use), and the buffer is checked for the Coze token when the
test ends: no line logged anywhere in the suite may carry it. Tests read what was logged through the
``logs`` fixture. The harness builds the daemon without ``voiced.log.register_secret``, so redaction is
not what keeps the token out of these logs: the daemon must simply never log it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from tests.agent.harness import TOKEN
from tests.support.pulse import pulse
from voiced.log import configure

__all__ = ["CapturedLogs", "logs", "pulse"]


class CapturedLogs:
    """The lines logged during one test (JSON lines from structlog, plain lines from stdlib logging)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self) -> list[dict[str, object]]:
        """The structlog records, parsed."""
        found: list[dict[str, object]] = []
        for line in self.text.split("\n"):
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    found.append(record)
        return found

    def with_event(self, text: str) -> list[dict[str, object]]:
        """Records whose ``event`` message contains ``text``."""
        return [r for r in self.events() if text in str(r.get("event", ""))]


@pytest.fixture(autouse=True)
def logs() -> Iterator[CapturedLogs]:
    """Debug-level log capture for the test, then the token scan over everything captured."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_structlog = structlog.get_config()
    captured = CapturedLogs()
    configure("debug", "json", stream=captured.stream)
    try:
        yield captured
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)
    leaked = [line for line in captured.text.split("\n") if TOKEN in line]
    assert not leaked, f"the Coze token was logged: {leaked[:3]}"
