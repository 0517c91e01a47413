"""The echo canceller in the running daemon (audio.echo.mode = "webrtc"): the mic path built with
the echo_cancel stage, its playback tap on every sink. Needs the conversation core's wiring."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.agent.harness import daemon_config, running_daemon
from tests.support.echo import Room, echo_of, replies
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.mic.echo import EchoReference


async def test_the_daemon_attaches_the_echo_reference_to_its_speaker() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("demo"))) as emu:
        config = daemon_config(emu, **{"audio.echo.mode": "webrtc"})
        source = MemorySource(np.zeros(16000, dtype=np.int16), after_end="silence")
        async with running_daemon(config, source) as harness:
            assert isinstance(harness.sink.tap, EchoReference)


async def test_a_reply_heard_through_the_room_does_not_interrupt_itself() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("demo"))) as emu:
        config = daemon_config(emu, **{"audio.echo.mode": "webrtc"})
        # The mic hears the echo of replies played at full volume, and nobody speaks.
        played = replies(3)
        mic = np.clip(echo_of(played, Room(delay_ms=80.0)), -32768, 32767).astype(np.int16)
        source = MemorySource(mic, after_end="silence")
        async with running_daemon(config, source) as harness:
            assert isinstance(harness.sink.tap, EchoReference)
            await asyncio.sleep(3.0)
            agent = harness.daemon.agent
            assert agent is not None and agent.counters.interrupts == 0
