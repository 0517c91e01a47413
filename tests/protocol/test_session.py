"""The client session state machine, driven with frames and no event loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.protocol.samples import CHAT, TOOL_CHAT
from voiced.protocol import events as ev
from voiced.protocol.models import ChatConfig, InputAudio, SessionConfig, ToolOutput
from voiced.protocol.session import (
    TRANSITIONS,
    AudioChunk,
    ChatStatus,
    ClientSession,
    ConnectionState,
    FrameToSend,
    InvalidAudio,
    OutOfOrder,
    SessionStateError,
    StaleAudio,
    ToolCallsRequested,
)

CONFIG = SessionConfig(input_audio=InputAudio(format="pcm", codec="opus", sample_rate=16000))


def audio_frame(chat_id: str, payload: bytes = b"\x01\x00\x02\x00") -> str:
    return ev.ConversationAudioDelta(
        data=ev.Message(
            chat_id=chat_id, content_type="audio", content=__import__("base64").b64encode(payload).decode()
        )
    ).to_frame()


def ready_session() -> ClientSession:
    session = ClientSession(CONFIG)
    session.receive(ev.ChatCreated().to_frame())
    session.update()
    session.receive(ev.ChatUpdated(data=CONFIG).to_frame())
    assert session.ready
    return session


def start_chat(session: ClientSession, chat_id: str = CHAT.id) -> None:
    session.receive(
        ev.ConversationChatCreated(
            data=CHAT.model_copy(update={"id": chat_id, "status": "created"})
        ).to_frame()
    )


def test_audio_is_refused_before_chat_updated() -> None:
    session = ClientSession(CONFIG)
    with pytest.raises(SessionStateError, match=r"chat\.updated"):
        session.append_audio(b"\x00\x00")
    session.receive(ev.ChatCreated().to_frame())
    with pytest.raises(SessionStateError, match="error 4000"):
        session.append_audio(b"\x00\x00")
    frame = json.loads(session.update())
    assert frame["event_type"] == "chat.update"
    assert frame["data"]["input_audio"] == {"format": "pcm", "codec": "opus", "sample_rate": 16000}
    assert session.state is ConnectionState.CONFIGURING
    with pytest.raises(SessionStateError):
        session.append_audio(b"\x00\x00")
    session.receive(ev.ChatUpdated(data=CONFIG).to_frame())
    sent = json.loads(session.append_audio(b"\x01\x02"))
    assert sent["event_type"] == "input_audio_buffer.append" and sent["data"]["delta"] == "AQI="
    assert sent["id"]


def test_every_send_method_returns_a_parseable_client_frame() -> None:
    session = ready_session()
    start_chat(session)
    session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    frames = [
        session.append_audio(b"\x00\x01"),
        session.complete(),
        session.clear(),
        session.clear_conversation(),
        session.send_text("hi"),
        session.generate_audio("hello"),
        session.submit_tool_outputs(TOOL_CHAT.id, [ToolOutput(tool_call_id="call_1", output="12:00")]),
        session.cancel(),
        session.update(),
    ]
    kinds = [type(ev.parse_client_frame(f)).__name__ for f in frames]
    assert kinds == [
        "InputAudioBufferAppend",
        "InputAudioBufferComplete",
        "InputAudioBufferClear",
        "ConversationClear",
        "ConversationMessageCreate",
        "InputTextGenerateAudio",
        "ConversationChatSubmitToolOutputs",
        "ConversationChatCancel",
        "ChatUpdate",
    ]


def test_cancel_makes_later_deltas_of_that_chat_stale() -> None:
    session = ready_session()
    start_chat(session, "chat-A")
    (chunk,) = session.receive(audio_frame("chat-A"))
    assert isinstance(chunk, AudioChunk) and chunk.payload == b"\x01\x00\x02\x00"
    assert json.loads(session.cancel())["event_type"] == "conversation.chat.cancel"
    (late,) = session.receive(audio_frame("chat-A", b"\x00" * 100))
    assert isinstance(late, StaleAudio) and late.chat_id == "chat-A" and late.payload_bytes >= 99
    start_chat(session, "chat-B")
    assert isinstance(session.receive(audio_frame("chat-B"))[0], AudioChunk)


def test_server_speech_started_and_canceled_mark_the_current_chat() -> None:
    session = ready_session()
    start_chat(session, "chat-A")
    session.receive(ev.InputAudioBufferSpeechStarted().to_frame())
    assert session.is_cancelled("chat-A")
    assert isinstance(session.receive(audio_frame("chat-A"))[0], StaleAudio)
    start_chat(session, "chat-B")
    session.receive(ev.ConversationChatCanceled(data=ev.CanceledData(code=1)).to_frame())
    assert session.is_cancelled("chat-B")


def test_bad_base64_is_reported_not_raised() -> None:
    session = ready_session()
    start_chat(session, "c")
    frame = '{"event_type":"conversation.audio.delta","data":{"chat_id":"c","content":"@@@"}}'
    (result,) = session.receive(frame)
    assert isinstance(result, InvalidAudio) and result.chat_id == "c"


def test_tool_calls_are_tracked_and_outputs_checked() -> None:
    session = ready_session()
    start_chat(session)
    results = session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert isinstance(results[-1], ToolCallsRequested)
    assert [c.function.name for c in results[-1].tool_calls] == ["current_time"]
    with pytest.raises(SessionStateError, match="do not match"):
        session.submit_tool_outputs(TOOL_CHAT.id, [ToolOutput(tool_call_id="other", output="x")])
    with pytest.raises(SessionStateError, match="no pending"):
        session.submit_tool_outputs("unknown-chat", [])
    frame = json.loads(
        session.submit_tool_outputs(TOOL_CHAT.id, [ToolOutput(tool_call_id="call_1", output="noon")])
    )
    assert frame["data"] == {
        "chat_id": TOOL_CHAT.id,
        "tool_outputs": [{"tool_call_id": "call_1", "output": "noon"}],
    }
    assert TOOL_CHAT.id not in session.pending_tool_calls


def test_cancelling_a_chat_abandons_its_tool_calls() -> None:
    session = ready_session()
    start_chat(session)
    session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    abandoned = session.mark_cancelled(TOOL_CHAT.id)
    assert [c.id for c in abandoned] == ["call_1"]
    with pytest.raises(SessionStateError, match="cancelled"):
        session.submit_tool_outputs(TOOL_CHAT.id, [ToolOutput(tool_call_id="call_1", output="x")])
    # A requires_action for a chat already cancelled asks the daemon for nothing.
    results = session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert not any(isinstance(r, ToolCallsRequested) for r in results)


def test_reconnect_keeps_conversation_and_requires_a_fresh_update() -> None:
    session = ready_session()
    start_chat(session)
    session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert session.connection_lost() == [TOOL_CHAT.id]
    with pytest.raises(SessionStateError, match="closed"):
        session.update()
    session.reconnected()
    assert session.state is ConnectionState.AWAITING_CREATED
    with pytest.raises(SessionStateError):
        session.append_audio(b"\x00\x00")
    session.receive(ev.ChatCreated().to_frame())
    frame = json.loads(session.update())
    assert frame["data"]["chat_config"]["conversation_id"] == CHAT.conversation_id
    # An explicit conversation id in the config wins.
    other = SessionConfig(chat_config=ChatConfig(conversation_id="explicit"))
    assert json.loads(session.update(other))["data"]["chat_config"]["conversation_id"] == "explicit"


def test_out_of_order_server_events_are_reported_not_raised() -> None:
    session = ready_session()
    results = session.receive(ev.ChatCreated().to_frame())
    assert any(isinstance(r, OutOfOrder) for r in results)
    assert session.ready


def test_generate_audio_uncancels_the_placeholder_chat() -> None:
    session = ready_session()
    session.generate_audio("hello")
    assert isinstance(session.receive(audio_frame("0"))[0], AudioChunk)
    session.mark_cancelled("0")
    assert isinstance(session.receive(audio_frame("0"))[0], StaleAudio)
    session.generate_audio("again")
    assert isinstance(session.receive(audio_frame("0"))[0], AudioChunk)
    with pytest.raises(SessionStateError, match="1024"):
        session.generate_audio("x" * 1025)


def test_cancelled_memory_is_bounded() -> None:
    session = ClientSession(max_cancelled_chats=4)
    for i in range(10):
        session.mark_cancelled(f"c{i}")
    assert not session.is_cancelled("c0")
    assert session.is_cancelled("c9")
    assert len(session.chat_status) <= 4


def test_transition_table_has_no_exit_from_closed_but_reconnect() -> None:
    from_closed = {move for (state, move) in TRANSITIONS if state is ConnectionState.CLOSED}
    assert {m.name for m in from_closed} == {"CONNECTION_LOST", "RECONNECT"}


def test_protocol_package_does_no_io() -> None:
    code = (
        "import sys; import voiced.protocol.events, voiced.protocol.session, voiced.protocol.models; "
        "bad = sorted(m for m in ('asyncio', 'websockets', 'sounddevice') if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_prologue_is_asked_for_once_per_conversation_not_per_connection() -> None:
    config = SessionConfig(need_play_prologue=True, prologue_content="Hello!")
    session = ClientSession(config)
    session.receive(json.dumps({"event_type": "chat.created"}))
    first = json.loads(session.update())
    assert first["data"]["need_play_prologue"] is True and first["data"]["prologue_content"] == "Hello!"
    session.receive(
        json.dumps({"event_type": "chat.updated", "data": {"chat_config": {"conversation_id": "7526"}}})
    )
    session.connection_lost()
    session.reconnected()
    session.receive(json.dumps({"event_type": "chat.created"}))
    again = json.loads(session.update())
    assert again["data"]["chat_config"]["conversation_id"] == "7526"
    assert "need_play_prologue" not in again["data"] and "prologue_content" not in again["data"]


def test_chat_created_is_answered_with_the_session_config() -> None:
    session = ClientSession(CONFIG)
    results = session.receive(ev.ChatCreated().to_frame())
    frames = [r for r in results if isinstance(r, FrameToSend)]
    assert len(frames) == 1 and '"chat.update"' in frames[0].frame
    assert session.state is ConnectionState.CONFIGURING


@pytest.mark.parametrize(
    "event",
    [
        ev.ConversationChatRequiresAction(data=TOOL_CHAT),
        ev.ConversationChatCompleted(data=CHAT),
        ev.ConversationChatInProgress(data=CHAT),
    ],
    ids=["requires_action", "completed", "in_progress"],
)
def test_a_chat_never_announced_is_out_of_order(event: ev.EventBase) -> None:
    session = ready_session()
    results = session.receive(event.to_frame())
    assert any(isinstance(r, OutOfOrder) for r in results)
    assert not any(isinstance(r, ToolCallsRequested) for r in results)
    assert not session.pending_tool_calls and session.current_chat_id is None


def test_the_chat_lifecycle_follows_its_table() -> None:
    session = ready_session()
    start_chat(session)
    assert session.chat_status[CHAT.id] is ChatStatus.CREATED
    session.receive(ev.ConversationChatInProgress(data=CHAT).to_frame())
    assert session.chat_status[CHAT.id] is ChatStatus.IN_PROGRESS
    session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert session.chat_status[CHAT.id] is ChatStatus.REQUIRES_ACTION
    session.submit_tool_outputs(CHAT.id, [ToolOutput(tool_call_id="call_1", output="17:45")])
    assert session.chat_status[CHAT.id] is ChatStatus.IN_PROGRESS
    session.receive(ev.ConversationChatCompleted(data=CHAT).to_frame())
    assert session.chat_status[CHAT.id] is ChatStatus.COMPLETED
    # A completed chat cannot ask for tools again.
    again = session.receive(ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert any(isinstance(r, OutOfOrder) for r in again)
