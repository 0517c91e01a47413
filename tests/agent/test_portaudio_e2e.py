"""The daemon on real PortAudio: a private headless PulseAudio with a virtual mic and speaker."""

from __future__ import annotations

import asyncio

import pytest

from tests.agent.harness import daemon_config, rms, utterance_pcm
from tests.support.pulse import PulseServer
from voiced.agent.daemon import Daemon
from voiced.agent.run import device_factories
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.portaudio import reinitialise
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator

pytestmark = [pytest.mark.pulse, pytest.mark.timeout(120)]


async def wait_turns(
    turns: list[TurnTimeline], count: int, task: asyncio.Task[int], timeout_s: float
) -> None:
    async with asyncio.timeout(timeout_s):
        while len(turns) < count:
            if task.done():
                raise AssertionError(f"daemon ended with {task.result()}")
            await asyncio.sleep(0.05)


async def test_conversation_through_portaudio_survives_a_sound_server_restart(pulse: PulseServer) -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("demo"))) as emu:
        config = daemon_config(emu)
        source, sink = device_factories(config)
        turns: list[TurnTimeline] = []
        daemon = Daemon(
            config,
            source,
            sink,
            install_signal_handlers=False,
            on_turn=turns.append,
            rescan_devices=reinitialise,
        )
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.ready.wait(), 20)
            pulse.say(utterance_pcm())
            await wait_turns(turns, 1, task, 40)
            await asyncio.sleep(0.5)
            first_reply = pulse.speaker_audio()

            # The sound server crashes and comes back: the daemon reopens both devices.
            pulse.kill()
            await asyncio.sleep(1.0)
            pulse.start()
            await asyncio.sleep(2.0)
            pulse.say(utterance_pcm())
            await wait_turns(turns, 2, task, 60)
            await asyncio.sleep(0.5)
            # The speaker capture accumulates across the restart: take only what came after.
            second_reply = pulse.speaker_audio()[first_reply.size :]
            connections = emu.connections_total
        finally:
            daemon.request_stop()
            exit_code = await asyncio.wait_for(task, 15)
    assert exit_code == 0
    assert turns[0].reply.startswith("It is") and turns[0].played_ms > 500
    assert rms(first_reply) > 200  # the reply was heard on the virtual speaker
    assert turns[1].played_ms > 500
    assert rms(second_reply) > 200
    assert connections == 1  # the WebSocket stayed up through the device loss


async def test_check_opens_the_real_devices(pulse: PulseServer) -> None:
    from voiced.agent.check import collect_checks, render

    async with serve_emulator(EmulatorSettings(port=0)) as emu:
        results = await collect_checks(daemon_config(emu), open_devices=True)
    table = render(results)
    assert all(r.ok for r in results), table
    assert "microphone opens and delivers audio" in table and "speaker opens" in table
