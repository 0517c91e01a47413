#!/usr/bin/env python3
"""An LED that follows voiced's state and a push-to-talk button, through the local control API.

Wiring (BCM numbering, change with --led / --button): an LED with a 330 Ω resistor from GPIO 17 to
ground, a push button from GPIO 27 to ground (the internal pull-up is used). Runs as any user in the
``gpio`` group: no root, no signals to the daemon.

    python3 voiced_gpio.py                       # ws://127.0.0.1:8791/ws
    python3 voiced_gpio.py --no-gpio             # no hardware: LED changes printed, button from stdin

Needs ``websockets`` (installed with voiced) and, for the hardware, ``gpiozero`` (Raspberry Pi OS
ships it as python3-gpiozero). Without GPIO it says so and exits 0, unless --no-gpio is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

try:
    import gpiozero  # type: ignore[import-not-found,unused-ignore]
    import gpiozero.exc  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # not a Pi, or not installed: --no-gpio still works
    gpiozero = None

#: What the LED does in each state: steady, blinking (on_s, off_s) or off.
PATTERNS: dict[str, tuple[float, float] | bool] = {
    "sleeping": False,
    "woken": True,
    "listening": True,
    "thinking": (0.15, 0.15),
    "speaking": (0.6, 0.2),
    "muted": (0.05, 1.95),
    "reconnecting": (0.5, 0.5),
    "offline": (0.05, 0.95),
    "error": (0.1, 0.1),
}


class Led(Protocol):
    def show(self, state: str) -> None: ...


class GpioLed:
    """A real LED on a GPIO pin (gpiozero)."""

    def __init__(self, pin: int) -> None:
        assert gpiozero is not None
        self._led = gpiozero.LED(pin)

    def show(self, state: str) -> None:
        pattern = PATTERNS.get(state, False)
        if pattern is True:
            self._led.on()
        elif pattern is False:
            self._led.off()
        else:
            on_s, off_s = pattern
            self._led.blink(on_time=on_s, off_time=off_s, background=True)


class PrintedLed:
    """No hardware: print what the LED would do."""

    def show(self, state: str) -> None:
        pattern = PATTERNS.get(state, False)
        shown = "on" if pattern is True else "off" if pattern is False else "blink {}/{}".format(*pattern)
        print(f"led {shown} ({state})", flush=True)


async def send(ws: ClientConnection, **command: Any) -> None:
    await ws.send(json.dumps({"v": 1, **command}))


async def follow_events(ws: ClientConnection, led: Led) -> None:
    """Drive the LED from the snapshot and every state event; report failed commands."""
    async for message in ws:
        event = json.loads(message)
        if event["type"] == "snapshot":
            led.show(event["status"]["state"])
        elif event["type"] == "state":
            led.show(event["state"])
        elif event["type"] == "reply" and not event["ok"]:
            print(f"voiced refused {event.get('cmd')}: {event['error']['message']}", file=sys.stderr)


async def gpio_button(ws: ClientConnection, pin: int) -> None:
    """Push-to-talk on a GPIO button: gpiozero calls back on its own thread, hop onto the loop."""
    assert gpiozero is not None
    loop = asyncio.get_running_loop()
    presses: asyncio.Queue[bool] = asyncio.Queue(maxsize=16)

    def queue(pressed: bool) -> None:
        if not presses.full():
            presses.put_nowait(pressed)

    button = gpiozero.Button(pin, pull_up=True, bounce_time=0.03)
    button.when_pressed = lambda: loop.call_soon_threadsafe(queue, True)
    button.when_released = lambda: loop.call_soon_threadsafe(queue, False)
    while True:
        await send(ws, cmd="talk", pressed=await presses.get())


async def stdin_button(ws: ClientConnection) -> None:
    """Without hardware: type ``press`` / ``release`` (or ``mute`` / ``unmute``) and Enter."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)

    # A daemon thread: a blocked readline must not keep the program from exiting.
    threading.Thread(target=read, daemon=True).start()
    while True:
        word = (await lines.get()).strip().lower()
        if word in ("press", "release"):
            await send(ws, cmd="talk", pressed=word == "press")
        elif word in ("mute", "unmute"):
            await send(ws, cmd="mute", muted=word == "mute")


def gpio_available() -> str | None:
    """None when gpiozero can drive pins here, else why not."""
    if gpiozero is None:
        return "gpiozero is not installed (apt install python3-gpiozero)"
    try:
        gpiozero.Device.ensure_pin_factory()
    except gpiozero.exc.BadPinFactory:
        return "no GPIO on this machine"
    return None


async def run(args: argparse.Namespace) -> int:
    led: Led = PrintedLed() if args.no_gpio else GpioLed(args.led)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    while True:
        try:
            async with connect(args.url, additional_headers=headers) as ws:
                print(f"connected to {args.url}", file=sys.stderr, flush=True)
                button = stdin_button(ws) if args.no_gpio else gpio_button(ws, args.button)
                tasks = [asyncio.create_task(follow_events(ws, led)), asyncio.create_task(button)]
                try:
                    # Either ends when the connection does; a button press may be the one to notice.
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        except InvalidStatus as exc:
            status = exc.response.status_code
            print(f"voiced refused the connection ({status}): check --token and --url", file=sys.stderr)
            return 1
        except (OSError, ConnectionClosed):
            pass
        led.show("offline")
        if args.once:
            return 0
        await asyncio.sleep(2.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8791/ws")
    parser.add_argument(
        "--token",
        default=os.environ.get("VOICED_CONTROL_TOKEN"),
        help="the control token, when voiced listens beyond this machine",
    )
    parser.add_argument("--led", type=int, default=17, help="the LED's GPIO (BCM)")
    parser.add_argument("--button", type=int, default=27, help="the button's GPIO (BCM)")
    parser.add_argument("--no-gpio", action="store_true", help="print the LED, read the button from stdin")
    parser.add_argument("--once", action="store_true", help="exit when the connection ends")
    args = parser.parse_args()
    if not args.no_gpio and (why := gpio_available()) is not None:
        print(f"voiced_gpio: {why}; nothing to drive (use --no-gpio to try it without hardware)")
        return 0
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
