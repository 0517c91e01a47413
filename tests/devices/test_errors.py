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
