"""The templated append frame is byte-identical to the pydantic model's and validates as one."""

from __future__ import annotations

import base64
import json

import pytest

from voiced.audio.codec import make_encoder
from voiced.audio.settings import OpusSettings
from voiced.protocol.append import EventIdCounter, append_frame, new_append_id
from voiced.protocol.events import DEFAULT_MAX_FRAME_BYTES, InputAudioBufferAppend, parse_client_frame


def _opus_packets() -> list[bytes]:
    rng = __import__("numpy").random.default_rng(7)
    pcm = (rng.normal(0, 3000, 320)).astype("<i2").tobytes()
    packets = []
    for bitrate in (6000, 24000, 128000):
        enc = make_encoder("opus", 16000, 20, OpusSettings(bitrate_bps=bitrate))
        packets.append(enc.encode(pcm))
    return packets


# The largest payload whose frame stays under the parser's frame limit.
_MAX_PAYLOAD = (DEFAULT_MAX_FRAME_BYTES - 200) // 4 * 3

PAYLOADS = {
    "empty": b"",
    "one byte": b"\x7f",
    "two bytes": b"\x00\x80",
    "640-byte PCM frame": bytes(range(256)) * 2 + bytes(128),
    "odd 641 bytes": bytes(641),
    "largest frame": b"\xff" * _MAX_PAYLOAD,
    **{f"opus {len(p)} bytes": p for p in _opus_packets()},
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_every_payload_matches_the_model_byte_for_byte(payload: bytes) -> None:
    event_id = new_append_id()
    frame = append_frame(payload, event_id)
    assert frame == InputAudioBufferAppend.from_audio(payload, event_id=event_id).to_frame()
    parsed = parse_client_frame(frame)
    assert isinstance(parsed, InputAudioBufferAppend)
    assert parsed.id == event_id
    assert base64.b64decode(parsed.data.delta) == payload
    # Round trip through plain JSON as well.
    obj = json.loads(frame)
    assert obj["event_type"] == "input_audio_buffer.append"
    assert base64.b64decode(obj["data"]["delta"]) == payload
    assert InputAudioBufferAppend.model_validate(obj) == parsed


@pytest.mark.parametrize("event_id", ['quote"d', "back\\slash", "tab\tnewline\n", "ünïcödé", ""])
def test_ids_that_need_escaping_still_give_valid_json(event_id: str) -> None:
    frame = append_frame(b"\x01\x02", event_id)
    assert frame == InputAudioBufferAppend.from_audio(b"\x01\x02", event_id=event_id).to_frame()
    parsed = parse_client_frame(frame)
    assert isinstance(parsed, InputAudioBufferAppend) and parsed.id == event_id


def test_ids_are_unique_and_share_a_process_prefix() -> None:
    ids = [new_append_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 1
    counter = EventIdCounter(prefix="dev")
    assert [counter.next_id() for _ in range(3)] == ["dev-1", "dev-2", "dev-3"]
    assert EventIdCounter().prefix != EventIdCounter().prefix
