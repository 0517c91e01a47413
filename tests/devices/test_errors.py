"""The device error tree: every error a user can meet says what to do."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

import pytest

from voiced.devices.base import (
    DeviceError,
    DeviceLost,
    DeviceNotFound,
    EndOfStream,
    PortAudioMissing,
    UnsupportedRate,
)
from voiced.devices.listing import DeviceRow, render_device_table
from voiced.devices.portaudio import load_sounddevice


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """Behaves like sounddevice on a machine without libportaudio2: importing it raises OSError."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_missing_portaudio_names_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(PortAudioMissing, match="apt-get install libportaudio2"):
        load_sounddevice()


def test_error_tree() -> None:
    for cls in (PortAudioMissing, DeviceNotFound, UnsupportedRate, DeviceLost, EndOfStream):
        assert issubclass(cls, DeviceError)
    err = DeviceNotFound("usb mic", "input", ["0: pulse", "1: default"])
    assert "usb mic" in str(err) and "0: pulse" in str(err) and "voiced devices" in str(err)
    assert "none" in str(DeviceNotFound(None, "output", []))


def test_device_table_marks_defaults() -> None:
    rows = [
        DeviceRow(0, "USB Audio", "ALSA", 1, 0, 48000, True, False, (16000, 48000), ()),
        DeviceRow(1, "HDMI", "ALSA", 0, 2, 44100, False, True, (), (44100, 48000)),
    ]
    table = render_device_table(rows)
    lines = table.splitlines()
    assert lines[1].startswith("*0") and "input" in lines[1] and "16k,48k" in lines[1]
    assert lines[2].startswith("*1") and "output" in lines[2] and "44.1k,48k" in lines[2]
    assert "no audio devices" in render_device_table([])


async def test_a_hung_device_call_misses_its_deadline_without_freezing_the_loop() -> None:
    import asyncio
    import time

    from voiced.devices.base import DeviceLost, off_loop

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(DeviceLost, match="took longer than 0 s; is the sound server hung"):
        await off_loop(lambda: time.sleep(1.0), "opening the microphone", deadline_s=0.2)
    task.cancel()
    assert time.monotonic() - started < 0.8
    assert ticks >= 5  # the loop kept running while the call hung
