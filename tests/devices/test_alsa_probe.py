"""PortAudio's start-up without ALSA's unused device plugins: in a real subprocess against the private
headless PulseAudio, the devices a voice device uses are all there, a stream opens and plays, and the
skipped plugins' modules (the a52 encoder maps libavcodec) are never loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pulse import PulseServer
from voiced.devices.alsa_probe import CONF_DIRS, OPT_OUT_ENV, SYSTEM_CONFIG, overlay_text

pytestmark = [pytest.mark.pulse, pytest.mark.timeout(60)]

CHILD = """
import json, time
import numpy as np
from voiced.devices.portaudio import load_sounddevice
sd = load_sounddevice()
names = [d["name"] for d in sd.query_devices()]
with sd.RawOutputStream(device="default", samplerate=24000, channels=1, dtype="int16") as stream:
    stream.write(np.zeros(2400, dtype=np.int16).tobytes())
maps = open("/proc/self/maps").read().splitlines()
modules = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in maps if "asound_module_pcm" in line})
print(json.dumps({"names": names, "modules": modules}))
"""


def installed(name: str) -> bool:
    return any((Path(d) / name).exists() for d in CONF_DIRS)


def start_portaudio(pulse: PulseServer, **extra: str) -> dict[str, list[str]]:
    env = {**os.environ, **pulse.client_env(), **extra}
    env.pop("ALSA_CONFIG_PATH", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=40, check=True
    )
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def a52_installed() -> None:
    if overlay_text(SYSTEM_CONFIG) is None or not installed("60-a52-encoder.conf"):
        pytest.skip("needs alsa-lib 1.2's alsa.conf and libasound2-plugins' a52 definition")


@pytest.mark.usefixtures("a52_installed")
def test_portaudio_starts_without_the_unused_plugins_and_keeps_the_used_devices(pulse: PulseServer) -> None:
    reduced = start_portaudio(pulse)
    everything = start_portaudio(pulse, **{OPT_OUT_ENV: "1"})
    assert {"pulse", "default"} <= set(reduced["names"])
    assert reduced["names"] == everything["names"]
    assert "libasound_module_pcm_a52.so" in everything["modules"]  # what the opt-out still gets
    assert reduced["modules"] == ["libasound_module_pcm_pulse.so"]


def test_an_unknown_alsa_conf_leaves_alsa_alone(tmp_path: Path) -> None:
    other = tmp_path / "alsa.conf"
    other.write_text('@hooks [ { func load files [ "/etc/somewhere/else" ] errors false } ]\n')
    assert overlay_text(other) is None
