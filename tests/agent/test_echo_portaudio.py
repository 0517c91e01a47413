"""The echo canceller on real PortAudio: the daemon's own virtual speaker is heard on its own virtual
microphone through a simulated room (soft-clipping speaker, delay, room impulse response, noise),
carried in real time by the headless PulseAudio harness. audio.echo.mode = "webrtc"; when the
canceller cannot vouch for a frame the core falls back to half duplex, so the first assertion holds
on a loaded machine too."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.agent.harness import daemon_config
from tests.support.echo import (
    SPEAKER_SCENARIO,
    EchoPath,
    Room,
    attach_echo_path,
    dbfs,
    talk,
    user_speech,
    wait_state,
)
from tests.support.pulse import PulseServer
from tests.support.timing import patience_s
from voiced.agent.daemon import Daemon
from voiced.agent.run import device_factories
from voiced.conversation.states import TurnState
from voiced.devices.portaudio import reinitialise
from voiced.emulator import Emulator, EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = [
    pytest.mark.pulse,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the replies are espeak-ng speech"),
]


@asynccontextmanager
async def daemon_on_pulse(
    pulse: PulseServer, room: Room, tmp: Path
) -> AsyncIterator[tuple[Daemon, Emulator, EchoPath]]:
    """The daemon on the harness's default devices (PortAudio), its speaker heard through ``room``."""
    path = attach_echo_path(pulse, room)
    scenario = tmp / "speaker.toml"
    scenario.write_text(SPEAKER_SCENARIO)
    settings = EmulatorSettings(port=0, scenario=load_scenario(scenario), time_scale=0.2)
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"audio.echo.mode": "webrtc", "session.input_codec": "pcm"})
        source, sink = device_factories(config)
        daemon = Daemon(config, source, sink, install_signal_handlers=False, rescan_devices=reinitialise)
        task = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(patience_s(20.0)):
                await daemon.ready.wait()
            yield daemon, emu, path
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, patience_s(15.0)) == 0


def sent_audio_s(emu: Emulator) -> float:
    """Seconds of mic audio the daemon sent up as user turns (pcm, 16 kHz)."""
    appends = [r.event for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend)]
    return sum(len(base64.b64decode(e.data.delta)) for e in appends) / 2 / 16000


async def test_replies_at_full_volume_through_the_room_never_interrupt_themselves(
    pulse: PulseServer, tmp_path: Path
) -> None:
    async with daemon_on_pulse(pulse, Room(delay_ms=120.0, seed=3), tmp_path) as (daemon, emu, path):
        result = await talk(daemon, 2)
        echo_dbfs = path.echo_dbfs(last_s=8.0)
        sent_s = sent_audio_s(emu)
    assert echo_dbfs > -30.0  # the mic heard the replies loud (3 dB under what was played)
    assert result.played == 2
    assert result.interrupts == 0, result.interrupts_by_reason
    assert sent_s == 0.0  # not a sound of its own voice went up as a user turn


async def test_the_user_talking_over_a_reply_6_db_under_its_echo_barges_in(
    pulse: PulseServer, tmp_path: Path
) -> None:
    voice = user_speech()
    async with daemon_on_pulse(pulse, Room(delay_ms=80.0, seed=5), tmp_path) as (daemon, _emu, path):
        await talk(daemon, 1)  # the canceller converges on the first reply
        agent = daemon.agent
        assert agent is not None
        agent.send_text("Tell me something.")
        await wait_state(daemon, {TurnState.SPEAKING}, 15.0)
        await asyncio.sleep(0.8)
        gain = 10 ** ((path.echo_dbfs() - 6.0 - dbfs(voice)) / 20)
        pulse.say(np.clip(np.round(voice * gain), -32768, 32767).astype(np.int16))
        async with asyncio.timeout(patience_s(3.0)):
            while not agent.counters.interrupts:
                await asyncio.sleep(0.01)
        assert dict(agent.counters.interrupts_by_reason) == {"barge-in": 1}
