"""The control API's messages, version 1: events the device publishes, commands clients send, replies.

Every message is one JSON object with ``"v": 1``. Events carry ``type``; commands carry ``cmd`` and
an optional ``id`` that the reply echoes. The models are the schema: :func:`control_schema` is what
``/schema.json`` serves. Free text is clipped (never rejected) so a long transcript cannot make the
daemon fail to publish, and no message grows without bound.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voiced import __version__

SCHEMA_VERSION = 1
#: Characters kept of one text field in an event (a caption, a transcript).
MAX_TEXT_CHARS = 4000
#: Characters kept of a hint, a name or an error message.
MAX_SHORT_CHARS = 300
#: ``input_text.generate_audio`` takes at most this many bytes of text (protocol.md §3).
MAX_ANNOUNCE_BYTES = 1024


def _clip(limit: int) -> AfterValidator:
    def clip(value: str) -> str:
        return value if len(value) <= limit else value[: limit - 1] + "…"

    return AfterValidator(clip)


Text = Annotated[str, _clip(MAX_TEXT_CHARS)]
Short = Annotated[str, _clip(MAX_SHORT_CHARS)]


class State(StrEnum):
    """What the device is doing; exactly one at a time. ``hint`` says more for offline and error."""

    SLEEPING = "sleeping"  # idle: waiting for the wake word, a button or a command
    WOKEN = "woken"  # the wake word was heard; listening starts
    LISTENING = "listening"  # the user's speech is streaming up
    THINKING = "thinking"  # the turn ended; waiting for the reply
    SPEAKING = "speaking"  # the reply is playing
    MUTED = "muted"  # idle with the microphone muted
    RECONNECTING = "reconnecting"  # the connection is down and being retried
    OFFLINE = "offline"  # not connected and not retrying (see hint)
    ERROR = "error"  # something needs a person (see hint)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1


class TurnLatency(BaseModel):
    """Client-side latencies of one turn in ms; None when the turn did not get that far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speech_end_to_complete_ms: float | None = None
    speech_end_to_first_delta_ms: float | None = None
    first_delta_to_first_sample_ms: float | None = None
    speech_end_to_first_sample_ms: float | None = None


class TurnSummary(BaseModel):
    """One finished turn: what was heard, what was answered, and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_id: Short | None = None
    heard: Text = ""
    reply: Text = ""
    latency_ms: TurnLatency = Field(default_factory=TurnLatency)
    played_ms: float = 0.0
    interrupted: bool = False
    underruns: int = 0
    tool_calls: list[Short] = Field(default_factory=list, max_length=64)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> TurnSummary:
        """The turn as the daemon's one-line summary (``TurnTimeline.summary()``) describes it.

        Keys it does not know are ignored, missing ones keep their defaults.
        """
        latency = {k: summary[k] for k in TurnLatency.model_fields if summary.get(k) is not None}
        fields = {k: summary[k] for k in cls.model_fields if k != "latency_ms" and summary.get(k) is not None}
        tools = fields.get("tool_calls")
        if tools is not None:
            fields["tool_calls"] = [str(name) for name in list(tools)[:64]]
        return cls.model_validate({**fields, "latency_ms": latency})


class StatusSnapshot(BaseModel):
    """Everything a new client needs to draw the device; sent on connect and by ``status``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: State
    hint: Short | None = None
    muted: bool = False
    volume_pct: int = Field(100, ge=0, le=100)
    connected: bool = False
    input_device: Short | None = None
    output_device: Short | None = None
    last_turn: TurnSummary | None = None
    version: str = __version__


class DeviceInfo(BaseModel):
    """One audio device as ``voiced devices`` lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int | None = None
    name: Short
    default: bool = False


class DeviceList(BaseModel):
    """The devices a ``select_device`` may name, and the ones in use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: list[DeviceInfo] = Field(default_factory=list, max_length=256)
    output: list[DeviceInfo] = Field(default_factory=list, max_length=256)
    selected_input: Short | None = None
    selected_output: Short | None = None


class DeviceChoice(BaseModel):
    """What ``select_device`` switched to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["input", "output"]
    device: Short


# --- events -----------------------------------------------------------------------------------


class SnapshotEvent(_Message):
    """The first message on every connection."""

    type: Literal["snapshot"] = "snapshot"
    status: StatusSnapshot


class StateEvent(_Message):
    """The device changed state."""

    type: Literal["state"] = "state"
    state: State
    hint: Short | None = None


class ControlsEvent(_Message):
    """Mute or volume changed (by a command, a tool or the configuration)."""

    type: Literal["controls"] = "controls"
    muted: bool
    volume_pct: int = Field(ge=0, le=100)


class UserTextEvent(_Message):
    """What the user said as recognition streams: the whole text so far, not a delta."""

    type: Literal["user_text"] = "user_text"
    text: Text
    final: bool = False


class ReplyTextEvent(_Message):
    """The bot's answer as it streams: ``delta`` follows the previous deltas of this ``chat_id``."""

    type: Literal["reply_text"] = "reply_text"
    chat_id: Short | None = None
    delta: Text = ""
    final: bool = False


ToolOutcome = Literal["started", "ok", "error", "timeout", "cancelled", "refused"]


class ToolEvent(_Message):
    """A tool call started, or ended with ``outcome``."""

    type: Literal["tool"] = "tool"
    chat_id: Short | None = None
    call_id: Short | None = None
    name: Short
    outcome: ToolOutcome
    duration_ms: float | None = None


class TurnEvent(_Message):
    """A turn is over; ``turn.latency_ms`` holds its latency figures."""

    type: Literal["turn"] = "turn"
    turn: TurnSummary


InterruptReason = Literal["barge_in", "push_to_talk", "command", "server_vad", "new_message"]


class InterruptEvent(_Message):
    """A reply was cut short."""

    type: Literal["interrupt"] = "interrupt"
    reason: InterruptReason
    chat_id: Short | None = None
    played_ms: float | None = None


class DeviceEvent(_Message):
    """An audio device was lost (``present`` false) or found again."""

    type: Literal["device"] = "device"
    direction: Literal["input", "output"]
    present: bool
    name: Short | None = None
    hint: Short | None = None


class ConnectionEvent(_Message):
    """The connection to the server went up or down; ``retry_in_s`` when a retry is scheduled."""

    type: Literal["connection"] = "connection"
    up: bool
    attempt: int = 0
    retry_in_s: float | None = None
    hint: Short | None = None


class ServerErrorEvent(_Message):
    """The server reported an error (protocol.md §3.2 ``error``)."""

    type: Literal["server_error"] = "server_error"
    code: int
    message: Short = ""


Event = Annotated[
    SnapshotEvent
    | StateEvent
    | ControlsEvent
    | UserTextEvent
    | ReplyTextEvent
    | ToolEvent
    | TurnEvent
    | InterruptEvent
    | DeviceEvent
    | ConnectionEvent
    | ServerErrorEvent,
    Field(discriminator="type"),
]

# --- commands ---------------------------------------------------------------------------------

CommandId = Annotated[str, Field(max_length=64)] | int


class _Command(_Message):
    id: CommandId | None = None


class StatusCommand(_Command):
    """Reply with the :class:`StatusSnapshot`."""

    cmd: Literal["status"] = "status"


class TalkCommand(_Command):
    """Push-to-talk: ``pressed`` true opens a turn (interrupting a reply), false ends it."""

    cmd: Literal["talk"] = "talk"
    pressed: bool


class InterruptCommand(_Command):
    """Stop the reply that is playing."""

    cmd: Literal["interrupt"] = "interrupt"


class MuteCommand(_Command):
    """Mute (nothing is sent) or unmute the microphone."""

    cmd: Literal["mute"] = "mute"
    muted: bool


class VolumeCommand(_Command):
    """Set the playback volume."""

    cmd: Literal["volume"] = "volume"
    volume_pct: int = Field(ge=0, le=100)


class TextCommand(_Command):
    """Send a text message to the bot as the user; the reply is spoken."""

    cmd: Literal["text"] = "text"
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


def _announce_fits(text: str) -> str:
    if len(text.encode("utf-8")) > MAX_ANNOUNCE_BYTES:
        raise ValueError(f"at most {MAX_ANNOUNCE_BYTES} bytes of UTF-8 can be spoken at once")
    return text


class AnnounceCommand(_Command):
    """Speak ``text`` in the bot's voice without asking the bot."""

    cmd: Literal["announce"] = "announce"
    text: Annotated[str, Field(min_length=1), AfterValidator(_announce_fits)]


class DevicesCommand(_Command):
    """Reply with the :class:`DeviceList`."""

    cmd: Literal["devices"] = "devices"


class SelectDeviceCommand(_Command):
    """Switch a device: an index or part of a name as ``voiced devices`` shows; "" means the default."""

    cmd: Literal["select_device"] = "select_device"
    direction: Literal["input", "output"]
    device: str = Field(max_length=MAX_SHORT_CHARS)


class ReloadCommand(_Command):
    """Reload the configuration, as SIGHUP does."""

    cmd: Literal["reload"] = "reload"


Command = Annotated[
    StatusCommand
    | TalkCommand
    | InterruptCommand
    | MuteCommand
    | VolumeCommand
    | TextCommand
    | AnnounceCommand
    | DevicesCommand
    | SelectDeviceCommand
    | ReloadCommand,
    Field(discriminator="cmd"),
]

COMMAND_NAMES = (
    "status",
    "talk",
    "interrupt",
    "mute",
    "volume",
    "text",
    "announce",
    "devices",
    "select_device",
    "reload",
)

ErrorCode = Literal[
    "bad_json", "bad_command", "unsupported_version", "rejected", "timeout", "busy", "internal"
]


class ErrorInfo(BaseModel):
    """Why a command failed; ``message`` says what to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: ErrorCode
    message: Short


class Reply(_Message):
    """The answer to one command; ``id`` echoes the command's."""

    type: Literal["reply"] = "reply"
    id: CommandId | None = None
    cmd: Short | None = None
    ok: bool
    result: StatusSnapshot | DeviceList | DeviceChoice | None = None
    error: ErrorInfo | None = None


EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class CommandError(Exception):
    """A command that cannot be run; :attr:`reply` is the error reply to send back."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error.message if reply.error else "bad command")
        self.reply = reply


def error_reply(
    code: ErrorCode, message: str, *, id: str | int | None = None, cmd: str | None = None
) -> Reply:
    """An error :class:`Reply`; ``message`` is clipped to one short line."""
    return Reply(id=id, cmd=cmd, ok=False, error=ErrorInfo(code=code, message=message))


def parse_command(text: str | bytes) -> Command:
    """The command in one received message. Raises :class:`CommandError` holding the reply to send."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise CommandError(error_reply("bad_json", "not JSON: send one JSON object per message")) from None
    if not isinstance(data, dict):
        raise CommandError(error_reply("bad_json", 'send a JSON object such as {"v": 1, "cmd": "status"}'))
    raw_id = data.get("id")
    cmd_id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    if isinstance(cmd_id, str) and len(cmd_id) > 64:
        cmd_id = None
    name = data.get("cmd")
    cmd_name = name[:MAX_SHORT_CHARS] if isinstance(name, str) else None
    if data.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise CommandError(
            error_reply(
                "unsupported_version",
                f'this device speaks version {SCHEMA_VERSION} of the control API: send "v": 1',
                id=cmd_id,
                cmd=cmd_name,
            )
        )
    if cmd_name not in COMMAND_NAMES:
        raise CommandError(
            error_reply(
                "bad_command",
                f"unknown command {cmd_name!r}: expected one of {', '.join(COMMAND_NAMES)}",
                id=cmd_id,
                cmd=cmd_name,
            )
        )
    try:
        return COMMAND_ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or cmd_name
        raise CommandError(
            error_reply("bad_command", f"{cmd_name}: {where}: {first['msg']}", id=cmd_id, cmd=cmd_name)
        ) from None


def event_json(event: Event) -> str:
    """``event`` as the compact JSON text sent on the wire (``None`` fields left out)."""
    return event.model_dump_json(exclude_none=True)


def control_schema() -> dict[str, Any]:
    """The JSON Schema of every message, as ``/schema.json`` serves it."""
    reply_schema = Reply.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voiced control API",
        "version": SCHEMA_VERSION,
        "description": (
            "Connect a WebSocket to /ws. The device sends a snapshot event, then every event as it "
            "happens. Send commands; each gets one reply with the command's id."
        ),
        "event": EVENT_ADAPTER.json_schema(),
        "command": COMMAND_ADAPTER.json_schema(),
        "reply": reply_schema,
        "examples": {
            "events": [
                {"v": 1, "type": "state", "state": "listening"},
                {"v": 1, "type": "user_text", "text": "what time is it", "final": True},
                {"v": 1, "type": "reply_text", "chat_id": "7491", "delta": "It is ten past three."},
                {"v": 1, "type": "connection", "up": False, "attempt": 2, "retry_in_s": 1.5},
            ],
            "commands": [
                {"v": 1, "id": 1, "cmd": "talk", "pressed": True},
                {"v": 1, "id": 2, "cmd": "volume", "volume_pct": 40},
                {"v": 1, "id": 3, "cmd": "text", "text": "Tell me a joke"},
                {"v": 1, "id": 4, "cmd": "select_device", "direction": "output", "device": "USB"},
            ],
            "replies": [
                {"v": 1, "type": "reply", "id": 2, "cmd": "volume", "ok": True},
                {
                    "v": 1,
                    "type": "reply",
                    "id": 5,
                    "cmd": "launch",
                    "ok": False,
                    "error": {"code": "bad_command", "message": "unknown command 'launch': …"},
                },
            ],
        },
    }
