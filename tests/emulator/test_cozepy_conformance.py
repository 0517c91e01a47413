"""Conformance with the official SDK (issue 2 §5): cozepy's async WebSocket chat client, pointed at the
emulator, must receive every server event in one of its typed ``on_*`` handlers — none dropped as an
unknown event, none failing its pydantic models (which would end in its error path).

cozepy derives the WebSocket URL from an ``https://`` REST base (``http_base_url_to_ws`` refuses
anything else), so the plain-``ws://`` emulator is reached by building the SDK's own
``AsyncWebsocketsChatClient`` with the emulator URL as its base — the same class that
``AsyncCoze.websockets.chat.create`` returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cozepy import (
    AsyncCoze,
    AsyncTokenAuth,
    AsyncWebsocketsChatClient,
    AsyncWebsocketsChatEventHandler,
    ChatUpdateEvent,
    ConversationChatSubmitToolOutputsEvent,
    ConversationMessageCreateEvent,
    InputAudio,
    InputAudioBufferAppendEvent,
    InputTextGenerateAudioEvent,
    OutputAudio,
    PCMConfig,
    ToolOutput,
)
from cozepy.request import Requester

from tests.emulator.helpers import TOKEN, running
from tests.support.tls import self_signed_cert
from voiced.emulator import Emulator
from voiced.emulator.tts import Voice

Handler = Callable[..., Awaitable[None]]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Recorder:
    """Wraps every typed handler of cozepy's chat event handler and records what reaches it."""

    def __init__(self) -> None:
        self.typed: list[tuple[str, Any]] = []
        self.errors: list[Any] = []
        self.closed = False
        self.arrived = asyncio.Event()
        self.reactions: dict[str, Handler] = {}

    def handlers(self) -> dict[Any, Handler]:
        base = AsyncWebsocketsChatEventHandler().to_dict()
        out: dict[Any, Handler] = {}
        for event_type, original in base.items():
            out[event_type] = self._wrap(str(getattr(event_type, "value", event_type)), original)
        return out

    def _wrap(self, name: str, original: Handler) -> Handler:
        async def handle(cli: Any, event: Any) -> None:
            if name in ("error", "client_error"):
                self.errors.append(event)
            else:
                self.typed.append((name, event))
            await original(cli, event)
            reaction = self.reactions.get(name)
            if reaction is not None:
                await reaction(cli, event)
            self.arrived.set()

        async def closed(cli: Any) -> None:
            self.closed = True

        return closed if name == "closed" else handle

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 15.0) -> Any:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [e for n, e in self.typed if n == name]
                if len(found) >= count:
                    return found[count - 1]
                if self.errors:
                    raise AssertionError(f"cozepy error path: {self.errors}")
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def cozepy_client(emu: Emulator, recorder: Recorder) -> AsyncIterator[AsyncWebsocketsChatClient]:
    client = AsyncWebsocketsChatClient(
        base_url=emu.url,
        requester=Requester(auth=AsyncTokenAuth(TOKEN)),
        bot_id="7496347519799787557",
        on_event=recorder.handlers(),
    )
    await client.connect()  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def cozepy_log() -> AsyncIterator[_ListHandler] | Any:
    handler = _ListHandler()
    logger = logging.getLogger("cozepy")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.setLevel(old_level)
        logger.removeHandler(handler)


async def test_cozepy_receives_every_event_in_typed_handlers(
    monkeypatch: pytest.MonkeyPatch, cozepy_log: _ListHandler
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    speech = await Voice().speak("What time is it?", 24000)
    recorder = Recorder()

    async def answer_tools(cli: Any, event: Any) -> None:
        outputs = [
            ToolOutput(tool_call_id=call.id, output=json.dumps({"spoken": "twenty past four", "iso": "x"}))
            for call in event.data.required_action.submit_tool_outputs.tool_calls
        ]
        await cli.conversation_chat_submit_tool_outputs(
            ConversationChatSubmitToolOutputsEvent.Data(chat_id=event.data.id, tool_outputs=outputs)
        )

    recorder.reactions["conversation.chat.requires_action"] = answer_tools
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with running(scenario="demo", time_scale=0.5) as emu, cozepy_client(emu, recorder) as client:
            await recorder.wait_for("chat.created")
            await client.chat_update(
                ChatUpdateEvent.Data(
                    input_audio=InputAudio(
                        format="pcm", codec="pcm", sample_rate=24000, channel=1, bit_depth=16
                    ),
                    output_audio=OutputAudio(codec="pcm", pcm_config=PCMConfig(sample_rate=24000)),
                    turn_detection=ChatUpdateEvent.TurnDetection(
                        type=ChatUpdateEvent.TurnDetectionType.CLIENT_INTERRUPT
                    ),
                )
            )
            updated = await recorder.wait_for("chat.updated")
            assert updated.data.input_audio.format == "pcm"

            # A text turn that needs a tool call: the answer carries the tool's output.
            await client.conversation_message_create(
                ConversationMessageCreateEvent.Data(
                    role="user", content_type="text", content="What time is it?"
                )
            )
            await recorder.wait_for("conversation.chat.completed")
            answers = [e for n, e in recorder.typed if n == "conversation.message.completed"]
            assert any(e.data.content == "It is twenty past four." for e in answers)

            # An audio turn: PCM appends, then complete.
            for i in range(0, len(speech), 4800):
                await client.input_audio_buffer_append(
                    InputAudioBufferAppendEvent.Data(delta=speech[i : i + 4800])
                )
            await client.input_audio_buffer_complete()
            await recorder.wait_for("input_audio_buffer.completed")
            await recorder.wait_for("conversation.audio_transcript.completed")
            await recorder.wait_for("conversation.chat.requires_action", count=2)
            await recorder.wait_for("conversation.chat.completed", count=2)

            # Cancel a reply in flight.
            await client.conversation_message_create(
                ConversationMessageCreateEvent.Data(role="user", content_type="text", content="Hello there")
            )
            await recorder.wait_for("conversation.audio.sentence_start", count=3)
            await client.conversation_chat_cancel()
            canceled = await recorder.wait_for("conversation.chat.canceled")
            assert canceled.data.code == 2
            assert len([n for n, _ in recorder.typed if n == "conversation.chat.completed"]) == 2

            # The rest of the client API: generate_audio, clears.
            await client.input_text_generate_audio(
                InputTextGenerateAudioEvent.Data(
                    mode=InputTextGenerateAudioEvent.Mode.TEXT, text="Still there?"
                )
            )
            await recorder.wait_for("conversation.audio.completed", count=3)
            await client.input_audio_buffer_clear()
            await recorder.wait_for("input_audio_buffer.cleared")
            await client.conversation_clear()
            await recorder.wait_for("conversation.cleared")
            sent = emu.sent_event_types[0]

    assert recorder.errors == [], f"events ended in cozepy's error path: {recorder.errors}"
    received = Counter(name for name, _ in recorder.typed)
    assert sum(sent.values()) > 50
    assert received == sent, "every event the emulator sent reached a typed cozepy handler"
    assert {
        "chat.created",
        "chat.updated",
        "conversation.chat.created",
        "conversation.chat.in_progress",
        "conversation.chat.requires_action",
        "conversation.message.delta",
        "conversation.message.completed",
        "conversation.audio.sentence_start",
        "conversation.audio.delta",
        "conversation.audio.completed",
        "conversation.chat.completed",
        "conversation.chat.canceled",
        "input_audio_buffer.completed",
        "input_audio_buffer.cleared",
        "conversation.audio_transcript.update",
        "conversation.audio_transcript.completed",
        "conversation.cleared",
    } <= set(received)
    unknown = [r.getMessage() for r in cozepy_log.records if "unknown event" in r.getMessage()]
    assert unknown == []
    dynamic = [str(w.message) for w in caught if "Unknown" in str(w.message)]
    assert dynamic == [], "every enum value the emulator sends is one cozepy knows"


async def test_cozepy_sees_server_vad_and_failure_events(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    speech = await Voice().speak("Tell me a long story please.", 24000)
    silence = bytes(24000)
    recorder = Recorder()
    async with (
        running(scenario="demo", time_scale=0.1, tool_timeout_s=0.2) as emu,
        cozepy_client(emu, recorder) as client,
    ):
        await recorder.wait_for("chat.created")
        await client.chat_update(
            ChatUpdateEvent.Data(
                input_audio=InputAudio(format="pcm", codec="pcm", sample_rate=24000, channel=1, bit_depth=16),
                turn_detection=ChatUpdateEvent.TurnDetection(
                    type=ChatUpdateEvent.TurnDetectionType.SERVER_VAD, silence_duration_ms=400
                ),
            )
        )
        await recorder.wait_for("chat.updated")
        pcm = silence + speech + silence + silence
        for i in range(0, len(pcm), 4800):
            await client.input_audio_buffer_append(InputAudioBufferAppendEvent.Data(delta=pcm[i : i + 4800]))
        await recorder.wait_for("input_audio_buffer.speech_started")
        await recorder.wait_for("input_audio_buffer.speech_stopped")
        # The demo's first audio turn asks for the time; nobody answers: chat.failed.
        failed = await recorder.wait_for("conversation.chat.failed")
        assert failed.data.last_error.msg
        sent = emu.sent_event_types[0]
    assert recorder.errors == []
    assert Counter(name for name, _ in recorder.typed) == sent


async def test_async_coze_reaches_the_emulator_over_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The documented SDK path: AsyncCoze(base_url="https://HOST:PORT").websockets.chat.create(...).
    # cozepy turns https:// into wss:// (protocol.md §1), so the emulator serves TLS here and the
    # client trusts the test certificate through SSL_CERT_FILE.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    recorder = Recorder()
    async with running(scenario="echo", tls_certfile=cert, tls_keyfile=key) as emu:
        assert emu.url.startswith("wss://")
        port = emu.url.rsplit(":", 1)[1]
        coze = AsyncCoze(auth=AsyncTokenAuth(TOKEN), base_url=f"https://127.0.0.1:{port}")
        chat = coze.websockets.chat.create(bot_id="7496347519799787557", on_event=recorder.handlers())
        await chat.connect()  # type: ignore[no-untyped-call]
        try:
            await recorder.wait_for("chat.created")
            await chat.chat_update(
                ChatUpdateEvent.Data(
                    input_audio=InputAudio(
                        format="pcm", codec="pcm", sample_rate=24000, channel=1, bit_depth=16
                    )
                )
            )
            await recorder.wait_for("chat.updated")
            await chat.conversation_message_create(
                ConversationMessageCreateEvent.Data(role="user", content_type="text", content="Over TLS.")
            )
            await recorder.wait_for("conversation.chat.completed")
        finally:
            await chat.close()
        sent = emu.sent_event_types[0]
    assert recorder.errors == []
    assert Counter(name for name, _ in recorder.typed) == sent
