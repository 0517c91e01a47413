"""Turning a tool's result (or failure) into the ``output`` string the bot receives.

protocol.md §4.3: ``output`` is a string. A ``str`` result is sent as is; anything else as compact
JSON. Failures are JSON ``{"error": "...", "tool": "NAME"}`` so the bot can tell the listener what
went wrong instead of inventing an answer.
"""

from __future__ import annotations

import json
from typing import Any

TRUNCATION_MARKER = "…[truncated]"


def serialise_result(result: Any) -> str:
    """The output string of a tool result; raises ``TypeError`` if it cannot be JSON-encoded."""
    if isinstance(result, str):
        return result
    if hasattr(result, "model_dump") and callable(result.model_dump):
        result = result.model_dump(mode="json")
    try:
        return json.dumps(result, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the tool returned {type(result).__name__}, which is not JSON: return a str, a"
            " dict/list of JSON values, or a pydantic model"
        ) from exc


def error_output(tool_name: str, message: str) -> str:
    """The output string that tells the bot a call failed and why."""
    return json.dumps({"error": message, "tool": tool_name}, ensure_ascii=False, separators=(",", ":"))


def cap_output(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes; returns ``(text, truncated)``.

    A JSON output that is cut stays valid JSON: it becomes ``{"truncated": true, "original_bytes":
    N, "partial": "<prefix>"}``, so a bot that parses outputs still can. Plain text gets the prefix
    plus :data:`TRUNCATION_MARKER`. The cut never splits a UTF-8 character.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, False
    if _is_json(text):
        budget = max_bytes - 80
        while budget > 0:
            wrapped = json.dumps(
                {"truncated": True, "original_bytes": len(encoded), "partial": _prefix(encoded, budget)},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            excess = len(wrapped.encode("utf-8")) - max_bytes
            if excess <= 0:
                return wrapped, True
            budget -= excess
        return json.dumps({"truncated": True, "original_bytes": len(encoded)}), True
    marker_bytes = len(TRUNCATION_MARKER.encode("utf-8"))
    return _prefix(encoded, max_bytes - marker_bytes) + TRUNCATION_MARKER, True


def _prefix(encoded: bytes, max_bytes: int) -> str:
    return encoded[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def _is_json(text: str) -> bool:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in '{["':
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True
