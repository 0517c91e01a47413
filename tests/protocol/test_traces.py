"""The recorded real-server sessions: every frame parses, and the audio comes out byte for byte."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from voiced.protocol import events as ev
from voiced.protocol.session import AudioChunk, ChatStatus, ClientSession

TRACES = Path(__file__).resolve().parent.parent / "fixtures" / "traces"
TRACE_NAMES = ["websocket_chat_success", "websocket_chat_generate_audio_success"]


def read_trace(name: str) -> list[tuple[str, str]]:
    lines = (TRACES / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return list(zip(lines[::2], lines[1::2], strict=True))


def wav_frames(name: str) -> bytes:
    with wave.open(str(TRACES / f"{name}.wav"), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        return wav.readframes(wav.getnframes())


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_every_frame_parses_to_a_typed_event(name: str) -> None:
    frames = read_trace(name)
    assert frames
    for direction, frame in frames:
        parsed = ev.parse_server_frame(frame) if direction == "receive" else ev.parse_client_frame(frame)
        assert isinstance(parsed, ev.EventBase), (direction, frame[:120], parsed)
        # Re-encoding keeps every field the server sent.
        reparsed = (
            ev.parse_server_frame(parsed.to_frame())
            if direction == "receive"
            else ev.parse_client_frame(parsed.to_frame())
        )
        assert isinstance(reparsed, ev.EventBase)
        assert reparsed.to_wire() == parsed.to_wire()


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_session_audio_equals_recorded_wav(name: str) -> None:
    session = ClientSession()
    audio = bytearray()
    chunks = 0
    for direction, frame in read_trace(name):
        if direction != "receive":
            continue
        for result in session.receive(frame):
            assert not isinstance(result, ev.UnknownEvent | ev.MalformedEvent)
            if isinstance(result, AudioChunk):
                audio += result.payload
                chunks += 1
    assert chunks > 0
    assert bytes(audio) == wav_frames(name)


def test_session_learns_ids_from_the_text_turn() -> None:
    session = ClientSession()
    for direction, frame in read_trace("websocket_chat_success"):
        if direction == "receive":
            session.receive(frame)
    assert session.conversation_id == "7526821722323025972"
    assert session.chat_status["7526821559890198568"] is ChatStatus.COMPLETED
    assert session.current_chat_id is None
    assert session.last_logid == "021752474748819fdbddc030017070c0000000000000029f6daa2"
