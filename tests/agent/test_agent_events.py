"""The agent fed server frames directly (real session, jitter buffer and playout; no socket)."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from tests.protocol.samples import CHAT, TOOL_CHAT
from voiced.agent.agent import MAX_TRACKED_CHATS, Agent
from voiced.audio.jitter import JitterBuffer
from voiced.config import load_config
from voiced.conversation.playout import Playout
from voiced.devices.memory import MemorySink
from voiced.protocol import events as ev
from voiced.protocol.models import ErrorData, SessionConfig


def make_agent() -> Agent:
    config = load_config(None, environ={}, overrides={"session.input_codec": "pcm"})
    sink = MemorySink(24000)
    playout = Playout(sink, JitterBuffer(24000, config.audio.jitter))
    return Agent(config, playout)


def audio(chat_id: str, value: int, ms: int) -> str:
    pcm = np.full(24 * ms, value, dtype=np.int16).tobytes()
    return ev.ConversationAudioDelta(
        data=ev.Message(chat_id=chat_id, content_type="audio", content=base64.b64encode(pcm).decode())
    ).to_frame()


def chat_created(chat_id: str) -> str:
    return ev.ConversationChatCreated(
        data=CHAT.model_copy(update={"id": chat_id, "status": "created"})
    ).to_frame()


async def feed(agent: Agent, *frames: str) -> None:
    async with asyncio.TaskGroup() as group:
        for frame in frames:
            agent._on_frame(frame, group)


async def test_server_cancel_drops_a_reply_that_had_not_started_playing() -> None:
    agent = make_agent()
    await feed(
        agent,
        ev.ChatCreated().to_frame(),
        ev.ChatUpdated(data=SessionConfig()).to_frame(),
        chat_created("B"),
        audio("B", 1111, 10),  # below the 40 ms start target: queued, not yet playing
        ev.ConversationChatCanceled(data=ev.CanceledData(code=1, msg="x")).to_frame(),
        chat_created("C"),
        audio("C", 2222, 100),
        ev.ConversationAudioCompleted(data=ev.Message(chat_id="C", content_type="audio")).to_frame(),
    )
    heard = agent.playout.jitter.pull(24 * 100, 0.0)
    assert 1111 not in set(heard.tolist())
    assert (heard == 2222).sum() > 24 * 50
    assert "B" not in agent._by_chat


async def test_speech_started_cancels_the_tools_of_a_chat_that_is_not_playing() -> None:
    agent = make_agent()
    release = asyncio.Event()

    class SlowRunner:
        cancelled = False

        async def run(self, chat_id: str, calls: object) -> list[object]:
            try:
                await release.wait()
            except asyncio.CancelledError:
                SlowRunner.cancelled = True
                raise
            return []

    agent.runner = SlowRunner()  # type: ignore[assignment]
    async with asyncio.TaskGroup() as group:
        for frame in (
            ev.ChatCreated().to_frame(),
            ev.ChatUpdated(data=SessionConfig()).to_frame(),
            chat_created(TOOL_CHAT.id),
            ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame(),
        ):
            agent._on_frame(frame, group)
        await asyncio.sleep(0.01)
        agent._on_frame(ev.InputAudioBufferSpeechStarted().to_frame(), group)
    assert SlowRunner.cancelled
    assert not agent._tool_tasks


async def test_tracked_chats_are_bounded() -> None:
    agent = make_agent()
    frames = [ev.ChatCreated().to_frame(), ev.ChatUpdated(data=SessionConfig()).to_frame()]
    frames += [chat_created(f"chat-{i}") for i in range(MAX_TRACKED_CHATS * 3)]
    await feed(agent, *frames)
    assert len(agent._by_chat) <= MAX_TRACKED_CHATS


async def test_an_error_answering_chat_update_is_a_config_error() -> None:
    from voiced.errors import EXIT_CONFIG, FatalError

    agent = make_agent()
    await feed(agent, ev.ChatCreated().to_frame())
    try:
        await feed(agent, ev.Error(data=ErrorData(code=4000, msg="invalid voice_id")).to_frame())
    except* FatalError as group:
        fatal = group.exceptions[0]
        assert isinstance(fatal, FatalError) and fatal.exit_code == EXIT_CONFIG
        assert "[session]" in str(fatal)
    else:
        raise AssertionError("expected a FatalError")


async def test_out_of_order_chat_created_does_not_resend_config() -> None:
    agent = make_agent()
    await feed(agent, ev.ChatCreated().to_frame(), ev.ChatUpdated(data=SessionConfig()).to_frame())
    sent = len(agent._control)
    await feed(agent, ev.ChatCreated().to_frame())
    assert len(agent._control) == sent
    assert agent.session.ready
