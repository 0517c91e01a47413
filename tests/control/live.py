"""The real daemon (in-process, memory devices) against the emulator, with its control API on a free
port, and a WebSocket client of that API that records every event."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from tests.agent.harness import Harness, daemon_config, running_daemon
from voiced.control.server import ControlServer
from voiced.devices.memory import MemorySource
from voiced.emulator import Emulator

Json = dict[str, Any]


def silent_source() -> MemorySource:
    """A paced microphone that hears silence until the test appends speech."""
    return MemorySource(np.zeros(1600, dtype=np.int16), paced=True, after_end="silence")


@dataclass
class Device:
    harness: Harness
    server: ControlServer

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://") + "ws"


@contextlib.asynccontextmanager
async def running_device(emu: Emulator, source: MemorySource, **overrides: Any) -> AsyncIterator[Device]:
    """The daemon with its control server on a free loopback port."""
    config = daemon_config(emu, **overrides)
    async with running_daemon(config, source) as harness:
        control = harness.daemon.control
        assert control is not None and control.server is not None, "the control server did not start"
        yield Device(harness, control.server)


class Client:
    """One API client: every event it received, and commands with their replies."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Json] = []
        self.replies: dict[Any, Json] = {}
        self._next_id = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message)
            if data.get("type") == "reply" and "id" in data:
                self.replies[data["id"]] = data
            else:
                self.events.append(data)
            self._changed.set()

    async def until(self, condition: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        async with asyncio.timeout(timeout_s):
            while not (result := condition()):
                self._changed.clear()
                await self._changed.wait()
            return result

    async def event(self, predicate: Callable[[Json], bool], timeout_s: float = 20.0, start: int = 0) -> Json:
        """The first event (from index ``start``) that matches."""
        found: Json = await self.until(
            lambda: next((e for e in self.events[start:] if predicate(e)), None), timeout_s
        )
        return found

    async def command(self, cmd: str, **fields: Any) -> Json:
        self._next_id += 1
        command_id = self._next_id
        await self.ws.send(json.dumps({"v": 1, "id": command_id, "cmd": cmd, **fields}))
        reply: Json = await self.until(lambda: self.replies.get(command_id), 15.0)
        return reply

    async def send_raw(self, text: str) -> Json:
        """Send ``text`` as is; the next reply without an id (a malformed command's)."""
        seen = len(self.events)
        await self.ws.send(text)
        return await self.event(lambda e: e.get("type") == "reply", start=seen, timeout_s=5.0)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.wait([self._reader])


@contextlib.asynccontextmanager
async def client(device: Device) -> AsyncIterator[Client]:
    async with connect(device.ws_url, open_timeout=5) as ws:
        c = Client(ws)
        try:
            yield c
        finally:
            await c.close()


def of_type(events: list[Json], kind: str) -> list[Json]:
    return [e for e in events if e.get("type") == kind]
