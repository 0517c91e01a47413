"""Opening the WebSocket to Coze, and telling fatal failures from ones a retry may fix."""

from __future__ import annotations

import inspect
import json
import platform
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from voiced import __version__
from voiced.config import CozeSettings, is_loopback_host
from voiced.errors import EXIT_NOPERM, FatalError, TransientError
from voiced.log import register_secret

_SUPPORTS_PROXY = "proxy" in inspect.signature(connect.__init__).parameters


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


async def open_connection(coze: CozeSettings) -> ClientConnection:
    """Connect and finish the handshake; raises :class:`FatalError` on 401/403, else :class:`TransientError`.

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
        raise FatalError(
            "coze.bot_id is empty: set it to the id of your bot (the number in its URL)", EXIT_NOPERM
        )
    # websockets logs the Authorization header at debug level: whoever built this config (the CLI,
    # an embedding program, the tests' harness), the token is redacted from every log line.
    register_secret(coze.token.get_secret_value())
    kwargs: dict[str, Any] = {}
    host = urlsplit(coze.base_url).hostname or ""
    if _SUPPORTS_PROXY and is_loopback_host(host):
        kwargs["proxy"] = None
    try:
        return await connect(
            chat_url(coze),
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
        logid = exc.response.headers.get("x-tt-logid", "")
        suffix = f" (logid {logid})" if logid else ""
        if status in (401, 403):
            raise FatalError(
                f"Coze refused the token with HTTP {status}{suffix}: check the token and that it may use "
                f"bot {coze.bot_id}",
                EXIT_NOPERM,
            ) from None
        raise TransientError(f"handshake failed with HTTP {status}{suffix}") from None
    except InvalidHandshake as exc:
        raise TransientError(f"handshake failed: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise TransientError(f"cannot connect to {coze.base_url}: {exc}") from None
