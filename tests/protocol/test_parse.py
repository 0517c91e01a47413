"""The one-pass parser returns the same events as the reference parser, frame for frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.reliability.downlink_frames import server_frames
from voiced.protocol import events as ev
from voiced.protocol.parse import parse_server_frame_fast

TRACES = Path(__file__).resolve().parent.parent / "fixtures" / "traces"
TRACE_NAMES = ["websocket_chat_success", "websocket_chat_generate_audio_success"]


def _same(frame: str | bytes) -> None:
    slow = ev.parse_server_frame(frame)
    fast = parse_server_frame_fast(frame)
    assert type(fast) is type(slow)
    assert fast == slow


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_trace_frames_parse_identically(name: str) -> None:
    lines = (TRACES / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    pairs = zip(lines[::2], lines[1::2], strict=True)
    received = [frame for direction, frame in pairs if direction == "receive"]
    assert len(received) > 10
    for frame in received:
        _same(frame)
        assert isinstance(parse_server_frame_fast(frame), ev.EventBase)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server_frames)
def test_fuzz_corpus_parses_identically(frame: str | bytes) -> None:
    _same(frame)


@pytest.mark.parametrize(
    "frame",
    [
        '{"event_type":"conversation.audio.completed","data":{}}',
        '{"event_type":"input_audio_buffer.speech_started","data":{}}',
        '{"event_type":"no.such.event","id":"x","detail":{"logid":"L"}}',
        '{"event_type":"conversation.audio.delta","data":{"content":1}}',
        '{"event_type":"error","data":{"code":4000,"msg":"bad"},"detail":{"logid":"L"}}',
        "x" * 64,
        b"\x00\x01",
    ],
)
def test_edge_frames_parse_identically(frame: str | bytes) -> None:
    _same(frame)


def test_oversized_frame_is_refused_like_the_reference() -> None:
    frame = '{"event_type":"error","data":{"code":1,"msg":"' + "a" * 200 + '"}}'
    assert parse_server_frame_fast(frame, max_frame_bytes=100) == ev.parse_server_frame(frame, 100)
    assert isinstance(parse_server_frame_fast(frame, max_frame_bytes=100), ev.MalformedEvent)
