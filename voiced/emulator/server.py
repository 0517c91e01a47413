"""The emulator's WebSocket server: handshake checks, connection bookkeeping and the test API.

Use :func:`serve_emulator`::

    async with serve_emulator(EmulatorSettings(port=0, token="t")) as emu:
        url = f"{emu.url}/v1/chat?bot_id=123"   # header  Authorization: Bearer t
        ...
        await emu.wait_for(lambda ev: isinstance(ev, InputAudioBufferComplete), timeout_s=5)

The handshake follows protocol.md §1: path ``/v1/chat``, ``bot_id`` required (HTTP 400 otherwise),
``Authorization: Bearer`` checked (HTTP 401, or with ``auth_failure="event"`` an ``error`` 4100 then a
close), ``X-Tt-Logid`` on every handshake response. The token is never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from voiced.emulator.session import Session
from voiced.emulator.settings import EmulatorSettings
from voiced.emulator.tts import Voice
from voiced.protocol.events import AnyClientEvent, MalformedEvent, UnknownEvent

log = structlog.get_logger("voiced.emulator")

CHAT_PATH = "/v1/chat"
#: The support id of every handshake response, in the spelling the real server uses (protocol.md §1, §3.1a).
LOGID_HEADER = "X-Tt-Logid"
#: websockets refuses (close 1009) frames above this; frames between max_frame_bytes and this get
#: an error 4000 event instead, so a client's oversized frame is answered, not fatal.
_WS_MAX_SIZE_FACTOR = 4

ClientFrameEvent = AnyClientEvent | UnknownEvent | MalformedEvent


@dataclass(frozen=True)
class ReceivedFrame:
    """One frame the emulator received, parsed (tests read ``Emulator.received``)."""

    connection_index: int
    at_monotonic_s: float
    event: ClientFrameEvent


@dataclass(frozen=True)
class _Admission:
    logid: str
    bot_id: str
    refuse_auth: bool


class Emulator:
    """A running emulator. Get one from :func:`serve_emulator`; its attributes are the test API."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.voice = Voice(settings.voice)
        self.received: list[ReceivedFrame] = []
        self.connections_total = 0
        #: Per connection index: how many server events of each type were sent (kept after close).
        self.sent_event_types: dict[int, Counter[str]] = {}
        self._sessions: dict[int, Session] = {}
        self._admissions: dict[ServerConnection, _Admission] = {}
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self._rng = random.Random(settings.seed)

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` of the listening socket (the real port when settings.port is 0)."""
        if self._server is None:
            raise RuntimeError("the emulator is not serving")
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        scheme = "wss" if self.settings.tls_certfile else "ws"
        return f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        """The live sessions, oldest first (for tests that need the server-side state)."""
        return list(self._sessions.values())

    async def drop_all(self) -> None:
        """Abort every connection (no close frame), as a network failure would. Clients must reconnect."""
        for session in list(self._sessions.values()):
            session.abort_connection("drop_all")

    async def send_raw_to_all(self, frame: str | bytes) -> None:
        """Send ``frame`` unchanged to every client (queued behind what each one is already sending)."""
        for session in list(self._sessions.values()):
            await session.send_raw(frame)

    async def wait_for(
        self, predicate: Callable[[ClientFrameEvent], bool], timeout_s: float = 5.0
    ) -> ClientFrameEvent:
        """The first received client event (since the start) that matches; raises TimeoutError."""
        seen = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for item in self.received[seen:]:
                    if predicate(item.event):
                        return item.event
                seen = len(self.received)
                self._changed.clear()
                await self._changed.wait()

    def _record(self, connection_index: int, event: ClientFrameEvent) -> None:
        self.received.append(ReceivedFrame(connection_index, time.monotonic(), event))
        self._changed.set()

    def _new_logid(self) -> str:
        # Shaped like the real ones: "02" + ms timestamp + hex (protocol.md §2, traces).
        return f"02{int(time.time() * 1000)}{self._rng.getrandbits(160):040x}"

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, code: int, msg: str) -> Response:
        logid = self._new_logid()
        log.info("handshake_refused", status=int(status), code=code, msg=msg, logid=logid)
        body = json.dumps({"code": code, "msg": msg}) + "\n"
        response = connection.respond(status, body)
        # respond() already set a text/plain Content-Type: replace it, a second one confuses clients.
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        # Spelled exactly so: the official Node SDK searches its raw headers case-sensitively.
        response.headers[LOGID_HEADER] = logid
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.rstrip("/") != CHAT_PATH:
            return self._refuse(
                connection, HTTPStatus.NOT_FOUND, 4000, f"no such endpoint {url.path!r}; use {CHAT_PATH}"
            )
        query = parse_qs(url.query)
        bot_id = (query.get("bot_id") or [""])[0]
        if not bot_id:
            return self._refuse(
                connection, HTTPStatus.BAD_REQUEST, 4000, "missing required query parameter: bot_id"
            )
        device_id = (query.get("device_id") or [""])[0]
        if device_id and not (device_id.isdigit() and int(device_id) < 2**63):
            return self._refuse(
                connection, HTTPStatus.BAD_REQUEST, 4000, "device_id must be a decimal int64 string"
            )
        authorized = self._authorized(
            request.headers.get("Authorization") or (query.get("authorization") or [""])[0]
        )
        if not authorized and self.settings.auth_failure == "http":
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, 4100, "authentication is invalid")
        self._admissions[connection] = _Admission(self._new_logid(), bot_id, not authorized)
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        if self.settings.token is None:
            return True
        return hmac.compare_digest(token.strip().encode(), self.settings.token.encode())

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        admission = self._admissions.get(connection)
        if admission is not None:
            response.headers[LOGID_HEADER] = admission.logid

    async def _handle(self, ws: ServerConnection) -> None:
        admission = self._admissions.pop(ws, None)
        if admission is None:
            return
        index = self.connections_total
        self.connections_total += 1
        session = Session(
            ws,
            settings=self.settings,
            voice=self.voice,
            index=index,
            bot_id=admission.bot_id,
            logid=admission.logid,
            record=self._record,
        )
        self._sessions[index] = session
        self.sent_event_types[index] = session.sent_event_types
        bound = log.bind(connection=index, bot_id=admission.bot_id, logid=admission.logid)
        bound.info("connection_open", authorized=not admission.refuse_auth)
        try:
            await session.run(admission.refuse_auth)
        except Exception:
            # A bug in one session must not take the emulator down: log it and close this connection.
            bound.exception("session_failed")
        finally:
            del self._sessions[index]
            bound.info("connection_closed", code=ws.close_code)
            self._changed.set()


@asynccontextmanager
async def serve_emulator(settings: EmulatorSettings) -> AsyncIterator[Emulator]:
    """Serve the emulator until the ``async with`` block ends; then every connection is closed.

    Raises OSError when the address is taken, ssl.SSLError for an unusable certificate.
    """
    emu = Emulator(settings)
    tls = None
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
    async with serve(
        emu._handle,
        settings.host,
        settings.port,
        process_request=emu._process_request,
        process_response=emu._process_response,
        # Base64 audio does not compress; deflate would only cost CPU (design.md).
        compression=None,
        # Our own ping loop implements "every 15 s, close after 4 unanswered" (protocol.md §1).
        ping_interval=None,
        max_size=settings.max_frame_bytes * _WS_MAX_SIZE_FACTOR,
        ssl=tls,
    ) as server:
        emu._server = server
        log.info(
            "emulator_serving",
            url=emu.url,
            scenario=settings.scenario.name,
            voice=emu.voice.engine,
            auth="token" if settings.token else "any bearer token",
        )
        yield emu
