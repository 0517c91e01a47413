"""The system route: PulseAudio's echo-cancel module (WebRTC) in the headless harness, opened by
voiced as the README recipe says (the module's source and sink made the defaults)."""

from __future__ import annotations

import asyncio
import subprocess

import numpy as np
import pytest

from tests.support.echo import reply_speech
from tests.support.pulse import PulseServer, reinitialise_portaudio
from voiced.config import load_config
from voiced.devices.portaudio import PortAudioSink, PortAudioSource
from voiced.devices.settings import DeviceSettings
from voiced.mic.echo import echo_status

RECIPE = [
    [
        "load-module",
        "module-echo-cancel",
        "aec_method=webrtc",
        "source_master=vmic",
        "sink_master=vspk",
        "source_name=voiced_echo_source",
        "sink_name=voiced_echo_sink",
    ],
    ["set-default-source", "voiced_echo_source"],
    ["set-default-sink", "voiced_echo_sink"],
]


def _pactl(pulse: PulseServer, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", **pulse.client_env()}
    return subprocess.run(
        ["pactl", *args], env=env, check=True, capture_output=True, text=True, timeout=10
    ).stdout


@pytest.mark.pulse
async def test_voiced_records_and_plays_through_the_sound_servers_echo_canceller(pulse: PulseServer) -> None:
    for command in RECIPE:
        _pactl(pulse, *command)
    assert "voiced_echo_source" in _pactl(pulse, "list", "short", "sources")
    reinitialise_portaudio()
    source = PortAudioSource(DeviceSettings())
    sink = PortAudioSink(DeviceSettings(), 24000)
    await source.start()
    await sink.start()
    try:
        reply = reply_speech()[:16000]
        sink.write(np.repeat(reply, 3)[: 3 * reply.size // 2])
        frames = [await asyncio.wait_for(source.read_frame(), 5.0) for _ in range(50)]
        await asyncio.sleep(0.5)
    finally:
        await source.stop()
        await sink.stop()
    assert all(len(f.pcm) == 640 for f in frames)
    # What voiced played went through the canceller's sink to the real (virtual) speaker.
    assert np.abs(pulse.speaker_audio().astype(np.int32)).max() > 1000
    config = load_config(
        None,
        environ={},
        overrides={
            "audio.echo.mode": "system",
        },
    )
    assert echo_status(config) == ("sound server", "echo-cancel source 'voiced_echo_source'")
