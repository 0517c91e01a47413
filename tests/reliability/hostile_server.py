"""A small hostile Coze look-alike: the HTTP and close-code misbehaviour the emulator does not offer.

One :class:`HostileServer` plays one mode for every connection:

- ``redirect``: answers the upgrade with ``status`` and ``Location: location`` (the first
  ``redirects`` requests only, when set; then it accepts like ``accept``);
- ``status``: answers with ``status``, an optional ``Retry-After`` and ``body``;
- ``close``: accepts, sends ``chat.created``, then closes with ``close_code`` (no ``error`` event);
- ``error``: accepts, sends ``chat.created``, then an ``error`` event with ``error_code``, then waits;
- ``accept``: accepts, answers ``chat.update`` with ``chat.updated``, then never answers anything;
- ``stall``: as ``accept``, then stops reading the socket for ``stall_s`` seconds (until
  :meth:`HostileServer.resume` when None) — its receive buffer is ``receive_buffer_bytes`` small, so
  the client's send buffer fills and its sends block: a socket too slow for the microphone.

Every upgrade request is recorded (path and headers) so a test can tell whether a token reached it,
and every event read (its type, in order) so a test can tell what got through.
The event-level floods (unknown events, huge logids, tool calls) go through the emulator's
``send_raw_to_all``, which speaks the rest of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

Mode = Literal["redirect", "status", "close", "error", "accept", "stall"]


@dataclass
class HostileServer:
    mode: Mode
    status: int = 302
    location: str = ""
    retry_after: str | None = None
    body: bytes = b"busy"
    redirects: int | None = None
    close_code: int = 4100
    error_code: int = 5000
    stall_s: float | None = None
    receive_buffer_bytes: int = 4096
    requests: list[tuple[str, Headers]] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    connections: int = 0
    updates: int = 0
    port: int = 0
    _resumed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def resume(self) -> None:
        """End every stall, now and for later connections: the server reads everything again."""
        self._resumed.set()

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
            return Response(self.status, HTTPStatus(self.status).phrase, headers, self.body)
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
                event_type = str(event.get("event_type"))
                self.received.append(event_type)
                if self.mode in ("accept", "redirect", "stall") and event_type == "chat.update":
                    await ws.send(_event("chat.updated", event.get("data", {})))
                    self.updates += 1
                    if self.mode == "stall":
                        await self._stall(ws)

    async def _stall(self, ws: ServerConnection) -> None:
        ws.transport.pause_reading()
        # Ends early only when the connection is aborted (by the test's teardown: with reading
        # paused, the client's own close is never seen).
        closed = asyncio.ensure_future(ws.wait_closed())
        resumed = asyncio.ensure_future(self._resumed.wait())
        await asyncio.wait({closed, resumed}, timeout=self.stall_s, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        resumed.cancel()
        ws.transport.resume_reading()


def _event(event_type: str, data: dict[str, object]) -> str:
    return json.dumps(
        {"id": str(uuid.uuid4()), "event_type": event_type, "data": data, "detail": {"logid": "hostile"}}
    )


@contextlib.asynccontextmanager
async def serve_hostile(server: HostileServer) -> AsyncIterator[HostileServer]:
    """Serve ``server`` on a free loopback port for the block."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if server.mode == "stall":
        # Set on the listener so that accepted sockets advertise the small window from the start.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, server.receive_buffer_bytes)
        # An Ethernet-sized segment, not loopback's 64 KiB: the client's kernel sizes its send buffer
        # from it, so the buffer fills in seconds as it would on a real network (megabytes otherwise).
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    listener.bind(("127.0.0.1", 0))
    async with serve(server.handle, sock=listener, process_request=server.process_request) as ws_server:
        server.port = listener.getsockname()[1]
        yield server
        for connection in ws_server.connections:
            if server.mode == "stall":
                # A stalled connection cannot finish a closing handshake: do not wait for one.
                connection.transport.abort()
        ws_server.close()
        await asyncio.sleep(0)
