"""Hypothesis strategies for hostile server frames (what a broken or malicious server could send)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

from voiced.protocol.events import SERVER_EVENT_TYPES, Error, parse_server_frame

#: protocol.md §5: these end the daemon on purpose (FatalError), so the fuzzer must know them.
FATAL_CODES = frozenset({4100, 4101, 4027, 4028})

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ids = st.one_of(st.just("chat-1"), st.just("chat-2"), st.text(max_size=6), st.integers(), st.none())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


audio_contents = st.one_of(
    # odd-length and even-length PCM, valid base64
    st.binary(min_size=0, max_size=97).map(_b64),
    # corrupt Opus packets are just bytes too; the decoder under test decides
    st.binary(min_size=1, max_size=40).map(_b64),
    # not base64 at all, or base64 with junk
    st.text(max_size=20),
    st.sampled_from(["@@", "AAA", "A===", "====", "aGVsbG8", "\u00e9\u00e9", "AAAA\nAAAA"]),
    json_values,
)


def _message(chat_id: Any, content: Any, content_type: Any = "audio") -> dict[str, Any]:
    return {
        "id": "msg-1",
        "conversation_id": "conv-1",
        "bot_id": "bot",
        "chat_id": chat_id,
        "role": "assistant",
        "type": "answer",
        "content": content,
        "content_type": content_type,
    }


def _chat(chat_id: Any, status: Any, **extra: Any) -> dict[str, Any]:
    return {"id": chat_id, "conversation_id": "conv-1", "bot_id": "bot", "status": status, **extra}


@st.composite
def plausible_data(draw: st.DrawFn, event_type: str) -> Any:
    """A ``data`` that is right, or nearly right, for ``event_type``."""
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values)  # wrong type altogether
    if event_type == "conversation.audio.delta":
        return _message(draw(ids), draw(audio_contents), draw(st.sampled_from(["audio", "text", 3, None])))
    if event_type in ("conversation.message.delta", "conversation.message.completed"):
        return _message(
            draw(ids), draw(st.text(max_size=20) | json_values), draw(st.sampled_from(["text", 1]))
        )
    if event_type == "conversation.chat.requires_action":
        calls = draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "id": ids,
                        "type": st.just("function"),
                        "function": st.fixed_dictionaries(
                            {"name": st.sampled_from(["current_time", "nope", ""]) | json_values,
                             "arguments": st.sampled_from(["{}", "{", "[]", "null"]) | json_values}
                        ),
                    }
                ),
                max_size=3,
            )
        )  # fmt: skip
        return _chat(
            draw(ids),
            "requires_action",
            required_action={"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}},
        )
    if event_type.startswith("conversation.chat."):
        status = draw(st.sampled_from(["created", "in_progress", "completed", "failed", "canceled", 7]))
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["last_error"] = {
                "code": draw(st.integers() | st.text(max_size=4)),
                "msg": draw(st.text(max_size=8)),
            }
        return _chat(draw(ids), status, **extra)
    if event_type == "error":
        return {"code": draw(st.integers(-5, 5000) | st.sampled_from(sorted(FATAL_CODES)) | json_values),
                "msg": draw(st.text(max_size=10) | json_values)}  # fmt: skip
    if event_type in ("conversation.audio_transcript.update", "conversation.audio_transcript.completed"):
        return {"content": draw(st.text(max_size=20) | json_values)}
    if event_type == "chat.updated":
        return draw(st.just({}) | st.fixed_dictionaries({"chat_config": json_values}))
    return draw(st.none() | st.just({}) | json_values)


@st.composite
def envelopes(draw: st.DrawFn) -> str:
    """A JSON text frame with a known or unknown event type and a (mostly) plausible body."""
    event_type = draw(st.sampled_from(sorted(SERVER_EVENT_TYPES)) | st.text(max_size=15) | json_values)
    frame: dict[str, Any] = {"event_type": event_type}
    if draw(st.booleans()):
        frame["id"] = draw(ids)
    if draw(st.integers(0, 4)) > 0:
        frame["data"] = draw(plausible_data(event_type if isinstance(event_type, str) else ""))
    if draw(st.booleans()):
        frame["detail"] = draw(st.fixed_dictionaries({"logid": st.text(max_size=8)}) | json_values)
    if draw(st.integers(0, 9)) == 0:
        frame.pop("event_type")
    return json.dumps(frame)


@st.composite
def truncated(draw: st.DrawFn) -> str:
    whole = draw(envelopes())
    return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]


#: Every kind of frame the fuzzers send.
server_frames = st.one_of(
    envelopes(),
    truncated(),
    st.text(max_size=60),
    st.binary(max_size=60),
    st.sampled_from(["null", "[]", "42", '"text"', "{}", '{"event_type": null}', "[" * 5000 + "]" * 5000]),
)


def is_fatal_error_frame(frame: str | bytes) -> bool:
    """Whether ``frame`` parses as an ``error`` event whose code must end the daemon (protocol.md §5)."""
    event = parse_server_frame(frame)
    return isinstance(event, Error) and event.data.code in FATAL_CODES
