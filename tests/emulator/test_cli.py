"""``voiced emulator`` as a process: prints its URL, serves, exits 0 on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from tests.emulator.helpers import Client
from voiced.protocol.events import ChatCreated


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_cli_serves_until_signal(signum: signal.Signals) -> None:
    from websockets.asyncio.client import connect

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiced.emulator.cli", "--port", "0", "--token", "T", "--scenario", "echo",
        "--time-scale", "0.1", "--ping-interval-s", "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = ""
        async with asyncio.timeout(20):
            while not url:
                line = (await process.stdout.readline()).decode()
                assert line, "the emulator exited before printing its URL"
                if line.startswith("voiced emulator serving "):
                    url = line.split()[3]
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/v1/chat")
        async with connect(f"{url}?bot_id=1", additional_headers={"Authorization": "Bearer T"}) as ws:
            assert isinstance(await Client(ws).recv(), ChatCreated)
        process.send_signal(signum)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_reports_a_bad_scenario() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiced.emulator.cli", "--scenario", "/nonexistent/x.toml",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"x.toml" in stderr
