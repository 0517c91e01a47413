"""The kiosk page in a real browser against the control server and a fake daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Imported first: it skips this module, with the reason, where playwright is not installed.
from tests.control.browser import Page, chromium, expect
from tests.control.fake_target import FakeTarget, running_server
from tests.control.net import lan_address
from voiced.control import (
    ConnectionEvent,
    ControlSettings,
    ReplyTextEvent,
    State,
    StateEvent,
    TurnEvent,
    TurnLatency,
    TurnSummary,
    UserTextEvent,
)
from voiced.control.publisher import EventPublisher

#: Set to a file name to keep the conversation screenshot there too (how the README's was made).
SCREENSHOT_ENV = "VOICED_KIOSK_SCREENSHOT"


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def calls_of(target: FakeTarget, name: str) -> list[Any]:
    return [arg for call, arg in target.calls if call == name]


def play_turn(publisher: EventPublisher, chat_id: str, heard: str, reply: str, first_audio_ms: float) -> None:
    publisher.publish(StateEvent(state=State.LISTENING))
    words = heard.split()
    for n in range(1, len(words) + 1):
        publisher.publish(UserTextEvent(text=" ".join(words[:n]), final=n == len(words)))
    publisher.publish(StateEvent(state=State.THINKING))
    for piece in reply.split(" "):
        publisher.publish(ReplyTextEvent(chat_id=chat_id, delta=piece + " "))
    publisher.publish(ReplyTextEvent(chat_id=chat_id, final=True))
    publisher.publish(StateEvent(state=State.SPEAKING))
    publisher.publish(
        TurnEvent(
            turn=TurnSummary(
                chat_id=chat_id,
                heard=heard,
                reply=reply,
                latency_ms=TurnLatency(speech_end_to_first_sample_ms=first_audio_ms),
            )
        )
    )


async def test_the_page_shows_the_conversation_and_drives_the_device(tmp_path: Path) -> None:
    async with running_server() as (server, target, publisher), chromium() as browser:
        page: Page = await browser.new_page(viewport={"width": 800, "height": 480})
        await page.goto(server.url)
        await expect(page.locator("#state-label")).to_have_text("Ready")
        await expect(page.locator("#link")).to_have_text("Online")
        await expect(page.locator("#volume-value")).to_have_text("80")

        # A turn streams in: what the user said, then the reply, then its latency.
        play_turn(publisher, "c1", "what time is it", "It is ten past three.", 642.0)
        captions = page.locator("#captions")
        await expect(captions.locator(".line.you")).to_have_text(["what time is it"])
        await expect(captions.locator(".line.bot")).to_have_text(["It is ten past three."])
        await expect(page.locator("#state-label")).to_have_text("Speaking")
        await expect(page.locator("#latency")).to_have_text("last reply after 642 ms")
        reply = "Sunny, 21 degrees, a light breeze from the west."
        play_turn(publisher, "c2", "and the weather", reply, 598.0)
        publisher.publish(StateEvent(state=State.SLEEPING))
        await expect(captions.locator(".line.bot")).to_have_count(2)
        await page.screenshot(path=str(tmp_path / "conversation-800x480.png"))
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(tmp_path / "conversation-800x480.png", os.environ[SCREENSHOT_ENV])

        # Holding the button with the mouse: pressed while held, released on let go.
        talk = page.locator("#talk")
        box = await talk.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down()
        await until(lambda: calls_of(target, "talk") == [True])
        await expect(talk).to_have_attribute("aria-pressed", "true")
        await asyncio.sleep(0.2)
        assert calls_of(target, "talk") == [True]
        await page.mouse.up()
        await until(lambda: calls_of(target, "talk") == [True, False])
        await expect(talk).to_have_text("Hold to talk")

        # Mute: the command reaches the device and the device's answer updates the button.
        await page.locator("#mute").click()
        await until(lambda: calls_of(target, "set_muted") == [True])
        await expect(page.locator("#mute")).to_have_text("Unmute")

        # Volume: the slider, moved with the keyboard as a user would.
        slider = page.locator("#volume")
        await slider.focus()
        await page.keyboard.press("Home")
        for _ in range(30):
            await page.keyboard.press("ArrowRight")
        await until(lambda: calls_of(target, "set_volume_pct")[-1:] == [30])
        await expect(page.locator("#volume-value")).to_have_text("30")

        # A typed message.
        await page.locator("#text").fill("tell me a joke")
        await page.locator("#text").press("Enter")
        await until(lambda: calls_of(target, "send_text") == ["tell me a joke"])

        # Devices: opening the panel lists them, choosing one switches.
        await page.locator("#devices summary").click()
        output = page.locator("#output-device")
        await expect(output.locator("option")).to_have_count(3)
        await output.select_option(label="USB Speaker")
        await until(lambda: calls_of(target, "select_device") == [("output", "4")])
        await expect(page.locator("#notice")).to_be_hidden()

        # The server connection drops: the page says so.
        publisher.publish(ConnectionEvent(up=False, attempt=1, retry_in_s=1.5, hint="connection lost"))
        publisher.publish(StateEvent(state=State.RECONNECTING, hint="connection lost: retrying"))
        await expect(page.locator("#state-label")).to_have_text("Reconnecting…")
        await expect(page.locator("#link")).to_have_text("Reconnecting in 1.5 s")
        await expect(page.locator("body")).to_have_attribute("data-state", "reconnecting")
        await page.screenshot(path=str(tmp_path / "reconnecting-800x480.png"))
        publisher.publish(ConnectionEvent(up=True))
        await expect(page.locator("#link")).to_have_text("Online")


async def test_touch_hold_to_talk_on_a_phone(tmp_path: Path) -> None:
    async with running_server() as (server, target, _publisher), chromium() as browser:
        context = await browser.new_context(
            viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, device_scale_factor=2
        )
        page = await context.new_page()
        await page.goto(server.url)
        await expect(page.locator("#state-label")).to_have_text("Ready")
        talk = page.locator("#talk")
        box = await talk.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] >= 64  # a thumb-sized target
        await page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await until(lambda: calls_of(target, "talk") == [True, False])
        await page.screenshot(path=str(tmp_path / "phone.png"))
        await context.close()


async def test_the_page_notices_when_the_device_goes_away(tmp_path: Path) -> None:
    async with chromium() as browser:
        async with running_server() as (server, _target, _publisher):
            page = await browser.new_page(viewport={"width": 800, "height": 480})
            await page.goto(server.url)
            await expect(page.locator("#state-label")).to_have_text("Ready")
        await expect(page.locator("#link")).to_have_text("No link to the device")
        await expect(page.locator("#state-label")).to_have_text("Offline")
        await expect(page.locator("#talk")).to_be_disabled()


async def test_the_page_brings_its_token_from_another_machine() -> None:
    host = lan_address()
    settings = ControlSettings(host="0.0.0.0", port=0, token="kiosk-token-0123")
    async with running_server(settings) as (server, target, _publisher), chromium() as browser:
        page = await browser.new_page(viewport={"width": 800, "height": 480})
        await page.goto(f"http://{host}:{server.port}/")
        await expect(page.locator("#link")).to_have_text("No link to the device")
        await page.goto(f"http://{host}:{server.port}/?token=kiosk-token-0123")
        await expect(page.locator("#state-label")).to_have_text("Ready")
        await page.locator("#mute").click()
        await until(lambda: calls_of(target, "set_muted") == [True])
