"""A small hostile Coze look-alike: the HTTP and close-code misbehaviour the emulator does not offer.

One :class:`HostileServer` plays one mode for every connection:

- ``redirect``: answers the upgrade with ``status`` and ``Location: location`` (the first
  ``redirects`` requests only, when set; then it accepts like ``accept``);
- ``status``: answers with ``status`` and an optional ``Retry-After``;
- ``close``: accepts, sends ``chat.created``, then closes with ``close_code`` (no ``error`` event);
- ``error``: accepts, sends ``chat.created``, then an ``error`` event with ``error_code``, then waits;
- ``accept``: accepts, answers ``chat.update`` with ``chat.updated``, then never answers anything.

Every upgrade request is recorded (path and headers) so a test can tell whether a token reached it.
The event-level floods (unknown events, huge logids, tool calls) go through the emulator's
``send_raw_to_all``, which speaks the rest of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

Mode = Literal["redirect", "status", "close", "error", "accept"]


@dataclass
class HostileServer:
    mode: Mode
    status: int = 302
    location: str = ""
    retry_after: str | None = None
    redirects: int | None = None
    close_code: int = 4100
    error_code: int = 5000
    requests: list[tuple[str, Headers]] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def process_request(self, _connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append((request.path, request.headers))
        headers = Headers()
        redirecting = self.redirects is None or len(self.requests) <= self.redirects
        if self.mode == "redirect" and redirecting:
            headers["Location"] = self.location
            return Response(self.status, HTTPStatus(self.status).phrase, headers, b"")
        if self.mode == "status":
            if self.retry_after is not None:
                headers["Retry-After"] = self.retry_after
            return Response(self.status, HTTPStatus(self.status).phrase, headers, b"busy")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(_event("chat.created", {}))
        if self.mode == "close":
            await ws.close(self.close_code, "refused by the hostile server")
            return
        if self.mode == "error":
            await ws.send(_event("error", {"code": self.error_code, "msg": "internal error"}))
        with contextlib.suppress(Exception):
            async for frame in ws:
                event = json.loads(frame)
                if self.mode in ("accept", "redirect") and event.get("event_type") == "chat.update":
                    await ws.send(_event("chat.updated", event.get("data", {})))


def _event(event_type: str, data: dict[str, object]) -> str:
    return json.dumps(
        {"id": str(uuid.uuid4()), "event_type": event_type, "data": data, "detail": {"logid": "hostile"}}
    )


@contextlib.asynccontextmanager
async def serve_hostile(server: HostileServer) -> AsyncIterator[HostileServer]:
    """Serve ``server`` on a free loopback port for the block."""
    async with serve(server.handle, "127.0.0.1", 0, process_request=server.process_request) as ws_server:
        server.port = next(iter(ws_server.sockets)).getsockname()[1]
        yield server
        ws_server.close()
        await asyncio.sleep(0)
