"""The kiosk page in a real browser against the real daemon and the emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.agent.harness import utterance_pcm

# Imported first: it skips this module, with the reason, where playwright is not installed.
from tests.control.browser import chromium, expect
from tests.control.live import running_device, silent_source
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(120)


def appends(emu: object) -> int:
    return sum(isinstance(r.event, ev.InputAudioBufferAppend) for r in emu.received)  # type: ignore[attr-defined]


async def test_the_page_drives_the_real_daemon(tmp_path: Path) -> None:
    overrides = {"reconnect.initial_backoff_s": 4.0, "reconnect.max_backoff_s": 4.0}
    async with (
        serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu,
        running_device(emu, silent_source(), **overrides) as device,
        chromium() as browser,
    ):
        source = device.harness.source
        page = await browser.new_page(viewport={"width": 800, "height": 480})
        await page.goto(device.server.url)
        await expect(page.locator("#state-label")).to_have_text("Ready")
        await expect(page.locator("#link")).to_have_text("Online")

        # A spoken turn: what was heard and the reply appear, with the reply's latency.
        source.append(utterance_pcm())
        captions = page.locator("#captions")
        heard = ["Testing, one, two, three."]
        await expect(captions.locator(".line.you")).to_have_text(heard, timeout=20_000)
        await expect(captions.locator(".line.bot")).to_have_text(heard, timeout=20_000)
        await expect(page.locator("#latency")).to_contain_text("ms", timeout=20_000)
        await expect(page.locator("#state-label")).to_have_text("Ready", timeout=20_000)
        await page.screenshot(path=str(tmp_path / "daemon-turn-800x480.png"))

        # Holding the button streams the microphone to the server; letting go ends the turn.
        talk = page.locator("#talk")
        box = await talk.bounding_box()
        assert box is not None
        sent = appends(emu)
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down()
        await asyncio.sleep(0.6)
        await page.mouse.up()
        await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferComplete), 5)
        held_appends = appends(emu) - sent
        await expect(page.locator("#state-label")).to_have_text("Ready", timeout=20_000)

        # Mute: speech is not sent.
        await page.locator("#mute").click()
        await expect(page.locator("#mute")).to_have_text("Unmute")
        await expect(page.locator("#state-label")).to_have_text("Muted")
        sent = appends(emu)
        source.append(utterance_pcm())
        await asyncio.sleep(2.5)
        muted_appends = appends(emu) - sent
        await page.locator("#mute").click()
        await expect(page.locator("#mute")).to_have_text("Mute")

        # The server drops the connection: the page says the device is reconnecting, then online.
        await emu.drop_all()
        await expect(page.locator("#state-label")).to_have_text("Reconnecting…")
        await expect(page.locator("body")).to_have_attribute("data-state", "reconnecting")
        await page.screenshot(path=str(tmp_path / "daemon-reconnecting-800x480.png"))
        await expect(page.locator("#link")).to_have_text("Online", timeout=15_000)
    assert held_appends >= 15  # about 0.6 s of 20 ms frames
    assert muted_appends == 0
