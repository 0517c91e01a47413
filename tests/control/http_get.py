"""A plain HTTP GET over a real socket, for the routes beside the WebSocket."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


def _get(url: str, headers: dict[str, str]) -> HttpReply:
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return HttpReply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, dict(error.headers.items()), error.read())


async def http_get(url: str, headers: dict[str, str] | None = None) -> HttpReply:
    """GET ``url`` without blocking the loop the server runs on."""
    return await asyncio.to_thread(_get, url, headers or {})
