"""Every event type round-trips; every kind of bad frame becomes a MalformedEvent, never an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol.samples import CLIENT_SAMPLES, FULL_CONFIG, SERVER_SAMPLES
from voiced.protocol import events as ev


def test_samples_cover_every_event_type() -> None:
    assert {s.event_type for s in SERVER_SAMPLES} == ev.SERVER_EVENT_TYPES
    assert {s.event_type for s in CLIENT_SAMPLES} == ev.CLIENT_EVENT_TYPES


@pytest.mark.parametrize("sample", SERVER_SAMPLES, ids=lambda s: str(s.event_type))
def test_server_event_round_trip(sample: ev.EventBase) -> None:
    parsed = ev.parse_server_frame(sample.to_frame())
    assert type(parsed) is type(sample)
    assert isinstance(parsed, ev.EventBase)
    assert parsed.to_wire() == sample.to_wire()


@pytest.mark.parametrize("sample", CLIENT_SAMPLES, ids=lambda s: str(s.event_type))
def test_client_event_round_trip(sample: ev.EventBase) -> None:
    parsed = ev.parse_client_frame(sample.to_frame())
    assert type(parsed) is type(sample)
    assert isinstance(parsed, ev.EventBase)
    assert parsed.to_wire() == sample.to_wire()


def test_serialisation_omits_unset_fields() -> None:
    frame = json.loads(ev.ChatUpdate(data=FULL_CONFIG.model_copy(update={"asr_config": None})).to_frame())
    assert "asr_config" not in frame["data"]
    assert "id" not in frame and "detail" not in frame
    assert json.loads(ev.InputAudioBufferComplete().to_frame()) == {
        "event_type": "input_audio_buffer.complete"
    }


def test_full_config_keeps_every_nested_field() -> None:
    wire = ev.ChatUpdate(data=FULL_CONFIG).to_wire()["data"]
    assert wire["output_audio"]["opus_config"]["limit_config"] == {"period": 1}
    assert wire["output_audio"]["pcm_config"]["limit_config"] == {"period": 1, "max_frame_num": 18}
    assert wire["turn_detection"]["interrupt_config"] == {"mode": "keyword_prefix", "keywords": ["coze"]}
    assert wire["voice_print_config"]["score"] == 40
    assert wire["chat_config"]["extra_params"]["latitude"] == "39.98"


def test_non_ascii_is_sent_as_is() -> None:
    assert "今天" in CLIENT_SAMPLES[4].to_frame()


def test_unknown_fields_are_tolerated_and_kept() -> None:
    frame = '{"event_type":"chat.created","new_field":1,"detail":{"logid":"L","new":2}}'
    parsed = ev.parse_server_frame(frame)
    assert isinstance(parsed, ev.ChatCreated)
    assert parsed.detail is not None and parsed.detail.logid == "L"


def test_empty_data_object_accepted_for_dataless_events() -> None:
    assert isinstance(
        ev.parse_server_frame('{"event_type":"conversation.chat.canceled","data":{}}'),
        ev.ConversationChatCanceled,
    )
    assert isinstance(
        ev.parse_client_frame('{"event_type":"input_audio_buffer.complete","data":{}}'),
        ev.InputAudioBufferComplete,
    )


def test_unknown_event_type_is_explicit() -> None:
    parsed = ev.parse_server_frame('{"event_type":"conversation.brand_new","id":"x","detail":{"logid":"LG"}}')
    assert isinstance(parsed, ev.UnknownEvent)
    assert parsed.event_type == "conversation.brand_new"
    assert parsed.logid == "LG"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "JSON list"),
        ('"str"', "JSON str"),
        ("{}", "no string event_type"),
        ('{"event_type": 5}', "no string event_type"),
        ('{"event_type":"error","data":{"code":"abc"}}', "error: data.code"),
        ('{"event_type":"error"}', "error: data"),
        ('{"event_type":"conversation.chat.created","data":{"status":"x"}}', "data.id"),
        ('{"event_type":"conversation.audio.delta","data":"AAAA"}', "conversation.audio.delta"),
        ('{"event_type":"chat.updated","data":{"input_audio":{"sample_rate":"fast"}}}', "sample_rate"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_malformed_frames(frame: str, reason: str) -> None:
    parsed = ev.parse_server_frame(frame)
    assert isinstance(parsed, ev.MalformedEvent)
    assert reason in parsed.reason
    assert len(parsed.excerpt) <= ev.MalformedEvent.EXCERPT_CHARS


def test_binary_frame_is_malformed() -> None:
    parsed = ev.parse_server_frame(b'{"event_type":"chat.created"}')
    assert isinstance(parsed, ev.MalformedEvent)
    assert "binary" in parsed.reason


def test_huge_frame_refused_before_parsing() -> None:
    frame = '{"event_type":"conversation.audio.delta","data":{"content":"' + "A" * 2_000_000 + '"}}'
    parsed = ev.parse_server_frame(frame)
    assert isinstance(parsed, ev.MalformedEvent)
    assert "exceeds" in parsed.reason
    assert isinstance(ev.parse_server_frame(frame, max_frame_bytes=4_000_000), ev.ConversationAudioDelta)


def test_bad_base64_audio_raises_value_error_only_on_decode() -> None:
    parsed = ev.parse_server_frame(
        '{"event_type":"conversation.audio.delta","data":{"content":"!!not base64"}}'
    )
    assert isinstance(parsed, ev.ConversationAudioDelta)
    with pytest.raises(ValueError, match="base64"):
        parsed.audio()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from(sorted(ev.SERVER_EVENT_TYPES | {"zzz"})),
    data=json_values,
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
def test_any_shaped_frame_never_raises(event_type: str, data: object, extra: dict[str, object]) -> None:
    frame = json.dumps({**extra, "event_type": event_type, "data": data})
    parsed = ev.parse_server_frame(frame)
    assert isinstance(parsed, ev.EventBase | ev.UnknownEvent | ev.MalformedEvent)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_never_raise(frame: bytes | str) -> None:
    parsed = ev.parse_server_frame(frame)
    assert isinstance(parsed, ev.EventBase | ev.UnknownEvent | ev.MalformedEvent)
    assert isinstance(ev.parse_client_frame(frame), ev.EventBase | ev.UnknownEvent | ev.MalformedEvent)
