"""A control API listening beyond loopback: clients on other machines need the token."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.control.fake_target import running_server
from tests.control.http_get import http_get
from tests.control.net import lan_address
from voiced.control import ControlSettings, Metrics

TOKEN = "ctl-0123456789abcdef"


async def test_remote_clients_need_the_token_and_local_ones_do_not() -> None:
    host = lan_address()
    settings = ControlSettings(host="0.0.0.0", port=0, token=TOKEN)
    async with running_server(settings, metrics=Metrics()) as (server, target, _publisher):
        remote = f"ws://{host}:{server.port}/ws"
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(remote, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 401
            assert b"token required" in refused.value.response.body
        async with connect(remote, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
        async with connect(remote + f"?token={TOKEN}") as ws:
            await ws.recv()
            await ws.send(json.dumps({"v": 1, "cmd": "talk", "pressed": True}))
            assert json.loads(await ws.recv())["ok"] is True
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
        base = f"http://{host}:{server.port}"
        assert (await http_get(base + "/metrics")).status == 401
        assert (await http_get(base + "/metrics", {"Authorization": f"Bearer {TOKEN}"})).status == 200
        assert (await http_get(base + "/")).status == 200  # the page itself holds nothing secret
        assert target.calls == [("talk", True)]
