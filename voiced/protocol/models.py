"""The objects carried inside Coze realtime chat events: session configuration, Chat, Message.

Field names, types and defaults follow the shared protocol reference (protocol.md §3.1, §4). Every
model accepts fields it does not know (``extra="allow"``) because the real server adds fields over
time and a device in the field must not fail on them; serialisation drops every field left at
``None`` so a client never sends a value it did not choose (the server applies its own defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


# --- session configuration (chat.update / chat.updated data), protocol.md §3.1 -------------------

InputFormat = Literal["pcm", "wav", "ogg"]
AudioCodecName = Literal["pcm", "opus", "g711a", "g711u", "mp3"]
TurnDetectionType = Literal["client_interrupt", "server_vad", "semantic_vad"]


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
    format: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channel: int | None = None
    bit_depth: int | None = None


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
    sample_rate: int | None = None


class EmotionConfig(WireModel):
    emotion: str | None = None
    emotion_scale: float | None = None


class OutputAudio(WireModel):
    codec: str | None = None
    pcm_config: PcmConfig | None = None
    opus_config: OpusConfig | None = None
    speech_rate: int | None = None
    loudness_rate: int | None = None
    voice_id: str | None = None
    emotion_config: EmotionConfig | None = None


class InterruptConfig(WireModel):
    mode: str | None = None
    keywords: list[str] | None = None


class TurnDetection(WireModel):
    type: str | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    interrupt_config: InterruptConfig | None = None


class AsrConfig(WireModel):
    hot_words: list[str] | None = None
    context: str | None = None
    context_type: str | None = None
    user_language: str | None = None
    enable_ddc: bool | None = None
    enable_itn: bool | None = None
    enable_punc: bool | None = None
    stream_mode: str | None = None


class VoicePrintConfig(WireModel):
    group_id: str | None = None
    score: int | None = None
    reuse_voice_info: bool | None = None


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


# --- Chat and Message, protocol.md §4 ------------------------------------------------------------

ChatStatus = Literal["created", "in_progress", "completed", "failed", "requires_action", "canceled"]


class Usage(WireModel):
    token_count: int | None = None
    output_count: int | None = None
    input_count: int | None = None


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
    status: str | None = None
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
    role: str | None = None
    type: str | None = None
    content: str = ""
    content_type: str | None = None
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
