"""The sound server crashes and comes back while the daemon runs on real PortAudio (a private headless
PulseAudio, see tests/support/pulse.py): capture and playback resume without restarting the process."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.agent.harness import daemon_config, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from tests.support.pulse import PulseServer
from voiced.agent.daemon import Daemon
from voiced.agent.run import device_factories
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.portaudio import reinitialise
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator

pytestmark = [pytest.mark.pulse, pytest.mark.timeout(120)]


def loud_samples(pcm: np.ndarray, rate_hz: int) -> float:
    """Seconds of clearly audible audio in ``pcm``."""
    return float((np.abs(pcm.astype(np.int32)) > 1000).sum()) / rate_hz


async def _until(predicate: object, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_capture_and_playback_resume_after_the_sound_server_restarts(
    pulse: PulseServer, logs: CapturedLogs
) -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu)
        source_factory, sink_factory = device_factories(config)
        turns: list[TurnTimeline] = []
        # Built as `voiced run` builds it for real devices: PortAudio re-scanned before each reopen.
        daemon = Daemon(
            config,
            source_factory,
            sink_factory,
            install_signal_handlers=False,
            on_turn=turns.append,
            rescan_devices=reinitialise,
        )
        task = asyncio.create_task(daemon.run())
        try:
            await _until(lambda: daemon.ready.is_set() or task.done(), 20)
            assert not task.done(), task.result()
            agent = daemon.agent
            assert agent is not None

            pulse.say(utterance_pcm())
            await _until(lambda: len(turns) >= 1 or task.done(), 40)
            heard_before = loud_samples(pulse.speaker_audio(), pulse.speaker_rate_hz)
            assert heard_before > 0.3, "the first reply never reached the speaker"

            # The sound server dies; both streams are lost while the WebSocket stays up.
            pulse.kill()
            await _until(lambda: logs.with_event("audio device lost"), 20)
            frames_while_down = agent.counters.mic_frames
            await asyncio.sleep(0.5)
            connections = daemon.connections_opened
            pulse.start()
            await _until(lambda: logs.with_event("audio devices reopened"), 30)
            await _until(lambda: agent.counters.mic_frames > frames_while_down + 25, 10)

            # A second turn, spoken into the restarted server and answered through it.
            speaker_mark = pulse.speaker_audio().size
            pulse.say(utterance_pcm())
            await _until(lambda: len(turns) >= 2 or task.done(), 40)
            await asyncio.sleep(0.3)
            heard_after = loud_samples(pulse.speaker_audio()[speaker_mark:], pulse.speaker_rate_hz)
            assert not task.done()
            assert daemon.connections_opened == connections, "the WebSocket should not have been reopened"
        finally:
            daemon.request_stop()
            await asyncio.wait_for(asyncio.shield(task), 15)
    assert task.result() == 0
    assert turns[1].played_ms > 300
    assert heard_after > 0.3, "playback did not resume after the restart"
