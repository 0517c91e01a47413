"""The handshake (protocol.md §1): path, bot_id, Bearer token, the 4100 variant, X-Tt-Logid."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.emulator.helpers import TOKEN, client, running
from voiced.protocol.events import ChatCreated, Error


async def test_accepts_the_token_and_sends_chat_created_with_logid_header() -> None:
    async with running() as emu, client(emu) as c:
        event = await c.recv()
        assert isinstance(event, ChatCreated)
        response = c.ws.response
        assert response is not None and response.headers.get("x-tt-logid")
        assert event.detail is not None and event.detail.logid == response.headers["x-tt-logid"]
        assert emu.active_connections == 1 and emu.connections_total == 1


@pytest.mark.parametrize("token", ["wrong", None])
async def test_bad_or_missing_token_is_http_401(token: str | None) -> None:
    async with running() as emu:
        with pytest.raises(InvalidStatus) as caught:
            async with client(emu, token=token):
                pass
        assert caught.value.response.status_code == 401
        assert b"4100" in caught.value.response.body
        assert caught.value.response.headers.get("x-tt-logid")
        assert emu.connections_total == 0


async def test_auth_failure_event_mode_sends_4100_then_closes() -> None:
    async with running(auth_failure="event") as emu, client(emu, token="wrong", strict=True) as c:
        error = await c.recv()
        assert isinstance(error, Error) and error.data.code == 4100
        with pytest.raises(ConnectionClosed):
            await c.recv()


async def test_missing_bot_id_and_wrong_path_are_refused_with_a_clear_body() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running() as emu:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{emu.url}/v1/chat", additional_headers=headers):
                pass
        assert caught.value.response.status_code == 400
        assert b"bot_id" in caught.value.response.body
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{emu.url}/v2/other?bot_id=1", additional_headers=headers):
                pass
        assert caught.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{emu.url}/v1/chat?bot_id=1&device_id=abc", additional_headers=headers):
                pass
        assert caught.value.response.status_code == 400


async def test_any_token_is_accepted_when_none_is_configured() -> None:
    async with running(token=None) as emu, client(emu, token="whatever") as c:
        assert isinstance(await c.recv(), ChatCreated)


async def test_refusal_spells_the_logid_header_as_the_node_sdk_expects() -> None:
    # Read the raw bytes: the Node SDK searches its raw headers for "X-Tt-Logid" case-sensitively,
    # and a second Content-Type would make the body's type ambiguous.
    async with running() as emu:
        host, port = emu.url.removeprefix("ws://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET /v1/chat?bot_id=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Authorization: Bearer wrong\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 401")
    assert len([line for line in lines if line.startswith("X-Tt-Logid: 02")]) == 1
    content_types = [line for line in lines if line.lower().startswith("content-type:")]
    assert content_types == ["Content-Type: application/json"]


async def test_accepted_handshake_carries_the_logid_too() -> None:
    async with running() as emu, client(emu) as c:
        response = c.ws.response
        assert response is not None
        assert [k for k, _ in response.headers.raw_items() if k.lower() == "x-tt-logid"] == ["X-Tt-Logid"]
