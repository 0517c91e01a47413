"""One pydantic model per Coze realtime chat event, and the functions that parse and encode frames.

Every frame in both directions is one JSON text frame ``{"id", "event_type", "data", "detail"}``
(protocol.md §2). Parsing happens once, at the edge: :func:`parse_server_frame` and
:func:`parse_client_frame` turn a received frame into exactly one typed event and never raise.
A frame whose ``event_type`` is not known becomes :class:`UnknownEvent`; a frame that is not a JSON
object, is binary, is too large, or whose fields have the wrong types becomes
:class:`MalformedEvent`. Callers match on types, never on dict keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voiced.protocol.models import (
    Chat,
    ContentTypeValue,
    ErrorData,
    Message,
    RoleValue,
    SessionConfig,
    ToolOutput,
    WireModel,
)

#: Frames larger than this are refused unparsed. Real audio deltas are ~16 KB of base64; a
#: megabyte-sized frame is a fault or an attack, not audio.
DEFAULT_MAX_FRAME_BYTES = 1 << 20


def new_event_id() -> str:
    """A fresh event id; the server echoes nothing of it, but Coze support can use it."""
    return str(uuid.uuid4())


class Detail(WireModel):
    """Server-side metadata; ``logid`` is what Coze support asks for, so log it."""

    logid: str | None = None
    respond_at: str | None = None
    origin_message: str | None = None


class EventBase(BaseModel):
    """The envelope shared by every event. Subclasses pin ``event_type`` and type ``data``."""

    model_config = ConfigDict(extra="allow")

    event_type: str
    id: str | None = None
    detail: Detail | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict of this event, unset fields omitted."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_frame(self) -> str:
        """The text frame to send: compact JSON, non-ASCII kept (as the real server sends it)."""
        return json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"))


# --- client → server, protocol.md §3 ------------------------------------------------------------


class AudioDeltaData(WireModel):
    delta: str


class MessageCreateData(WireModel):
    role: RoleValue
    content_type: ContentTypeValue = "text"
    content: str


class SubmitToolOutputsData(WireModel):
    chat_id: str
    tool_outputs: list[ToolOutput]


class GenerateAudioData(WireModel):
    mode: str = "text"
    text: str | None = None


class ChatUpdate(EventBase):
    event_type: Literal["chat.update"] = "chat.update"
    data: SessionConfig = Field(default_factory=SessionConfig)


class InputAudioBufferAppend(EventBase):
    event_type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    data: AudioDeltaData

    @classmethod
    def from_audio(cls, payload: bytes, event_id: str | None = None) -> InputAudioBufferAppend:
        """An append carrying ``payload`` (raw PCM bytes, or exactly one raw Opus packet)."""
        return cls(id=event_id, data=AudioDeltaData(delta=base64.b64encode(payload).decode("ascii")))


class InputAudioBufferComplete(EventBase):
    event_type: Literal["input_audio_buffer.complete"] = "input_audio_buffer.complete"
    data: dict[str, Any] | None = None


class InputAudioBufferClear(EventBase):
    event_type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"
    data: dict[str, Any] | None = None


class ConversationMessageCreate(EventBase):
    event_type: Literal["conversation.message.create"] = "conversation.message.create"
    data: MessageCreateData


class ConversationClear(EventBase):
    event_type: Literal["conversation.clear"] = "conversation.clear"
    data: dict[str, Any] | None = None


class ConversationChatSubmitToolOutputs(EventBase):
    event_type: Literal["conversation.chat.submit_tool_outputs"] = "conversation.chat.submit_tool_outputs"
    data: SubmitToolOutputsData


class ConversationChatCancel(EventBase):
    event_type: Literal["conversation.chat.cancel"] = "conversation.chat.cancel"
    data: dict[str, Any] | None = None


class InputTextGenerateAudio(EventBase):
    event_type: Literal["input_text.generate_audio"] = "input_text.generate_audio"
    data: GenerateAudioData


# --- server → client, protocol.md §4 ------------------------------------------------------------


class SentenceStartData(WireModel):
    text: str = ""


class TranscriptData(WireModel):
    content: str = ""


class CanceledData(WireModel):
    # 1 = interrupted by user speech, 2 = client cancel, 3 = a new message.create (§4).
    code: int | None = None
    msg: str | None = None


class DumpAudioData(WireModel):
    url: str | None = None


class ChatCreated(EventBase):
    event_type: Literal["chat.created"] = "chat.created"
    data: dict[str, Any] | None = None


class ChatUpdated(EventBase):
    event_type: Literal["chat.updated"] = "chat.updated"
    data: SessionConfig = Field(default_factory=SessionConfig)


class ConversationChatCreated(EventBase):
    event_type: Literal["conversation.chat.created"] = "conversation.chat.created"
    data: Chat


class ConversationChatInProgress(EventBase):
    event_type: Literal["conversation.chat.in_progress"] = "conversation.chat.in_progress"
    data: Chat


class ConversationMessageDelta(EventBase):
    event_type: Literal["conversation.message.delta"] = "conversation.message.delta"
    data: Message


class ConversationMessageCompleted(EventBase):
    event_type: Literal["conversation.message.completed"] = "conversation.message.completed"
    data: Message


class ConversationAudioSentenceStart(EventBase):
    event_type: Literal["conversation.audio.sentence_start"] = "conversation.audio.sentence_start"
    data: SentenceStartData


class ConversationAudioDelta(EventBase):
    event_type: Literal["conversation.audio.delta"] = "conversation.audio.delta"
    data: Message

    def audio(self) -> bytes:
        """The decoded payload; raises ``ValueError`` when ``content`` is not valid base64."""
        try:
            return base64.b64decode(self.data.content, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"audio delta content is not valid base64: {exc}") from exc


class ConversationAudioCompleted(EventBase):
    event_type: Literal["conversation.audio.completed"] = "conversation.audio.completed"
    data: Message | None = None


class ConversationChatRequiresAction(EventBase):
    event_type: Literal["conversation.chat.requires_action"] = "conversation.chat.requires_action"
    data: Chat


class ConversationChatCompleted(EventBase):
    event_type: Literal["conversation.chat.completed"] = "conversation.chat.completed"
    data: Chat


class ConversationChatFailed(EventBase):
    event_type: Literal["conversation.chat.failed"] = "conversation.chat.failed"
    data: Chat


class ConversationChatCanceled(EventBase):
    event_type: Literal["conversation.chat.canceled"] = "conversation.chat.canceled"
    data: CanceledData | None = None


class ConversationCleared(EventBase):
    event_type: Literal["conversation.cleared"] = "conversation.cleared"
    data: dict[str, Any] | None = None


class InputAudioBufferCompleted(EventBase):
    event_type: Literal["input_audio_buffer.completed"] = "input_audio_buffer.completed"
    data: dict[str, Any] | None = None


class InputAudioBufferCleared(EventBase):
    event_type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"
    data: dict[str, Any] | None = None


class InputAudioBufferSpeechStarted(EventBase):
    event_type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    data: dict[str, Any] | None = None


class InputAudioBufferSpeechStopped(EventBase):
    event_type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    data: dict[str, Any] | None = None


class ConversationAudioTranscriptUpdate(EventBase):
    event_type: Literal["conversation.audio_transcript.update"] = "conversation.audio_transcript.update"
    data: TranscriptData


class ConversationAudioTranscriptCompleted(EventBase):
    event_type: Literal["conversation.audio_transcript.completed"] = "conversation.audio_transcript.completed"
    data: TranscriptData


class Error(EventBase):
    event_type: Literal["error"] = "error"
    data: ErrorData


class DumpAudio(EventBase):
    event_type: Literal["dump.audio"] = "dump.audio"
    data: DumpAudioData | None = None


# --- frames that are not events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A well-formed frame whose ``event_type`` this version does not know. Log it and go on."""

    event_type: str
    raw: dict[str, Any] = field(repr=False)
    id: str | None = None
    logid: str | None = None


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    """A frame that could not be parsed. ``reason`` says why; ``excerpt`` is its start, for the log."""

    reason: str
    excerpt: str
    event_type: str | None = None

    EXCERPT_CHARS: ClassVar[int] = 120


AnyServerEvent = (
    ChatCreated
    | ChatUpdated
    | ConversationChatCreated
    | ConversationChatInProgress
    | ConversationMessageDelta
    | ConversationMessageCompleted
    | ConversationAudioSentenceStart
    | ConversationAudioDelta
    | ConversationAudioCompleted
    | ConversationChatRequiresAction
    | ConversationChatCompleted
    | ConversationChatFailed
    | ConversationChatCanceled
    | ConversationCleared
    | InputAudioBufferCompleted
    | InputAudioBufferCleared
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | ConversationAudioTranscriptUpdate
    | ConversationAudioTranscriptCompleted
    | Error
    | DumpAudio
)
AnyClientEvent = (
    ChatUpdate
    | InputAudioBufferAppend
    | InputAudioBufferComplete
    | InputAudioBufferClear
    | ConversationMessageCreate
    | ConversationClear
    | ConversationChatSubmitToolOutputs
    | ConversationChatCancel
    | InputTextGenerateAudio
)
ServerEvent = Annotated[AnyServerEvent, Field(discriminator="event_type")]
ClientEvent = Annotated[AnyClientEvent, Field(discriminator="event_type")]


_server_adapter: TypeAdapter[Any] = TypeAdapter(ServerEvent)
_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientEvent)

SERVER_EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["event_type"].default for m in get_args(AnyServerEvent)
)
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["event_type"].default for m in get_args(AnyClientEvent)
)


def _excerpt(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else repr(frame[: MalformedEvent.EXCERPT_CHARS])
    return text[: MalformedEvent.EXCERPT_CHARS]


def _parse(
    frame: str | bytes,
    adapter: TypeAdapter[Any],
    known: frozenset[str],
    max_frame_bytes: int,
) -> Any:
    if isinstance(frame, bytes | bytearray | memoryview):
        # The protocol never uses binary frames (§2): a binary frame is a fault, not UTF-8 JSON.
        reason = "binary frame (the protocol uses JSON text frames only)"
        return MalformedEvent(reason, _excerpt(bytes(frame)))
    if len(frame) > max_frame_bytes:
        return MalformedEvent(f"frame of {len(frame)} bytes exceeds the {max_frame_bytes}-byte limit", "")
    try:
        obj = json.loads(frame)
    except (json.JSONDecodeError, RecursionError) as exc:
        return MalformedEvent(f"not JSON: {exc}", _excerpt(frame))
    if not isinstance(obj, dict):
        return MalformedEvent(f"frame is a JSON {type(obj).__name__}, not an object", _excerpt(frame))
    event_type = obj.get("event_type")
    if not isinstance(event_type, str):
        return MalformedEvent("frame has no string event_type", _excerpt(frame))
    if event_type not in known:
        detail = obj.get("detail")
        logid = detail.get("logid") if isinstance(detail, dict) else None
        event_id = obj.get("id")
        return UnknownEvent(
            event_type=event_type,
            raw=obj,
            id=event_id if isinstance(event_id, str) else None,
            logid=logid if isinstance(logid, str) else None,
        )
    if obj.get("data") == {} and event_type in DATA_MAY_BE_EMPTY:
        obj = {k: v for k, v in obj.items() if k != "data"}
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        return MalformedEvent(f"{event_type}: {where}: {first['msg']}", _excerpt(frame), event_type)


#: Events whose data may legitimately arrive as {} — the server and cozepy both send that.
DATA_MAY_BE_EMPTY = frozenset(
    {
        "chat.created",
        "conversation.cleared",
        "conversation.chat.canceled",
        "conversation.audio.completed",
        "input_audio_buffer.completed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.complete",
        "input_audio_buffer.clear",
        "conversation.clear",
        "conversation.chat.cancel",
        "dump.audio",
    }
)


def parse_server_frame(
    frame: str | bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> AnyServerEvent | UnknownEvent | MalformedEvent:
    """Parse one frame received by a client. Never raises: check for Unknown/Malformed and log them."""
    result: AnyServerEvent | UnknownEvent | MalformedEvent = _parse(
        frame, _server_adapter, SERVER_EVENT_TYPES, max_frame_bytes
    )
    return result


def parse_client_frame(
    frame: str | bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> AnyClientEvent | UnknownEvent | MalformedEvent:
    """Parse one frame received by a server (the emulator). Never raises."""
    result: AnyClientEvent | UnknownEvent | MalformedEvent = _parse(
        frame, _client_adapter, CLIENT_EVENT_TYPES, max_frame_bytes
    )
    return result


__all__ = [
    "CLIENT_EVENT_TYPES",
    "DEFAULT_MAX_FRAME_BYTES",
    "SERVER_EVENT_TYPES",
    "AnyClientEvent",
    "AnyServerEvent",
    "AudioDeltaData",
    "CanceledData",
    "Chat",
    "ChatCreated",
    "ChatUpdate",
    "ChatUpdated",
    "ClientEvent",
    "ConversationAudioCompleted",
    "ConversationAudioDelta",
    "ConversationAudioSentenceStart",
    "ConversationAudioTranscriptCompleted",
    "ConversationAudioTranscriptUpdate",
    "ConversationChatCancel",
    "ConversationChatCanceled",
    "ConversationChatCompleted",
    "ConversationChatCreated",
    "ConversationChatFailed",
    "ConversationChatInProgress",
    "ConversationChatRequiresAction",
    "ConversationChatSubmitToolOutputs",
    "ConversationClear",
    "ConversationCleared",
    "ConversationMessageCompleted",
    "ConversationMessageCreate",
    "ConversationMessageDelta",
    "Detail",
    "DumpAudio",
    "Error",
    "EventBase",
    "GenerateAudioData",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCleared",
    "InputAudioBufferComplete",
    "InputAudioBufferCompleted",
    "InputAudioBufferSpeechStarted",
    "InputAudioBufferSpeechStopped",
    "InputTextGenerateAudio",
    "MalformedEvent",
    "Message",
    "MessageCreateData",
    "ServerEvent",
    "SubmitToolOutputsData",
    "UnknownEvent",
    "new_event_id",
    "parse_client_frame",
    "parse_server_frame",
]
