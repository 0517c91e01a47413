"""The built-in tools: time in the configured zone, voiced's own volume, device status."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from voiced.plugins import PluginRegistry, PluginSettings, ToolOverride, ToolRunner
from voiced.plugins.builtin.clock import spoken_time
from voiced.plugins.builtin.status import cpu_temp_c


class FakeVolume:
    """A VolumeControl like the daemon's: clamps to 0..100 and returns what it applied."""

    def __init__(self, volume_pct: int = 40) -> None:
        self.volume_pct = volume_pct

    def get_volume_pct(self) -> int:
        return self.volume_pct

    def set_volume_pct(self, volume_pct: int) -> int:
        self.volume_pct = max(0, min(100, volume_pct))
        return self.volume_pct


@pytest.mark.parametrize(
    ("hour", "minute", "spoken"),
    [
        (17, 42, "five forty-two PM"),
        (0, 0, "twelve o'clock AM"),
        (12, 5, "twelve oh five PM"),
        (9, 30, "nine thirty AM"),
        (23, 59, "eleven fifty-nine PM"),
        (11, 15, "eleven fifteen AM"),
    ],
)
def test_spoken_time_reads_like_a_person(hour: int, minute: int, spoken: str) -> None:
    assert spoken_time(hour, minute) == spoken
    assert spoken_time(hour, minute, "24h") == f"{hour:02d}:{minute:02d}"


async def test_current_time_uses_the_configured_zone() -> None:
    settings = PluginSettings(timezone="Asia/Shanghai")
    runner = ToolRunner(PluginRegistry.load(settings), settings)
    result = await runner.call("current_time")
    answer = json.loads(result.output.output)
    assert answer["timezone"] == "Asia/Shanghai"
    assert answer["iso"].endswith("+08:00")
    now = datetime.fromisoformat(answer["iso"])
    assert abs(now.timestamp() - time.time()) < 5
    assert answer["spoken"].endswith(("AM", "PM"))


async def test_current_time_can_speak_24_hour_time() -> None:
    settings = PluginSettings(tools={"current_time": ToolOverride(options={"clock": "24h"})})
    result = await ToolRunner(PluginRegistry.load(settings), settings).call("current_time")
    spoken = json.loads(result.output.output)["spoken"]
    assert len(spoken) == 5 and spoken[2] == ":"


def test_an_unknown_time_zone_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="use an IANA name"):
        PluginSettings(timezone="Mars/Olympus")


async def test_volume_tools_use_voiceds_own_volume() -> None:
    settings = PluginSettings()
    volume = FakeVolume(40)
    runner = ToolRunner(PluginRegistry.load(settings), settings, volume=volume)
    assert json.loads((await runner.call("get_volume")).output.output) == {"volume_pct": 40}
    assert json.loads((await runner.call("set_volume", '{"volume_pct": 75}')).output.output) == {
        "volume_pct": 75
    }
    assert volume.volume_pct == 75
    too_loud = await runner.call("set_volume", '{"volume_pct": 150}')
    assert not too_loud.ok and "less than or equal to 100" in too_loud.output.output
    assert volume.volume_pct == 75


async def test_volume_tools_without_a_volume_control_fail_clearly() -> None:
    settings = PluginSettings()
    result = await ToolRunner(PluginRegistry.load(settings), settings).call("get_volume")
    assert not result.ok
    assert json.loads(result.output.output) == {
        "error": "voiced has no playback volume control in this setup",
        "tool": "get_volume",
    }


def write_zone(root: Path, index: int, zone_type: str, millideg: int) -> None:
    zone = root / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(zone_type + "\n")
    (zone / "temp").write_text(f"{millideg}\n")


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    assert cpu_temp_c(tmp_path) is None
    write_zone(tmp_path, 0, "acpitz", 30000)
    assert cpu_temp_c(tmp_path) == 30.0
    write_zone(tmp_path, 1, "cpu-thermal", 51540)
    assert cpu_temp_c(tmp_path) == 51.5


async def test_device_status_reports_uptime_load_and_temperature(tmp_path: Path) -> None:
    write_zone(tmp_path / "thermal", 0, "cpu-thermal", 48312)
    (tmp_path / "uptime").write_text("12345.67 2345.00\n")
    settings = PluginSettings(
        tools={
            "device_status": ToolOverride(
                options={"thermal_dir": str(tmp_path / "thermal"), "proc_uptime": str(tmp_path / "uptime")}
            )
        }
    )
    runner = ToolRunner(PluginRegistry.load(settings), settings, started_at_monotonic_s=time.monotonic() - 60)
    status = json.loads((await runner.call("device_status")).output.output)
    assert status["uptime_s"] == 12345.7
    assert status["cpu_temp_c"] == 48.3
    assert isinstance(status["load_1m"], float)
    assert 60 <= status["voiced_uptime_s"] < 70


async def test_device_status_on_this_machine_never_fails() -> None:
    settings = PluginSettings()
    result = await ToolRunner(PluginRegistry.load(settings), settings).call("device_status")
    assert result.ok
    status = json.loads(result.output.output)
    assert set(status) == {"uptime_s", "load_1m", "cpu_temp_c", "voiced_uptime_s"}
