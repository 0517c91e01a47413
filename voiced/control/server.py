"""The control server: one port for the WebSocket API (``/ws``), the kiosk page (``/``),
``/metrics`` and ``/schema.json``, served by ``websockets`` alone.

Wiring it into the daemon::

    publisher = EventPublisher()                  # the daemon publishes every event here
    metrics = Metrics(snapshot=daemon.metrics_snapshot)
    async with serve_control(config.control, daemon, publisher, metrics=metrics) as server, \\
               run_hooks(config.hooks, publisher, secrets=[coze_token]):
        ...                                       # the daemon runs; server.url is the page

Who may connect: no ``Origin`` (a program, a script) or the page's own origin, reached by an IP
address, ``localhost`` or a name in ``control.allowed_hosts`` (a page elsewhere must not drive the
microphone, nor reach it by DNS rebinding); with ``control.token`` set, clients that are not on
this machine must present it (``Authorization: Bearer …`` or ``?token=…``) for ``/ws`` and
``/metrics``. Each client's events pass through a bounded queue: one that stops reading is dropped,
the publisher never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import stat
from collections.abc import AsyncIterator
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voiced import __version__
from voiced.control.messages import (
    AnnounceCommand,
    Command,
    CommandError,
    DeviceChoice,
    DeviceList,
    DevicesCommand,
    InterruptCommand,
    MuteCommand,
    ReloadCommand,
    Reply,
    SelectDeviceCommand,
    SnapshotEvent,
    StatusCommand,
    StatusSnapshot,
    TalkCommand,
    TextCommand,
    VolumeCommand,
    control_schema,
    error_reply,
    event_json,
    parse_command,
)
from voiced.control.publisher import EventPublisher, Subscription, SubscriptionDroppedError
from voiced.control.settings import ControlSettings, is_loopback_host
from voiced.control.target import CommandRejectedError, ControlTarget
from voiced.control.throttle import Throttle
from voiced.errors import ConfigError, VoicedError
from voiced.log import get_logger, register_secret

if TYPE_CHECKING:
    from voiced.control.metrics import Metrics

log = get_logger("control")

WS_PATH = "/ws"
#: Close code for a client dropped for falling behind (RFC 6455 1008: policy violation).
CLOSE_TOO_SLOW = 1008
#: How long closing a dropped client may take before its connection is abandoned.
CLOSE_TIMEOUT_S = 2.0
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/kiosk.css": ("kiosk.css", "text/css; charset=utf-8"),
    "/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8"),
}
_SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    ),
)


class ControlUnavailableError(VoicedError):
    """The control server cannot listen (the port is taken…). The daemon may run on without it."""


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("voiced.control") / "static"
    return {path: ((folder / name).read_bytes(), ctype) for path, (name, ctype) in _STATIC.items()}


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    for name, value in _SECURITY_HEADERS:
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)


def _text(status: HTTPStatus, line: str) -> Response:
    return _response(status, (line + "\n").encode(), "text/plain; charset=utf-8")


class ControlServer:
    """A running control server; :func:`serve_control` yields one. Read :attr:`url` for the page."""

    def __init__(
        self,
        settings: ControlSettings,
        target: ControlTarget,
        publisher: EventPublisher,
        metrics: Metrics | None,
        token: str | None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.publisher = publisher
        self.metrics = metrics
        self._token = token
        self._static = _load_static()
        self._schema = json.dumps(control_schema(), indent=1).encode()
        self._allowed_hosts = {h.lower() for h in settings.allowed_hosts}
        self._allowed_origins = {o.rstrip("/").lower() for o in settings.allowed_origins}
        self._clients: set[ServerConnection] = set()
        self._throttle = Throttle()
        self._server: Server | None = None
        self.port: int | None = None
        self.refused = 0

    @property
    def clients(self) -> int:
        """How many WebSocket clients are connected."""
        return len(self._clients)

    @property
    def url(self) -> str:
        """The kiosk page's URL (``http://host:port/``), or the socket path for a unix socket."""
        if self.settings.unix_socket is not None:
            return f"unix:{self.settings.unix_socket}"
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    # --- admission ------------------------------------------------------------------------------

    def _host_allowed(self, host_header: str | None) -> bool:
        if self.settings.unix_socket is not None or not host_header:
            return True
        hostname = urlsplit(f"//{host_header}").hostname or ""
        if hostname in self._allowed_hosts or is_loopback_host(hostname):
            return True
        try:
            ipaddress.ip_address(hostname.strip("[]"))
        except ValueError:
            return False
        return True

    def _origin_allowed(self, origin: str, host_header: str | None) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self._allowed_origins:
            return True
        return host_header is not None and origin == f"http://{host_header.lower()}"

    def _local_peer(self, connection: ServerConnection) -> bool:
        if self.settings.unix_socket is not None:
            return True
        address = connection.remote_address
        return isinstance(address, tuple) and bool(address) and is_loopback_host(str(address[0]))

    def _authorized(self, connection: ServerConnection, request: Request, query: str) -> bool:
        if self._token is None or self._local_peer(connection):
            return True
        offered = ""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            offered = auth[7:].strip()
        else:
            offered = (parse_qs(query).get("token") or [""])[0]
        return hmac.compare_digest(offered.encode(), self._token.encode())

    def _refuse(self, status: HTTPStatus, line: str, peer: object) -> Response:
        self.refused += 1
        suppressed = self._throttle.allow(f"refused-{status.value}")
        if suppressed is not None:
            log.warning(
                "control request refused",
                status=status.value,
                reason=line,
                peer=str(peer)[:64],
                suppressed=suppressed,
            )
        return _text(status, line)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Admission and the plain HTTP routes; None lets a WebSocket handshake on ``/ws`` proceed."""
        for name in ("Host", "Origin", "Authorization", "Upgrade"):
            if len(request.headers.get_all(name)) > 1:
                return self._refuse(
                    HTTPStatus.BAD_REQUEST, f"more than one {name} header", connection.remote_address
                )
        path, _, query = request.path.partition("?")
        host = request.headers.get("Host")
        peer = connection.remote_address
        if not self._host_allowed(host):
            return self._refuse(
                HTTPStatus.MISDIRECTED_REQUEST,
                "unknown Host: reach the device by its IP address or add the name to control.allowed_hosts",
                peer,
            )
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, host):
            return self._refuse(
                HTTPStatus.FORBIDDEN,
                "foreign Origin refused: only the device's own page may use the control API",
                peer,
            )
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        needs_token = upgrade or path in (WS_PATH, "/metrics")
        if needs_token and not self._authorized(connection, request, query):
            return self._refuse(
                HTTPStatus.UNAUTHORIZED, "token required: send Authorization: Bearer <control token>", peer
            )
        if upgrade:
            if path != WS_PATH:
                return _text(HTTPStatus.NOT_FOUND, f"the control API is at {WS_PATH}")
            if len(self._clients) >= self.settings.max_clients:
                return self._refuse(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "too many control clients: raise control.max_clients",
                    peer,
                )
            return None
        if path in self._static:
            body, ctype = self._static[path]
            return _response(HTTPStatus.OK, body, ctype)
        if path == "/schema.json":
            return _response(HTTPStatus.OK, self._schema, "application/json")
        if path == "/metrics" and self.metrics is not None:
            from voiced.control.metrics import CONTENT_TYPE  # noqa: PLC0415  (loaded with the metrics)

            return _response(HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE)
        if path == "/healthz":
            return _text(HTTPStatus.OK, "ok")
        return _text(HTTPStatus.NOT_FOUND, "not found: try / (the page), /ws, /metrics or /schema.json")

    # --- one client -----------------------------------------------------------------------------

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one WebSocket client: the snapshot, then events and command replies."""
        subscription = self.publisher.subscribe(self.settings.client_queue_events)
        self._clients.add(connection)
        tasks: list[asyncio.Task[Any]] = []
        try:
            try:
                snapshot = SnapshotEvent(status=self.target.status())
            except Exception as exc:
                log.error("control: the daemon's status failed", error=_brief(exc))
                await connection.close(1011, "status unavailable: see the daemon's log")
                return
            await connection.send(event_json(snapshot))
            tasks = [
                asyncio.create_task(self._send_events(connection, subscription)),
                asyncio.create_task(self._receive_commands(connection)),
                asyncio.create_task(subscription.dropped.wait()),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if subscription.dropped.is_set():
                tasks[0].cancel()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S + 1.0):
                        await connection.close(CLOSE_TOO_SLOW, "too slow: events dropped, reconnect")
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(connection)
            self.publisher.unsubscribe(subscription)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
                for task in tasks:
                    error = None if task.cancelled() else task.exception()
                    if error is not None and not isinstance(
                        error, ConnectionClosed | SubscriptionDroppedError
                    ):
                        log.error("control client failed", error=_brief(error))

    async def _send_events(self, connection: ServerConnection, subscription: Subscription) -> None:
        while True:
            text = await subscription.get()
            await connection.send(text)

    async def _receive_commands(self, connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                reply = await self.execute(message)
                await connection.send(reply.model_dump_json(exclude_none=True))

    async def execute(self, message: str | bytes) -> Reply:
        """Run one received command; the reply to send, never an exception."""
        try:
            command = parse_command(message)
        except CommandError as exc:
            return exc.reply
        try:
            async with asyncio.timeout(self.settings.command_timeout_s):
                result = await self._dispatch(command)
        except CommandRejectedError as exc:
            return error_reply("rejected", str(exc) or "refused", id=command.id, cmd=command.cmd)
        except TimeoutError:
            return error_reply(
                "timeout",
                f"{command.cmd} took longer than {self.settings.command_timeout_s} s",
                id=command.id,
                cmd=command.cmd,
            )
        except Exception as exc:
            suppressed = self._throttle.allow("command-failed")
            if suppressed is not None:
                log.error("control command failed", cmd=command.cmd, error=_brief(exc), suppressed=suppressed)
            return error_reply(
                "internal", f"{command.cmd} failed: see the daemon's log", id=command.id, cmd=command.cmd
            )
        return Reply(id=command.id, cmd=command.cmd, ok=True, result=result)

    async def _dispatch(self, command: Command) -> StatusSnapshot | DeviceList | DeviceChoice | None:
        target = self.target
        match command:
            case StatusCommand():
                return target.status()
            case TalkCommand(pressed=pressed):
                await target.talk(pressed)
            case InterruptCommand():
                await target.interrupt()
            case MuteCommand(muted=muted):
                await target.set_muted(muted)
            case VolumeCommand(volume_pct=volume_pct):
                await target.set_volume_pct(volume_pct)
            case TextCommand(text=text):
                await target.send_text(text)
            case AnnounceCommand(text=text):
                await target.announce(text)
            case DevicesCommand():
                return await target.list_devices()
            case SelectDeviceCommand(direction=direction, device=device):
                name = await target.select_device(direction, device)
                return DeviceChoice(direction=direction, device=name)
            case ReloadCommand():
                await target.reload()
        return None

    # --- lifetime ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen. Raises :class:`ControlUnavailableError` with one line when it cannot."""
        options: dict[str, Any] = {
            "process_request": self.process_request,
            "compression": None,
            "max_size": self.settings.max_message_bytes,
            "max_queue": 8,
            "close_timeout": CLOSE_TIMEOUT_S,
            "server_header": f"voiced/{__version__}",
        }
        socket_path = self.settings.unix_socket
        try:
            if socket_path is not None:
                _remove_stale_socket(socket_path)
                self._server = await unix_serve(self.handle, str(socket_path), **options)
                socket_path.chmod(self.settings.unix_socket_mode)
            else:
                self._server = await serve(self.handle, self.settings.host, self.settings.port, **options)
                self.port = next(iter(self._server.sockets)).getsockname()[1]
        except OSError as exc:
            where = socket_path or f"{self.settings.host}:{self.settings.port}"
            raise ControlUnavailableError(
                f"the control API cannot listen on {where}: {exc.strerror or exc}; "
                "set control.port (or control.enabled = false)"
            ) from None
        log.info("control API listening", url=self.url, token_required=self._token is not None)

    async def stop(self) -> None:
        """Close every client and stop listening."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        if self.settings.unix_socket is not None:
            _remove_stale_socket(self.settings.unix_socket)
        self._server = None


def _brief(error: BaseException) -> str:
    """An exception as one bounded log field."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:299] + "…"


def _remove_stale_socket(path: Path) -> None:
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


@contextlib.asynccontextmanager
async def serve_control(
    settings: ControlSettings,
    target: ControlTarget,
    publisher: EventPublisher,
    *,
    metrics: Metrics | None = None,
) -> AsyncIterator[ControlServer | None]:
    """Serve the control API, the kiosk page and the metrics while the block runs.

    Yields None when ``control.enabled`` is false. ``metrics`` (if given) is subscribed to
    ``publisher`` here and served at ``/metrics``. Raises :class:`~voiced.errors.ConfigError` when
    the token file cannot be read and :class:`ControlUnavailableError` when the address cannot be bound:
    log that line and run on without the API, or stop.
    """
    if not settings.enabled:
        yield None
        return
    try:
        token = settings.resolved_token()
    except OSError as exc:
        raise ConfigError(f"control.token_file: cannot read {settings.token_file}: {exc.strerror}") from None
    if token is not None:
        register_secret(token)
    elif settings.unix_socket is None and not is_loopback_host(settings.host):
        raise ConfigError(
            f"control.host = {settings.host!r} listens beyond this machine: set control.token_file first"
        )
    server = ControlServer(settings, target, publisher, metrics, token)
    if metrics is not None:
        publisher.add_listener(metrics.on_event)
    try:
        await server.start()
        yield server
    finally:
        if metrics is not None:
            publisher.remove_listener(metrics.on_event)
        await server.stop()
