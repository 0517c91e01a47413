"""Property-based fuzzing of the downlink: whatever the server sends, the daemon neither crashes nor
stops talking, and each problem is logged.

Three levels: the sans-I/O :class:`ClientSession` (thousands of frames), the :class:`Agent` that
dispatches them to the speaker, tools and logs, and a live daemon fed over a real WebSocket by the
emulator (``send_raw_to_all``), which must still hold a normal spoken turn afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agent.harness import BOT_ID, TOKEN, daemon_config, running_daemon, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from tests.reliability.downlink_frames import is_fatal_error_frame, server_frames
from voiced.agent.agent import Agent
from voiced.audio.jitter import JitterBuffer
from voiced.config import VoicedConfig, load_config
from voiced.conversation.playout import Playout
from voiced.devices.memory import MemorySink, MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.errors import FatalError
from voiced.protocol.events import ChatCreated, ChatUpdated, ConversationChatCreated
from voiced.protocol.models import Chat, SessionConfig
from voiced.protocol.session import ClientSession

pytestmark = pytest.mark.timeout(150)

_FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def _greeting() -> list[str]:
    chat = Chat(id="chat-1", conversation_id="conv-1", bot_id="bot", status="in_progress")
    return [
        ChatCreated().to_frame(),
        ChatUpdated(data=SessionConfig()).to_frame(),
        ConversationChatCreated(data=chat).to_frame(),
    ]


def _audio_frame(chat_id: str, pcm: bytes) -> str:
    return json.dumps(
        {
            "event_type": "conversation.audio.delta",
            "data": {
                "id": "m",
                "chat_id": chat_id,
                "role": "assistant",
                "type": "answer",
                "content_type": "audio",
                "content": base64.b64encode(pcm).decode(),
            },
        }
    )


@_FUZZ
@given(frames=st.lists(server_frames, max_size=30))
def test_the_session_state_machine_never_raises_and_stays_usable(frames: list[str | bytes]) -> None:
    session = ClientSession(SessionConfig())
    for greeting in _greeting():
        session.receive(greeting)
    for frame in frames:
        results = session.receive(frame)
        assert isinstance(results, list) and results
    # Still a working session: it can be (re)configured and, once ready, send audio.
    session.update()
    session.receive(ChatUpdated(data=SessionConfig()).to_frame())
    assert session.ready
    assert json.loads(session.append_audio(b"\x00\x01" * 160))["event_type"] == "input_audio_buffer.append"


def _config(output_codec: str) -> VoicedConfig:
    return load_config(
        None,
        environ={},
        overrides={
            "coze.base_url": "ws://127.0.0.1:9",
            "coze.bot_id": BOT_ID,
            "coze.token": TOKEN,
            "session.output_codec": output_codec,
        },
    )


def _agent(output_codec: str) -> Agent:
    config = _config(output_codec)
    sink = MemorySink(24000)
    playout = Playout(sink, JitterBuffer(24000, config.audio.jitter))
    return Agent(config, playout)


def _problems(agent: Agent) -> int:
    c = agent.counters
    return c.invalid_frames + c.unknown_events


@_FUZZ
@given(frames=st.lists(server_frames, max_size=3), codec=st.sampled_from(["pcm", "opus"]))
def test_the_agent_survives_any_frame_and_logs_each_problem(
    frames: list[str | bytes], codec: str, logs: CapturedLogs
) -> None:
    async def scenario() -> None:
        agent = _agent(codec)
        for greeting in _greeting():
            agent.receive_frame(greeting)
        for frame in frames:
            before_problems = _problems(agent)
            before_lines = len(logs.events())
            try:
                agent.receive_frame(frame)
            except FatalError:
                # Only an auth/billing error event may end the daemon, by design (protocol.md §5).
                assert is_fatal_error_frame(frame), frame
                return
            if _problems(agent) > before_problems:
                # Up to three problems of a kind are each logged at once (then rate-limited).
                new = logs.events()[before_lines:]
                assert any(r.get("level") == "warning" for r in new), (frame, new)
        # The session goes on: a good audio delta of a new chat still reaches the speaker's buffer.
        chunks = agent.counters.audio_chunks
        agent.receive_frame(
            ConversationChatCreated(
                data=Chat(id="chat-ok", conversation_id="conv-1", bot_id="bot", status="created")
            ).to_frame()
        )
        agent.receive_frame(_audio_frame("chat-ok", b"\x10\x00" * 480))
        assert agent.counters.audio_chunks == chunks + 1

    asyncio.run(scenario())


def test_an_odd_pcm_byte_of_one_reply_does_not_shift_the_next_speech() -> None:
    """A reply whose audio ends on half a sample must not misalign the next audio (loud noise), even
    when that audio comes without a chat.created: ``input_text.generate_audio`` speech has no chat
    events (protocol.md §3) and arrives under the placeholder chat id "0"."""
    tone = (np.cos(np.arange(4800) * 0.05) * 8000).astype("<i2")

    async def scenario() -> np.ndarray:
        agent = _agent("pcm")
        for greeting in _greeting():
            agent.receive_frame(greeting)
        agent.receive_frame(_audio_frame("chat-1", b"\x01\x02\x03"))
        agent.playout.jitter.cancel("chat-1", fade_ms=0.0)
        agent.receive_frame(_audio_frame("0", tone.tobytes()))
        jitter = agent.playout.jitter
        out = [jitter.pull(480, 100.0 + i * 0.02) for i in range(30)]
        return np.concatenate(out)

    played = asyncio.run(scenario())
    # The tone comes out sample for sample (the buffer may add silence before it, not garbage).
    start = int(np.argmax(played != 0))
    assert np.array_equal(played[start : start + 4000], tone[:4000].astype(np.int16))


@_FUZZ
@given(packet=st.binary(min_size=1, max_size=60))
def test_every_undecodable_opus_packet_is_counted_and_logged(packet: bytes, logs: CapturedLogs) -> None:
    async def scenario() -> tuple[int, int, int]:
        agent = _agent("opus")
        for greeting in _greeting():
            agent.receive_frame(greeting)
        before_lines = len(logs.events())
        agent.receive_frame(_audio_frame("chat-1", packet))
        new = logs.events()[before_lines:]
        warned = sum(1 for r in new if r.get("event") == "corrupt audio delta concealed")
        return agent.decoder.errors, agent.counters.invalid_frames, warned

    errors, invalid, warned = asyncio.run(scenario())
    # Opus accepts many byte strings; whatever it refuses is concealed, counted and logged.
    assert invalid == errors
    assert warned == errors


@st.composite
def nasty_batches(draw: st.DrawFn) -> list[str | bytes]:
    batch: list[str | bytes] = draw(st.lists(server_frames, min_size=10, max_size=25))
    batch += [
        b"\x00\x01binary",
        '{"event_type":"conversation.audio.delta","data":{"chat_id":"x","content":"@@"}}',
        _audio_frame("chat-none", b"\x01\x02\x03"),
        '{"event_type": "conversation.chat.completed", "data": {"id": 5}}',
        '{"event_type": "surprise.event", "data": {"x": 1}}',
    ]
    # No fatal error events: they end the daemon by design, which is tested elsewhere.
    return [f for f in batch if not is_fatal_error_frame(f)]


async def _live_injection(frames: list[str | bytes], logs: CapturedLogs) -> None:
    settings_ = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    async with serve_emulator(settings_) as emu:
        config = daemon_config(emu)
        source = MemorySource(np.zeros(1600, dtype=np.int16), paced=True, after_end="silence")
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None
            for frame in frames:
                await emu.send_raw_to_all(frame)
            # A normal spoken turn still works afterwards (on this connection or a fresh one).
            async with asyncio.timeout(20):
                while not agent.connected:
                    await asyncio.sleep(0.02)
            first = len(h.turns)
            source.append(utterance_pcm())
            # The garbage may have announced chats of its own (a valid chat.created among it): their
            # turns end too, interrupted by the user's speech. The user's own turn must be answered.
            async with asyncio.timeout(40):
                while not any(t.heard for t in h.turns[first:]):
                    await asyncio.sleep(0.05)
            turn = next(t for t in h.turns[first:] if t.heard)
            assert turn.played_ms > 300 and not turn.interrupted
            problems = _problems(agent)
            assert h.task.done() is False
    assert problems >= 3
    warnings = [r for r in logs.events() if r.get("level") == "warning"]
    assert len(warnings) >= 3


@given(data=st.data())
@settings(
    max_examples=3,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_live_daemon_takes_a_barrage_of_garbage_and_still_holds_a_turn(
    data: st.DataObject, logs: CapturedLogs
) -> None:
    frames = data.draw(nasty_batches())
    asyncio.run(_live_injection(frames, logs))


async def test_a_ten_megabyte_frame_is_refused_and_the_daemon_reconnects(logs: CapturedLogs) -> None:
    settings_ = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    async with serve_emulator(settings_) as emu:
        config = daemon_config(emu)
        source = MemorySource(np.zeros(1600, dtype=np.int16), paced=True, after_end="silence")
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None
            huge = json.dumps(
                {"event_type": "conversation.message.delta", "data": {"content": "x" * 10_000_000}}
            )
            await emu.send_raw_to_all(huge)
            async with asyncio.timeout(20):
                while emu.connections_total < 2 or not agent.connected:
                    await asyncio.sleep(0.02)
            source.append(utterance_pcm())
            turn = await h.next_turn(30)
    assert turn.played_ms > 300
    closes = logs.with_event("connection lost")
    # websockets refuses the frame by its max_size (close 1009, "message too big"), and the log says so.
    assert any(r.get("sent_close_code") == 1009 for r in closes), closes
    assert any("exceeds limit" in str(r.get("sent_close_reason")) for r in closes), closes
