"""The `input_audio_buffer.append` frame, serialised from a template.

An append goes out every 20 ms while the microphone streams. Building it through the pydantic model
(uuid4, model construction, `model_dump`, `json.dumps`) costs several times the base64 itself, so
this module formats the exact text `InputAudioBufferAppend.from_audio(payload, id).to_frame()` gives,
byte for byte, from a preformatted envelope. Ids come from `EventIdCounter`: a random per-process
prefix and a counter, unique within a process and unlikely to repeat across processes, which is all
the server needs of them (it echoes nothing; Coze support can still find a frame by id).
"""

from __future__ import annotations

import itertools
import json
import secrets
from base64 import b64encode

__all__ = ["EventIdCounter", "append_frame", "new_append_id"]

_PREFIX = '{"event_type":"input_audio_buffer.append","id":"'
_MIDDLE = '","data":{"delta":"'
_SUFFIX = '"}}'


class EventIdCounter:
    """Event ids `<prefix>-<n>`: `prefix` is random hex unless given, `n` counts from 1.

    Call `next_id()` per frame; thread-safe under the GIL (itertools.count is atomic).
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix if prefix is not None else secrets.token_hex(6)
        self._count = itertools.count(1)

    def next_id(self) -> str:
        """The next id."""
        return f"{self.prefix}-{next(self._count)}"


_process_ids = EventIdCounter()


def new_append_id() -> str:
    """A fresh id from this process's counter (use it as `append_frame`'s `event_id`)."""
    return _process_ids.next_id()


def _id_is_plain(event_id: str) -> bool:
    # JSON needs no escaping for printable text without quotes or backslashes.
    return event_id.isprintable() and '"' not in event_id and "\\" not in event_id


def append_frame(payload: bytes, event_id: str) -> str:
    """The `input_audio_buffer.append` text frame carrying `payload` (raw PCM, or one Opus packet).

    Identical to `InputAudioBufferAppend.from_audio(payload, event_id).to_frame()`. The caller
    decides whether an empty payload is worth sending (the session refuses to).
    """
    if _id_is_plain(event_id):
        return _PREFIX + event_id + _MIDDLE + b64encode(payload).decode("ascii") + _SUFFIX
    quoted = json.dumps(event_id, ensure_ascii=False)
    return _PREFIX[:-1] + quoted + _MIDDLE[1:] + b64encode(payload).decode("ascii") + _SUFFIX
