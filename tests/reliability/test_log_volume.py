"""What the daemon logs under floods and silent failures: bounded volume, nothing unmentioned.

Against the real daemon and the emulator over loopback: thousands of short chats cost a bounded
number of turn lines; a turn the server never answers is logged; a speaker that fails on every write
is reopened with growing backoff, not in a hot loop; reply audio that overflows the jitter buffer is
logged, rate-limited.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.agent.harness import BOT_ID, TOKEN, daemon_config, running_daemon, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from tests.reliability.hostile_server import HostileServer, serve_hostile
from voiced.agent.daemon import Daemon
from voiced.config import load_config
from voiced.devices.base import AudioSink, AudioSource
from voiced.devices.memory import MemorySource
from voiced.devices.wav import WavSink
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.log import configure

pytestmark = pytest.mark.timeout(90)

CHATS = 11_000


def _event(event_type: str, data: Mapping[str, object]) -> str:
    return json.dumps({"id": "flood", "event_type": event_type, "data": data, "detail": {"logid": "flood"}})


async def test_eleven_thousand_short_chats_write_a_bounded_number_of_turn_lines(logs: CapturedLogs) -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    configure("info", "json", stream=logs.stream)
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm()[:1600], paced=True, after_end="silence")
        async with running_daemon(daemon_config(emu), source) as h:
            agent = h.daemon.agent
            assert agent is not None
            started_s = time.monotonic()
            for i in range(CHATS):
                chat = {"id": f"flood-{i}", "conversation_id": "c", "bot_id": "b", "status": "created"}
                await emu.send_raw_to_all(_event("conversation.chat.created", chat))
                await emu.send_raw_to_all(
                    _event("conversation.chat.completed", chat | {"status": "completed"})
                )
            async with asyncio.timeout(60):
                while agent.counters.turns < CHATS:
                    assert not h.task.done()
                    await asyncio.sleep(0.05)
            flood_s = time.monotonic() - started_s
    turn_lines = logs.with_event("turn")
    turn_lines = [r for r in turn_lines if r.get("event") == "turn"]
    # A burst of 20, then one line per 10 s window carrying the folded count.
    assert len(turn_lines) <= 20 + int(flood_s / 10) + 2, (len(turn_lines), flood_s)
    assert len(logs.text) < 200_000, f"{len(logs.text)} characters of log for {CHATS} chats"
    folded = [r for r in turn_lines if isinstance(r.get("occurrences"), int)]
    if flood_s > 10:
        assert folded, "a later window must say how many turn lines it folded"


async def test_a_turn_the_server_never_answers_is_logged(logs: CapturedLogs) -> None:
    # The hostile server accepts the session, then never answers anything the user says.
    configure("info", "json", stream=logs.stream)
    async with serve_hostile(HostileServer("accept")) as server:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        config = load_config(
            None,
            environ={},
            overrides={
                "coze.base_url": server.url,
                "coze.bot_id": BOT_ID,
                "coze.token": TOKEN,
                "listen.unanswered_timeout_s": 1.0,
            },
        )
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None
            async with asyncio.timeout(30):
                while agent.counters.unanswered_turns < 1:
                    assert not h.task.done()
                    await asyncio.sleep(0.05)
    (line,) = logs.with_event("the bot did not answer the turn")
    assert line["level"] == "warning" and line["waited_s"] == 1.0


async def test_a_speaker_that_fails_every_write_is_reopened_with_growing_backoff(
    logs: CapturedLogs, tmp_path: Path
) -> None:
    """A WAV speaker on /dev/full raises DeviceLost on its first block, every time it is reopened."""
    configure("info", "json", stream=logs.stream)
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        config = daemon_config(emu, **{"reconnect.device_retry_s": 0.2})

        async def source_factory() -> AudioSource:
            await source.start()
            return source

        async def sink_factory(rate_hz: int) -> AudioSink:
            sink = WavSink("/dev/full", rate_hz)
            await sink.start()
            return sink

        daemon = Daemon(config, source_factory, sink_factory, install_signal_handlers=False)
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(6.0)
        alive = not task.done()
        reopens = daemon.device_reopens
        daemon.request_stop()
        code = await asyncio.wait_for(task, 15.0)
    assert alive and code == 0
    reopened = logs.with_event("audio devices reopened")
    # Backoff from 0.2 s doubling up to 30 s: a handful in 6 s, never dozens (43 in 10 s before).
    assert 2 <= reopens <= 10, reopens
    assert len(reopened) == reopens
    delays = [float(str(r["after_s"])) for r in reopened]
    assert max(delays) > 4 * 0.2 / 4, delays
    lost = logs.with_event("audio device lost")
    assert lost and "/dev/full" in str(lost[0]["error"])


async def test_reply_audio_overflow_is_logged_and_rate_limited(logs: CapturedLogs) -> None:
    # The emulator speaks ten times faster than real time into a 300 ms jitter buffer.
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0, time_scale=0.1)
    configure("info", "json", stream=logs.stream)
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        config = daemon_config(emu, **{"audio.jitter.memory_cap_ms": 300.0})
        async with running_daemon(config, source) as h:
            playout = h.daemon.playout
            assert playout is not None
            await h.next_turn()
            await asyncio.sleep(0.5)
            overflows = playout.stats().jitter.overflows
    lines = logs.with_event("reply audio arrived faster than it plays")
    assert overflows > 3, overflows
    assert 1 <= len(lines) <= 3, [line.get("overflows") for line in lines]
    assert lines[0]["level"] == "warning" and int(str(lines[0]["dropped_ms"])) > 0
