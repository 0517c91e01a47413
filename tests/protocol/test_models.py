"""Every field of the session configuration (protocol.md §3.1, §3.1a) and of the chat objects is typed,
round-trips unchanged, and an undocumented enum value is kept with a warning rather than refused."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from voiced.protocol import events as ev
from voiced.protocol.models import UNKNOWN_VALUES, Chat, SessionConfig, UnknownValues, Usage

#: Every chat.update field the reference names, each set to a value of its documented type.
EVERY_SESSION_FIELD: dict[str, Any] = {
    "chat_config": {
        "conversation_id": "7526",
        "user_id": "u1",
        "meta_data": {"k": "v"},
        "custom_variables": {"name": "Ada"},
        "extra_params": {"latitude": "39.98", "longitude": "116.30"},
        "auto_save_history": True,
        "parameters": {"CONVERSATION_NAME": "x", "n": 3},
    },
    "input_audio": {"format": "pcm", "codec": "opus", "sample_rate": 16000, "channel": 2, "bit_depth": 24},
    "output_audio": {
        "codec": "mp3",
        "pcm_config": {
            "sample_rate": 24000,
            "frame_size_ms": 20.0,
            "limit_config": {"period": 1, "max_frame_num": 18},
        },
        "opus_config": {
            "bitrate": 16000,
            "use_cbr": True,
            "frame_size_ms": 2.5,
            "limit_config": {"period": 1, "max_frame_num": 50},
            "sample_rate": 48000,
        },
        "mp3_config": {"sample_rate": 44100, "bit_rate": 128000},
        "speech_rate": 10,
        "loudness_rate": -5,
        "voice_id": "v1",
        "emotion_config": {"emotion": "coldness", "emotion_scale": 4.5},
    },
    "turn_detection": {
        "type": "semantic_vad",
        "prefix_padding_ms": 600,
        "silence_duration_ms": 500,
        "interrupt_config": {"mode": "keyword_contains", "keywords": ["coze", "stop"]},
        "semantic_vad_config": {"silence_threshold_ms": 300, "semantic_unfinished_wait_time_ms": 500},
    },
    "asr_config": {
        "hot_words": ["voiced", "Raspberry Pi"],
        "context": "a kitchen speaker",
        "context_type": "dialog_ctx",
        "user_language": "en-US",
        "enable_ddc": True,
        "enable_itn": False,
        "enable_punc": True,
        "stream_mode": "output_no_stream",
        "enable_nostream": True,
        "enable_emotion": True,
        "enable_gender": False,
        "sensitive_words_filter": {
            "system_reserved_filter": True,
            "filter_with_empty": False,
            "filter_with_signed": True,
        },
    },
    "event_subscriptions": ["conversation.audio.delta", "conversation.chat.completed"],
    "need_play_prologue": True,
    "prologue_content": "Hello, I am your kitchen speaker.",
    "voice_print_config": {"group_id": "g", "score": 40, "reuse_voice_info": True},
    "voice_processing_config": {"enable_ans": True, "enable_pdns": False, "voice_print_feature_id": "f1"},
}

EVERY_CHAT_FIELD: dict[str, Any] = {
    "id": "7526821559890198568",
    "conversation_id": "7526821722323025972",
    "bot_id": "7496347519799787557",
    "created_at": 1752474749,
    "completed_at": 1752474751,
    "failed_at": 1752474752,
    "last_error": {"code": 5000, "msg": "model failed"},
    "meta_data": {"k": "v"},
    "status": "requires_action",
    "usage": {
        "token_count": 45,
        "output_count": 28,
        "input_count": 17,
        "output_tokens": 28,
        "input_tokens": 17,
    },
    "section_id": "7526821722323025972",
    "required_action": {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "current_time", "arguments": "{}"},
                    "require_info": {"infos": ["x"]},
                }
            ]
        },
    },
}


def _untyped_fields(model: BaseModel, where: str = "") -> list[str]:
    """Paths of every field that landed in a model's extras (i.e. no model field describes it)."""
    found = [f"{where}{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, BaseModel):
                found += _untyped_fields(child, f"{where}{name}.")
    return found


def test_every_session_field_is_typed_and_round_trips() -> None:
    config = SessionConfig.model_validate(EVERY_SESSION_FIELD)
    assert _untyped_fields(config) == []
    assert config.to_wire() == EVERY_SESSION_FIELD
    assert config.turn_detection is not None and config.turn_detection.semantic_vad_config is not None
    assert config.turn_detection.semantic_vad_config.silence_threshold_ms == 300
    # Through the events on the wire, both directions.
    update = ev.parse_client_frame(ev.ChatUpdate(data=config).to_frame())
    assert isinstance(update, ev.ChatUpdate) and update.data.to_wire() == EVERY_SESSION_FIELD
    updated = ev.parse_server_frame(json.dumps({"event_type": "chat.updated", "data": EVERY_SESSION_FIELD}))
    assert isinstance(updated, ev.ChatUpdated) and updated.data.to_wire() == EVERY_SESSION_FIELD


def test_every_chat_field_is_typed_and_round_trips() -> None:
    chat = Chat.model_validate(EVERY_CHAT_FIELD)
    assert _untyped_fields(chat) == []
    assert chat.to_wire() == EVERY_CHAT_FIELD
    assert chat.tool_calls[0].require_info == {"infos": ["x"]}


def test_every_client_event_field_of_section_3_round_trips() -> None:
    frames: list[dict[str, Any]] = [
        {"event_type": "chat.update", "data": EVERY_SESSION_FIELD},
        {"event_type": "input_audio_buffer.append", "data": {"delta": "AAA="}},
        {"event_type": "input_audio_buffer.complete"},
        {"event_type": "input_audio_buffer.clear"},
        {
            "event_type": "conversation.message.create",
            "data": {"role": "user", "content_type": "text", "content": "hi"},
        },
        {"event_type": "conversation.clear"},
        {
            "event_type": "conversation.chat.submit_tool_outputs",
            "data": {"chat_id": "c1", "tool_outputs": [{"tool_call_id": "t1", "output": "17:45"}]},
        },
        {"event_type": "conversation.chat.cancel"},
        {"event_type": "input_text.generate_audio", "data": {"mode": "text", "text": "Hello."}},
    ]
    assert {f["event_type"] for f in frames} == ev.CLIENT_EVENT_TYPES
    for frame in frames:
        parsed = ev.parse_client_frame(json.dumps(frame))
        assert isinstance(parsed, ev.EventBase), parsed
        assert _untyped_fields(parsed) == []
        assert parsed.to_wire() == frame


@pytest.mark.parametrize(
    ("wire", "inputs", "outputs", "total"),
    [
        ({"token_count": 45, "output_count": 28, "input_count": 17}, 17, 28, 45),
        ({"input_tokens": 17, "output_tokens": 28}, 17, 28, 45),
        ({"token_count": 9}, None, None, 9),
        ({}, None, None, None),
    ],
)
def test_usage_reads_both_spellings(
    wire: dict[str, int], inputs: int | None, outputs: int | None, total: int | None
) -> None:
    frame = {
        "event_type": "conversation.chat.completed",
        "data": {"id": "c", "status": "completed", "usage": wire},
    }
    parsed = ev.parse_server_frame(json.dumps(frame))
    assert isinstance(parsed, ev.ConversationChatCompleted)
    usage = parsed.data.usage
    assert isinstance(usage, Usage)
    assert (usage.input_token_count, usage.output_token_count, usage.total_token_count) == (
        inputs,
        outputs,
        total,
    )
    assert usage.to_wire() == wire, "the spelling the server used is kept"


def test_an_unknown_enum_value_passes_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    before = UNKNOWN_VALUES.count
    data = {
        "turn_detection": {"type": "telepathic_vad"},
        "output_audio": {"emotion_config": {"emotion": "smug"}},
    }
    with caplog.at_level(logging.WARNING, logger="voiced.protocol"):
        for _ in range(3):
            parsed = ev.parse_server_frame(json.dumps({"event_type": "chat.updated", "data": data}))
            assert isinstance(parsed, ev.ChatUpdated)
            assert parsed.data.to_wire() == data
    assert UNKNOWN_VALUES.count - before == 6
    warnings = [r.getMessage() for r in caplog.records if r.name == "voiced.protocol"]
    assert len(warnings) == 2, "each distinct unknown value is logged once"
    assert any("telepathic_vad" in w and "turn_detection.type" in w for w in warnings)


def test_unknown_value_log_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    tally = UnknownValues()
    with caplog.at_level(logging.WARNING, logger="voiced.protocol"):
        for i in range(200):
            tally.note("asr_config.user_language", f"xx-{i}" + "y" * 500)
    warnings = [r.getMessage() for r in caplog.records if r.name == "voiced.protocol"]
    assert tally.count == 200
    assert len(warnings) == 64
    assert all(len(w) < 200 for w in warnings)
