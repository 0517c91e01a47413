"""Opening the WebSocket to Coze, and telling fatal failures from ones a retry may fix."""

from __future__ import annotations

import contextlib
import email.utils
import inspect
import json
import math
import platform
import time
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from voiced import __version__
from voiced.config import CozeSettings, is_loopback_host
from voiced.errors import EXIT_NOPERM, ConfigError, FatalError, TransientError
from voiced.log import redact, register_secret, truncate_text

_SUPPORTS_PROXY = "proxy" in inspect.signature(connect.__init__).parameters
_REDIRECT_STATUSES = frozenset({300, 301, 302, 303, 307, 308})
#: HTTP statuses after which the server's ``Retry-After`` is honoured.
_RETRY_AFTER_STATUSES = frozenset({429, 503})
#: A server asking for a longer pause than this is capped: the device must come back some day.
MAX_RETRY_AFTER_S = 3600.0
# Server-supplied text (a Location, a logid) quoted in an error line is cut to this many characters.
_QUOTE_CHARS = 120


class _SameOriginConnect(connect):
    """websockets' ``connect`` that follows a redirect only to the same scheme, host and port.

    The stock client follows a cross-origin redirect with the same headers, so the Authorization
    header (the token) would go to whatever host the redirect names, and a plain ``ws://`` target
    would bypass the rule the configuration enforces on ``base_url``. A refused or malformed
    redirect becomes a :class:`TransientError` (a captive portal or a bad deployment may be fixed).
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        if not (isinstance(exc, InvalidStatus) and exc.response.status_code in _REDIRECT_STATUSES):
            return exc
        status = exc.response.status_code
        location = exc.response.headers.get("Location")
        if location is None:
            return TransientError(f"the server answered HTTP {status} with no Location header")
        shown = truncate_text(location, _QUOTE_CHARS)
        try:
            old = parse_uri(self.uri)
            new = parse_uri(urljoin(self.uri, location))
        except (InvalidURI, ValueError):
            return TransientError(
                f"the server redirected (HTTP {status}) to a malformed location {shown!r}; "
                "check coze.base_url or the network's proxy"
            )
        if _origin(new) != _origin(old):
            return TransientError(
                f"the server redirected (HTTP {status}) to another origin {shown!r}; voiced does not "
                "follow it (the token would go there): set coze.base_url to it if you trust that host"
            )
        return urljoin(self.uri, location)


def _origin(uri: WebSocketURI) -> tuple[bool, str, int]:
    return uri.secure, uri.host.lower(), uri.port


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (delta-seconds or an HTTP date), or None.

    The result is clamped to ``0 .. MAX_RETRY_AFTER_S``; anything unparsable or absent is None (the
    caller then uses its own backoff). ``now_s`` is the current wall-clock time (tests pin it).
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    seconds: float
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now_s is None else now_s)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def chat_url(coze: CozeSettings) -> str:
    """``<base_url>/v1/chat?bot_id=…`` with the optional workflow and device ids."""
    query = {"bot_id": coze.bot_id}
    if coze.workflow_id:
        query["workflow_id"] = coze.workflow_id
    if coze.device_id:
        query["device_id"] = coze.device_id
    return f"{coze.chat_url}?{urlencode(query)}"


def client_user_agent() -> str:
    """The ``X-Coze-Client-User-Agent`` header the official SDKs send (protocol.md §1)."""
    return json.dumps(
        {
            "version": __version__,
            "lang": "python",
            "lang_version": platform.python_version(),
            "os_name": "linux",
        },
        separators=(",", ":"),
    )


def server_explanation(body: bytes | bytearray | None) -> str:
    """What a refusing server said in its HTTP body, on one short line ("" when it said nothing).

    A Coze-style JSON body ``{"code": …, "msg": …}`` gives its ``msg`` (with the code); any other
    text is quoted with its whitespace collapsed. Always bounded and redacted: the body is the
    server's, and it ends up in a log line.
    """
    if not body:
        return ""
    text = body[: 16 * _QUOTE_CHARS].decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("msg"), str):
            code = parsed.get("code")
            text = f"{parsed['msg']} (code {code})" if isinstance(code, int) else parsed["msg"]
    text = " ".join(text.split())
    return redact(truncate_text(text, 2 * _QUOTE_CHARS))


async def open_connection(coze: CozeSettings) -> ClientConnection:
    """Connect and finish the handshake.

    Raises :class:`ConfigError` for an empty bot id or an unusable ``base_url``,
    :class:`FatalError` (77) when the token is missing or refused (HTTP 401/403), and
    :class:`TransientError` for everything a retry may fix, with ``retry_after_s`` set when a 429
    or 503 carried ``Retry-After``: the caller must wait at least that long before the next attempt.

    The caller owns the connection and must close it. TLS certificates are verified (the default
    SSL context) for ``wss://``; permessage-deflate is off because it doubles the CPU spent on
    base64 audio for no gain.
    """
    if coze.token is None or not coze.token.get_secret_value():
        raise FatalError(
            "no Coze token: set COZE_API_TOKEN, coze.token_file, or a systemd credential named coze-token",
            EXIT_NOPERM,
        )
    if not coze.bot_id:
        raise ConfigError("coze.bot_id is empty: set it to the id of your bot (the number in its URL)")
    url = chat_url(coze)
    try:
        # Checked here too, not only by the config model: an embedding program may build settings
        # by hand, and a port or host websockets cannot use must be a config error, not a crash.
        parse_uri(url)
    except (InvalidURI, ValueError):
        raise ConfigError(
            f"coze.base_url {truncate_text(coze.base_url, _QUOTE_CHARS)!r} is not a usable WebSocket "
            "URL: use wss://HOST or wss://HOST:PORT with a port of 1..65535"
        ) from None
    # websockets logs the Authorization header at debug level: whoever built this config (the CLI,
    # an embedding program, the tests' harness), the token is redacted from every log line.
    register_secret(coze.token.get_secret_value())
    kwargs: dict[str, Any] = {}
    host = urlsplit(coze.base_url).hostname or ""
    if _SUPPORTS_PROXY and is_loopback_host(host):
        kwargs["proxy"] = None
    try:
        return await _SameOriginConnect(
            url,
            additional_headers={
                "Authorization": f"Bearer {coze.token.get_secret_value()}",
                "X-Coze-Client-User-Agent": client_user_agent(),
            },
            user_agent_header=f"voiced/{__version__}",
            compression=None,
            open_timeout=coze.open_timeout_s,
            close_timeout=coze.close_timeout_s,
            ping_interval=coze.ping_interval_s,
            ping_timeout=coze.ping_timeout_s,
            max_size=coze.max_frame_bytes,
            **kwargs,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        logid = truncate_text(exc.response.headers.get("x-tt-logid", ""), _QUOTE_CHARS)
        suffix = f" (logid {logid})" if logid else ""
        said = server_explanation(exc.response.body)
        said = f": {said}" if said else ""
        if status in (401, 403):
            # The server's words tell an expired token from a bot the token may not use.
            raise FatalError(
                f"Coze refused the token with HTTP {status}{suffix}{said}; check the token and that it "
                f"may use bot {truncate_text(coze.bot_id, _QUOTE_CHARS)}",
                EXIT_NOPERM,
            ) from None
        retry_after_s = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after_s = parse_retry_after(exc.response.headers.get("Retry-After"))
        hint = f"; the server asks to retry in {retry_after_s:g} s" if retry_after_s is not None else ""
        raise TransientError(
            f"handshake failed with HTTP {status}{suffix}{said}{hint}", retry_after_s
        ) from None
    except (InvalidHandshake, InvalidURI) as exc:
        raise TransientError(f"handshake failed: {truncate_text(str(exc), 2 * _QUOTE_CHARS)}") from None
    except (OSError, TimeoutError) as exc:
        raise TransientError(f"cannot connect to {coze.base_url}: {exc}") from None
    except ValueError as exc:
        # websockets and asyncio raise ValueError for a host or port they cannot use (an IDNA
        # label too long, a redirect target websockets refuses): never a traceback.
        raise TransientError(f"cannot connect to {coze.base_url}: {truncate_text(str(exc), 200)}") from None
