"""The objects carried inside Coze realtime chat events: session configuration, Chat, Message.

Field names, types and defaults follow the shared protocol reference (protocol.md §3.1, §3.1a, §4).
Every model accepts fields it does not know (``extra="allow"``) because the real server adds fields
over time and a device in the field must not fail on them; serialisation drops every field left at
``None`` so a client never sends a value it did not choose (the server applies its own defaults).

Enumerated string fields are *open*: a value outside the documented set is kept as is and logged
once (:func:`open_enum`), never refused — the docs and the SDKs already disagree on some sets
(``user_language``), and the server grows new values faster than a device is updated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The standard logger, not structlog: this package does no I/O and must not pull in asyncio.
log = logging.getLogger("voiced.protocol")

#: Distinct unknown (field, value) pairs that are logged; beyond this they are only counted.
_MAX_UNKNOWN_VALUES_LOGGED = 64
_UNKNOWN_VALUE_CHARS = 64


class UnknownValues:
    """Counts enum values outside the documented sets; logs each distinct one once (bounded)."""

    def __init__(self) -> None:
        self.count = 0
        self._seen: set[tuple[str, str]] = set()

    def note(self, field: str, value: str) -> None:
        """Count ``value`` of ``field``; log it unless it was logged before or the log budget is spent."""
        self.count += 1
        key = (field, value[:_UNKNOWN_VALUE_CHARS])
        if key in self._seen or len(self._seen) >= _MAX_UNKNOWN_VALUES_LOGGED:
            return
        self._seen.add(key)
        log.warning("unknown value %r of %s kept as is (not a documented value)", key[1], field)


#: The process-wide tally (models are validated in many places; one budget for all of them).
UNKNOWN_VALUES = UnknownValues()


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, table by table (how ``chat.update`` layers config)."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


class WireModel(BaseModel):
    """Base of every wire object: tolerant on input, ``None``-free on output."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict of this object with every unset (``None``) field omitted."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


def open_enum(field: str, known: tuple[str, ...]) -> Callable[[str], str]:
    """A validator that keeps any string but logs (once per value) one outside ``known``."""

    def check(value: str) -> str:
        if value not in known:
            UNKNOWN_VALUES.note(field, value)
        return value

    return check


def _open(field: str, *known: str) -> Any:
    return AfterValidator(open_enum(field, known))


#: The documented values of every enumerated field (protocol.md §3.1, §3.1a, §4).
INPUT_FORMATS = ("pcm", "wav", "ogg")
INPUT_CODECS = ("pcm", "opus", "g711a", "g711u")
OUTPUT_CODECS = ("pcm", "opus", "g711a", "g711u", "mp3")
TURN_DETECTION_TYPES = ("client_interrupt", "server_vad", "semantic_vad")
INTERRUPT_MODES = ("keyword_contains", "keyword_prefix")
ASR_STREAM_MODES = ("bidirectional_stream", "output_no_stream")
#: Both spellings: the docs' locale codes and the SDK enums' short codes (protocol.md §3.1a).
USER_LANGUAGES = (
    "common", "zh", "cant", "sc", "en", "ja", "ko", "fr", "id", "es", "pt", "ms", "ru",
    "en-US", "ja-JP", "de-DE", "fr-FR", "es-MX", "it-IT", "pt-BR", "id-ID", "ko-KR", "ru-RU", "zh-CN",
)  # fmt: skip
EmotionName = Literal["happy", "sad", "angry", "surprised", "fear", "hate", "excited", "coldness", "neutral"]
EMOTIONS: tuple[str, ...] = get_args(EmotionName)
CHAT_STATUSES = ("created", "in_progress", "completed", "failed", "requires_action", "canceled")
MESSAGE_ROLES = ("user", "assistant")
MESSAGE_TYPES = (
    "question", "answer", "function_call", "tool_output", "tool_response", "follow_up", "verbose",
)  # fmt: skip
CONTENT_TYPES = ("text", "object_string", "card", "audio")

InputFormatValue = Annotated[str, _open("input_audio.format", *INPUT_FORMATS)]
InputCodecValue = Annotated[str, _open("input_audio.codec", *INPUT_CODECS)]
OutputCodecValue = Annotated[str, _open("output_audio.codec", *OUTPUT_CODECS)]
TurnDetectionValue = Annotated[str, _open("turn_detection.type", *TURN_DETECTION_TYPES)]
InterruptModeValue = Annotated[str, _open("interrupt_config.mode", *INTERRUPT_MODES)]
StreamModeValue = Annotated[str, _open("asr_config.stream_mode", *ASR_STREAM_MODES)]
UserLanguageValue = Annotated[str, _open("asr_config.user_language", *USER_LANGUAGES)]
EmotionValue = Annotated[str, _open("emotion_config.emotion", *EMOTIONS)]
ChatStatusValue = Annotated[str, _open("chat.status", *CHAT_STATUSES)]
RoleValue = Annotated[str, _open("message.role", *MESSAGE_ROLES)]
MessageTypeValue = Annotated[str, _open("message.type", *MESSAGE_TYPES)]
ContentTypeValue = Annotated[str, _open("message.content_type", *CONTENT_TYPES)]


# --- session configuration (chat.update / chat.updated data), protocol.md §3.1 and §3.1a ----------


class ChatConfig(WireModel):
    conversation_id: str | None = None
    user_id: str | None = None
    meta_data: dict[str, str] | None = None
    custom_variables: dict[str, str] | None = None
    extra_params: dict[str, str] | None = None
    auto_save_history: bool | None = None
    parameters: dict[str, Any] | None = None


class InputAudio(WireModel):
    # The server default is "wav"; a client streaming raw PCM or raw Opus must say "pcm" (§3.1).
    format: InputFormatValue | None = None
    codec: InputCodecValue | None = None
    sample_rate: int | None = None
    channel: int | None = None  # 1 or 2
    bit_depth: int | None = None  # 8, 16 or 24


class LimitConfig(WireModel):
    period: int | None = None
    max_frame_num: int | None = None


class PcmConfig(WireModel):
    sample_rate: int | None = None
    frame_size_ms: float | None = None
    limit_config: LimitConfig | None = None


class OpusConfig(WireModel):
    bitrate: int | None = None
    use_cbr: bool | None = None
    frame_size_ms: float | None = None
    limit_config: LimitConfig | None = None
    # Only the JS SDK sends it, to configure its own decoder.
    sample_rate: int | None = None


class Mp3Config(WireModel):
    sample_rate: int | None = None  # 32000, 44100 or 48000
    bit_rate: int | None = None


class EmotionConfig(WireModel):
    emotion: EmotionValue | None = None
    emotion_scale: float | None = None  # 1.0 .. 5.0, server default 4.0


class OutputAudio(WireModel):
    codec: OutputCodecValue | None = None
    pcm_config: PcmConfig | None = None
    opus_config: OpusConfig | None = None
    mp3_config: Mp3Config | None = None
    speech_rate: int | None = None
    loudness_rate: int | None = None
    voice_id: str | None = None
    emotion_config: EmotionConfig | None = None


class InterruptConfig(WireModel):
    mode: InterruptModeValue | None = None
    keywords: list[str] | None = None


class SemanticVadConfig(WireModel):
    silence_threshold_ms: int | None = None
    semantic_unfinished_wait_time_ms: int | None = None


class TurnDetection(WireModel):
    type: TurnDetectionValue | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    interrupt_config: InterruptConfig | None = None
    semantic_vad_config: SemanticVadConfig | None = None


class SensitiveWordsFilter(WireModel):
    system_reserved_filter: bool | None = None
    filter_with_empty: bool | None = None
    filter_with_signed: bool | None = None


class AsrConfig(WireModel):
    hot_words: list[str] | None = None
    context: str | None = None
    context_type: str | None = None
    user_language: UserLanguageValue | None = None
    enable_ddc: bool | None = None
    enable_itn: bool | None = None
    enable_punc: bool | None = None
    stream_mode: StreamModeValue | None = None
    enable_nostream: bool | None = None
    enable_emotion: bool | None = None
    enable_gender: bool | None = None
    sensitive_words_filter: SensitiveWordsFilter | None = None


class VoicePrintConfig(WireModel):
    group_id: str | None = None
    score: int | None = None  # 0 .. 100, server default 40
    reuse_voice_info: bool | None = None


class VoiceProcessingConfig(WireModel):
    enable_ans: bool | None = None
    enable_pdns: bool | None = None
    voice_print_feature_id: str | None = None


class SessionConfig(WireModel):
    """The data of ``chat.update`` (what the client asks for) and ``chat.updated`` (what is in force)."""

    chat_config: ChatConfig | None = None
    input_audio: InputAudio | None = None
    output_audio: OutputAudio | None = None
    turn_detection: TurnDetection | None = None
    asr_config: AsrConfig | None = None
    event_subscriptions: list[str] | None = None
    need_play_prologue: bool | None = None
    prologue_content: str | None = None
    voice_print_config: VoicePrintConfig | None = None
    voice_processing_config: VoiceProcessingConfig | None = None


# --- Chat and Message, protocol.md §4 ------------------------------------------------------------


class Usage(WireModel):
    """Token counts. The docs' tables say ``input_count``/``output_count``, their examples (and the REST
    API) ``input_tokens``/``output_tokens``: both are kept as sent; read :attr:`input_token_count` and
    :attr:`output_token_count`, which take whichever is present (protocol.md §3.1a).
    """

    token_count: int | None = None
    output_count: int | None = None
    input_count: int | None = None
    output_tokens: int | None = None
    input_tokens: int | None = None

    @property
    def input_token_count(self) -> int | None:
        """Input tokens, from either spelling (None when the server sent neither)."""
        return self.input_count if self.input_count is not None else self.input_tokens

    @property
    def output_token_count(self) -> int | None:
        """Output tokens, from either spelling (None when the server sent neither)."""
        return self.output_count if self.output_count is not None else self.output_tokens

    @property
    def total_token_count(self) -> int | None:
        """``token_count``, or the sum of the two parts when only they were sent."""
        if self.token_count is not None:
            return self.token_count
        parts = (self.input_token_count, self.output_token_count)
        return None if parts == (None, None) else sum(p or 0 for p in parts)


class LastError(WireModel):
    code: int | None = None
    msg: str | None = None


class FunctionCall(WireModel):
    name: str
    # A JSON document as a string, exactly as the bot produced it: parse and validate it yourself.
    arguments: str = ""


class ToolCall(WireModel):
    id: str
    type: str = "function"
    function: FunctionCall
    # Seen as null in the docs' examples; its non-null shape is undocumented, so it stays untyped.
    require_info: Any | None = None


class SubmitToolOutputsAction(WireModel):
    tool_calls: list[ToolCall] = Field(default_factory=list)


class RequiredAction(WireModel):
    type: str = "submit_tool_outputs"
    submit_tool_outputs: SubmitToolOutputsAction | None = None


class Chat(WireModel):
    id: str
    conversation_id: str | None = None
    bot_id: str | None = None
    created_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    last_error: LastError | None = None
    meta_data: dict[str, str] | None = None
    status: ChatStatusValue | None = None
    usage: Usage | None = None
    section_id: str | None = None
    required_action: RequiredAction | None = None

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls this chat waits for (empty unless ``status`` is ``requires_action``)."""
        if self.required_action is None or self.required_action.submit_tool_outputs is None:
            return []
        return list(self.required_action.submit_tool_outputs.tool_calls)


class Message(WireModel):
    id: str | None = None
    conversation_id: str | None = None
    bot_id: str | None = None
    chat_id: str | None = None
    section_id: str | None = None
    role: RoleValue | None = None
    type: MessageTypeValue | None = None
    content: str = ""
    content_type: ContentTypeValue | None = None
    meta_data: dict[str, str] | None = None
    created_at: int | None = None
    updated_at: int | None = None
    reasoning_content: str | None = None


class ToolOutput(WireModel):
    tool_call_id: str
    output: str


class ErrorData(WireModel):
    code: int
    msg: str = ""
