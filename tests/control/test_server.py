"""The control API over a real loopback socket, against a fake daemon."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.control.fake_target import FakeTarget, running_server
from voiced.config import load_config
from voiced.control import (
    ConnectionEvent,
    ControlSettings,
    EventPublisher,
    ReplyTextEvent,
    State,
    StateEvent,
    StatusSnapshot,
    TurnEvent,
    TurnLatency,
    TurnSummary,
    UserTextEvent,
    serve_control,
)
from voiced.control.messages import Event
from voiced.control.server import ControlServer, ControlUnavailableError
from voiced.errors import EXIT_CONFIG, ConfigError


def ws_url(server: ControlServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def recv_json(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        message = await ws.recv()
    data = json.loads(message)
    assert isinstance(data, dict)
    return data


async def command(ws: ClientConnection, payload: dict[str, Any] | str) -> dict[str, Any]:
    """Send one command and return its reply, skipping events that arrive meanwhile."""
    await ws.send(payload if isinstance(payload, str) else json.dumps(payload))
    while True:
        message = await recv_json(ws)
        if message.get("type") == "reply":
            return message


async def test_snapshot_on_connect_then_events_in_order() -> None:
    async with running_server() as (server, target, publisher):
        target.state = State.SPEAKING
        async with connect(ws_url(server)) as ws:
            snapshot = await recv_json(ws)
            assert snapshot == {
                "v": 1,
                "type": "snapshot",
                "status": {
                    "state": "speaking",
                    "muted": False,
                    "volume_pct": 80,
                    "connected": True,
                    "input_device": "pulse",
                    "output_device": "pulse",
                    "version": snapshot["status"]["version"],
                },
            }
            turn = TurnSummary(
                chat_id="c1",
                heard="what time is it",
                reply="Three.",
                latency_ms=TurnLatency(speech_end_to_first_sample_ms=612.5),
            )
            sequence: list[Event] = [
                StateEvent(state=State.LISTENING),
                UserTextEvent(text="what", final=False),
                UserTextEvent(text="what time is it", final=True),
                StateEvent(state=State.THINKING),
                ReplyTextEvent(chat_id="c1", delta="Thr"),
                ReplyTextEvent(chat_id="c1", delta="ee."),
                StateEvent(state=State.SPEAKING),
                TurnEvent(turn=turn),
                ConnectionEvent(up=False, attempt=1, retry_in_s=0.5, hint="server closed 1006"),
            ]
            for event in sequence:
                publisher.publish(event)
            received = [await recv_json(ws) for _ in sequence]
        assert [r["type"] for r in received] == [e.type for e in sequence]
        assert received[2] == {"v": 1, "type": "user_text", "text": "what time is it", "final": True}
        assert "".join(r["delta"] for r in received if r["type"] == "reply_text") == "Three."
        assert received[7]["turn"]["latency_ms"]["speech_end_to_first_sample_ms"] == 612.5
        assert received[8]["retry_in_s"] == 0.5


async def test_every_command_reaches_the_target_and_gets_a_reply() -> None:
    async with running_server() as (server, target, _publisher):
        async with connect(ws_url(server)) as ws:
            await recv_json(ws)
            replies = [
                await command(ws, {"v": 1, "id": 1, "cmd": "talk", "pressed": True}),
                await command(ws, {"v": 1, "id": 2, "cmd": "talk", "pressed": False}),
                await command(ws, {"v": 1, "id": 3, "cmd": "interrupt"}),
                await command(ws, {"v": 1, "id": 4, "cmd": "mute", "muted": True}),
                await command(ws, {"v": 1, "id": 5, "cmd": "volume", "volume_pct": 35}),
                await command(ws, {"v": 1, "id": 6, "cmd": "text", "text": "tell me a joke"}),
                await command(ws, {"v": 1, "id": 7, "cmd": "announce", "text": "Dinner is ready"}),
                await command(ws, {"v": 1, "id": 8, "cmd": "devices"}),
                await command(
                    ws, {"v": 1, "id": "sel", "cmd": "select_device", "direction": "output", "device": "usb"}
                ),
                await command(ws, {"v": 1, "id": 10, "cmd": "reload"}),
                await command(ws, {"cmd": "status"}),
            ]
        assert target.calls == [
            ("talk", True),
            ("talk", False),
            ("interrupt", None),
            ("set_muted", True),
            ("set_volume_pct", 35),
            ("send_text", "tell me a joke"),
            ("announce", "Dinner is ready"),
            ("list_devices", None),
            ("select_device", ("output", "usb")),
            ("reload", None),
        ]
        assert all(r["ok"] for r in replies), replies
        assert [r.get("id") for r in replies[:10]] == [1, 2, 3, 4, 5, 6, 7, 8, "sel", 10]
        assert [d["name"] for d in replies[7]["result"]["output"]] == ["pulse", "USB Speaker"]
        assert replies[8]["result"] == {"direction": "output", "device": "USB Speaker"}
        status = replies[10]["result"]
        assert status["muted"] is True and status["volume_pct"] == 35


async def test_a_command_is_followed_by_the_event_the_target_publishes() -> None:
    async with running_server() as (server, _target, _publisher):
        async with connect(ws_url(server)) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"v": 1, "id": 1, "cmd": "volume", "volume_pct": 10}))
            first, second = await recv_json(ws), await recv_json(ws)
        kinds = {first["type"], second["type"]}
        assert kinds == {"controls", "reply"}
        controls = first if first["type"] == "controls" else second
        assert controls == {"v": 1, "type": "controls", "muted": False, "volume_pct": 10}


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ("not json", "bad_json", "not JSON"),
        ("[1, 2]", "bad_json", "JSON object"),
        ('{"v": 1, "cmd": "launch_rockets", "id": 9}', "bad_command", "unknown command 'launch_rockets'"),
        ('{"v": 1}', "bad_command", "unknown command None"),
        ('{"v": 2, "cmd": "status"}', "unsupported_version", "version 1"),
        ('{"v": 1, "cmd": "volume", "volume_pct": 250}', "bad_command", "volume_pct"),
        ('{"v": 1, "cmd": "talk"}', "bad_command", "pressed"),
        ('{"v": 1, "cmd": "mute", "muted": true, "extra": 1}', "bad_command", "extra"),
        ('{"v": 1, "cmd": "announce", "text": "' + "é" * 600 + '"}', "bad_command", "1024 bytes"),
        (
            '{"v": 1, "cmd": "select_device", "direction": "output", "device": "hdmi"}',
            "rejected",
            "no output device matches 'hdmi'",
        ),
    ],
)
async def test_bad_commands_get_an_error_reply_and_the_connection_lives(
    payload: str, code: str, words: str
) -> None:
    async with running_server() as (server, target, _publisher):
        async with connect(ws_url(server)) as ws:
            await recv_json(ws)
            reply = await command(ws, payload)
            assert reply["ok"] is False
            assert reply["error"]["code"] == code
            assert words in reply["error"]["message"]
            assert "\n" not in reply["error"]["message"]
            # The same connection still works.
            assert (await command(ws, {"v": 1, "cmd": "interrupt"}))["ok"] is True
        assert target.calls[-1] == ("interrupt", None)


async def test_a_failing_or_slow_target_gets_internal_and_timeout_replies() -> None:
    settings = ControlSettings(port=0, command_timeout_s=0.2)
    async with running_server(settings) as (server, target, _publisher):
        target.fail_interrupt = True
        target.reload_delay_s = 5.0
        async with connect(ws_url(server)) as ws:
            await recv_json(ws)
            failed = await command(ws, {"v": 1, "id": 1, "cmd": "interrupt"})
            slow = await command(ws, {"v": 1, "id": 2, "cmd": "reload"})
            status = await command(ws, {"v": 1, "id": 3, "cmd": "status"})
        assert failed["error"] == {"code": "internal", "message": "interrupt failed: see the daemon's log"}
        assert slow["error"]["code"] == "timeout"
        assert status["ok"] is True


async def test_an_oversized_message_closes_only_that_client() -> None:
    settings = ControlSettings(port=0, max_message_bytes=1024)
    async with (
        running_server(settings) as (server, _target, _publisher),
        connect(ws_url(server)) as big,
        connect(ws_url(server)) as ok,
    ):
        await recv_json(big)
        await recv_json(ok)
        await big.send(json.dumps({"v": 1, "cmd": "text", "text": "x" * 5000}))
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(big)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert (await command(ok, {"v": 1, "cmd": "status"}))["ok"] is True


def test_a_network_bind_without_a_token_is_refused_by_the_config(tmp_path: Any) -> None:
    path = tmp_path / "voiced.toml"
    path.write_text('[control]\nhost = "0.0.0.0"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert refused.value.exit_code == EXIT_CONFIG
    assert "control.host = '0.0.0.0' listens beyond this machine" in message
    assert "control.token_file" in message
    path.write_text('[control]\nhost = "0.0.0.0"\ntoken = "s3cret-control"\n', encoding="utf-8")
    config = load_config(path, environ={})
    assert "s3cret-control" not in repr(config.control)


async def test_serve_control_refuses_a_network_bind_without_a_token() -> None:
    # A settings object built without validation (as code might) is still refused before binding.
    settings = ControlSettings.model_construct(**{**ControlSettings(port=0).model_dump(), "host": "0.0.0.0"})
    publisher = EventPublisher()
    with pytest.raises(ConfigError, match="listens beyond this machine"):
        async with serve_control(settings, FakeTarget(publisher), publisher):
            pass


async def test_a_taken_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        publisher = EventPublisher()
        with pytest.raises(ControlUnavailableError, match=f"cannot listen on 127.0.0.1:{port}.*control.port"):
            async with serve_control(ControlSettings(port=port), FakeTarget(publisher), publisher):
                pass


async def test_disabled_serves_nothing() -> None:
    publisher = EventPublisher()
    async with serve_control(ControlSettings(enabled=False), FakeTarget(publisher), publisher) as server:
        assert server is None


async def test_a_foreign_origin_is_refused_and_the_own_origin_allowed() -> None:
    async with running_server() as (server, target, _publisher):
        for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(server), origin=origin):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403
        own = f"http://127.0.0.1:{server.port}"
        async with connect(ws_url(server), origin=own) as ws:  # type: ignore[arg-type]
            assert (await recv_json(ws))["type"] == "snapshot"
            assert (await command(ws, {"v": 1, "cmd": "talk", "pressed": True}))["ok"] is True
        assert target.calls == [("talk", True)]


async def test_dns_rebinding_is_refused_by_host() -> None:
    async with running_server() as (server, _target, _publisher):
        # A page on attacker.example rebinding its name to 127.0.0.1: same Origin and Host, not an IP.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://attacker.example:{server.port}/ws",
                host="127.0.0.1",
                origin=f"http://attacker.example:{server.port}",  # type: ignore[arg-type]
            ):
                pass
        assert refused.value.response.status_code == 421
        # Two Host headers are refused too, not an error inside the server.
        with pytest.raises(InvalidStatus) as doubled:
            async with connect(ws_url(server), additional_headers={"Host": "attacker.example"}):
                pass
        assert doubled.value.response.status_code == 400
    settings = ControlSettings(port=0, allowed_hosts=["speaker.local"])
    async with (
        running_server(settings) as (server, _target, _publisher),
        connect(
            f"ws://speaker.local:{server.port}/ws",
            host="127.0.0.1",
            origin=f"http://speaker.local:{server.port}",  # type: ignore[arg-type]
        ) as ws,
    ):
        assert (await recv_json(ws))["type"] == "snapshot"


async def test_a_client_that_never_reads_is_dropped_without_slowing_publish() -> None:
    settings = ControlSettings(port=0, client_queue_events=64)
    async with running_server(settings) as (server, _target, publisher):
        # A raw client with a tiny receive window that completes the handshake and then never reads.
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port or 0))
        stalled.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with connect(ws_url(server)) as healthy:
            await recv_json(healthy)
            while publisher.subscriber_count < 2:
                await asyncio.sleep(0.01)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            text = "x" * 3900
            worst_publish_s = 0.0
            received = 0
            for i in range(3000):
                started = time.perf_counter()
                publisher.publish(ReplyTextEvent(chat_id=str(i), delta=text))
                worst_publish_s = max(worst_publish_s, time.perf_counter() - started)
                if i % 50 == 0:
                    # Let the server write; the healthy client keeps up.
                    await asyncio.sleep(0)
                    while True:
                        try:
                            async with asyncio.timeout(0.001):
                                await healthy.recv()
                            received += 1
                        except TimeoutError:
                            break
            async with asyncio.timeout(10):
                while publisher.subscriber_count > 1 or server.clients > 1:
                    await asyncio.sleep(0.05)
            assert publisher.dropped_subscribers == 1
            # The healthy client is still served.
            publisher.publish(StateEvent(state=State.LISTENING))
            while True:
                event = await recv_json(healthy)
                if event["type"] == "state":
                    break
            rss_growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        stalled.close()
        assert worst_publish_s < 0.05, f"publish took {worst_publish_s * 1000:.1f} ms"
        # 3000 events of ~4 KB went out (12 MB); the stalled client's share was never kept.
        assert rss_growth_kb < 40_000, f"{rss_growth_kb} KB"


async def test_unix_socket(tmp_path: Any) -> None:
    path = tmp_path / "control.sock"
    settings = ControlSettings(unix_socket=path, unix_socket_mode=0o600)
    async with running_server(settings) as (server, target, _publisher):
        assert server.url == f"unix:{path}"
        assert os.stat(path).st_mode & 0o777 == 0o600
        from websockets.asyncio.client import unix_connect

        async with unix_connect(str(path), uri="ws://localhost/ws") as ws:
            assert (await recv_json(ws))["type"] == "snapshot"
            assert (await command(ws, {"v": 1, "cmd": "mute", "muted": True}))["ok"] is True
        assert target.calls == [("set_muted", True)]
    assert not path.exists()


class BrokenStatusTarget(FakeTarget):
    """A daemon whose status() fails until ``healthy`` is set."""

    healthy = False

    def status(self) -> StatusSnapshot:
        if not self.healthy:
            raise RuntimeError("state table corrupt")
        return super().status()


async def test_a_failing_status_or_listener_closes_one_client_not_the_server() -> None:
    publisher = EventPublisher()
    target = BrokenStatusTarget(publisher)

    def broken_listener(event: Event) -> None:
        raise ValueError("listener bug")

    publisher.add_listener(broken_listener)
    async with serve_control(ControlSettings(port=0), target, publisher) as server:
        assert server is not None
        async with connect(ws_url(server)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await recv_json(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        target.healthy = True
        async with connect(ws_url(server)) as ws:
            assert (await recv_json(ws))["type"] == "snapshot"
            publisher.publish(StateEvent(state=State.THINKING))  # the broken listener does not stop it
            assert (await recv_json(ws))["state"] == "thinking"
