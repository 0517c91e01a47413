"""A minimal raw WebSocket client for the emulator tests: sends typed events, parses every frame."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

from voiced.emulator import Emulator, EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol.events import (
    AnyServerEvent,
    ChatCreated,
    ChatUpdate,
    ChatUpdated,
    ConversationAudioDelta,
    ConversationChatCompleted,
    ConversationChatFailed,
    ConversationMessageCreate,
    EventBase,
    MalformedEvent,
    MessageCreateData,
    UnknownEvent,
    parse_server_frame,
)
from voiced.protocol.models import InputAudio, SessionConfig

TOKEN = "test-token"
FAST = 0.05
E = TypeVar("E")
ServerFrame = AnyServerEvent | UnknownEvent | MalformedEvent


@dataclass(frozen=True)
class Received:
    at_s: float
    event: ServerFrame
    raw: str | bytes


@dataclass
class Client:
    """Wraps a connection; ``received`` keeps every server frame, parsed, with its arrival time."""

    ws: ClientConnection
    received: list[Received] = field(default_factory=list)
    strict: bool = True

    async def send(self, event: EventBase) -> None:
        await self.ws.send(event.to_frame())

    async def recv(self, timeout_s: float = 5.0) -> ServerFrame:
        raw = await asyncio.wait_for(self.ws.recv(), timeout_s)
        event = parse_server_frame(raw)
        self.received.append(Received(time.monotonic(), event, raw))
        if self.strict:
            assert not isinstance(event, UnknownEvent | MalformedEvent), f"untyped server frame: {event}"
        return event

    async def until(
        self, kind: type[E], timeout_s: float = 10.0, where: Callable[[E], bool] | None = None
    ) -> E:
        """Receive until an event of ``kind`` (matching ``where``) arrives; returns it."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.recv(timeout_s)
                if isinstance(event, kind) and (where is None or where(event)):
                    return event

    async def chat_end(self, timeout_s: float = 20.0) -> ConversationChatCompleted | ConversationChatFailed:
        return await self.until(ConversationChatCompleted | ConversationChatFailed, timeout_s)  # type: ignore[arg-type]

    async def say(self, text: str) -> None:
        await self.send(ConversationMessageCreate(data=MessageCreateData(role="user", content=text)))

    async def configure(self, **config: Any) -> None:
        """chat.update with raw PCM input (the usual client setup) plus ``config``; waits for chat.updated."""
        data = SessionConfig.model_validate({"input_audio": {"format": "pcm"}, **config})
        if data.input_audio is None:
            data.input_audio = InputAudio(format="pcm")
        await self.send(ChatUpdate(data=data))
        await self.until(ChatUpdated)

    def events(self, kind: type[E]) -> list[E]:
        return [r.event for r in self.received if isinstance(r.event, kind)]

    def types(self) -> list[str]:
        return [getattr(r.event, "event_type", type(r.event).__name__) for r in self.received]

    def audio(self, chat_id: str | None = None) -> bytes:
        return b"".join(
            d.audio()
            for d in self.events(ConversationAudioDelta)
            if chat_id is None or d.data.chat_id == chat_id
        )


def settings(**overrides: Any) -> EmulatorSettings:
    base: dict[str, Any] = {"port": 0, "token": TOKEN, "time_scale": FAST, "ping_interval_s": 0}
    if isinstance(overrides.get("scenario"), str):
        overrides["scenario"] = load_scenario(overrides["scenario"])
    return EmulatorSettings(**{**base, **overrides})


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Emulator]:
    async with serve_emulator(settings(**overrides)) as emu:
        yield emu


@asynccontextmanager
async def client(
    emu: Emulator, *, token: str | None = TOKEN, bot_id: str = "7496", strict: bool = True
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with connect(f"{emu.url}/v1/chat?bot_id={bot_id}", additional_headers=headers, max_size=None) as ws:
        yield Client(ws, strict=strict)


@asynccontextmanager
async def session(**overrides: Any) -> AsyncIterator[tuple[Emulator, Client]]:
    """An emulator and one connected client that has seen chat.created."""
    async with running(**overrides) as emu, client(emu) as c:
        await c.until(ChatCreated)
        yield emu, c
