"""The GPIO example as a real process against the control server: the LED follows, the button talks."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.control.fake_target import running_server
from voiced.control import State, StateEvent

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gpio" / "voiced_gpio.py"


async def read_line(stream: asyncio.StreamReader, timeout_s: float = 10.0) -> str:
    async with asyncio.timeout(timeout_s):
        return (await stream.readline()).decode().strip()


async def test_the_led_follows_the_state_and_the_button_talks() -> None:
    async with running_server() as (server, target, publisher):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            "--no-gpio",
            "--once",
            "--url",
            f"ws://127.0.0.1:{server.port}/ws",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdin is not None
        try:
            assert await read_line(proc.stdout) == "led off (sleeping)"  # from the snapshot
            publisher.publish(StateEvent(state=State.LISTENING))
            assert await read_line(proc.stdout) == "led on (listening)"
            publisher.publish(StateEvent(state=State.THINKING))
            assert await read_line(proc.stdout) == "led blink 0.15/0.15 (thinking)"
            proc.stdin.write(b"press\n")
            await proc.stdin.drain()
            async with asyncio.timeout(10):
                while ("talk", True) not in target.calls:
                    await asyncio.sleep(0.02)
            proc.stdin.write(b"release\nmute\n")
            await proc.stdin.drain()
            async with asyncio.timeout(10):
                while ("set_muted", True) not in target.calls:
                    await asyncio.sleep(0.02)
        finally:
            proc.stdin.close()
        assert target.calls == [("talk", True), ("talk", False), ("set_muted", True)]
    # The server went away: the example shows offline and, with --once, exits.
    assert await read_line(proc.stdout) == "led blink 0.05/0.95 (offline)"
    async with asyncio.timeout(10):
        assert await proc.wait() == 0


@pytest.mark.skipif(importlib.util.find_spec("gpiozero") is not None, reason="gpiozero is installed here")
async def test_without_gpio_it_says_so_and_exits_cleanly() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await proc.communicate()
    assert proc.returncode == 0
    assert b"nothing to drive (use --no-gpio" in output
