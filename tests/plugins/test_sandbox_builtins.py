"""The built-ins under the service's sandbox: uptime and load with /proc reduced to processes
(``ProcSubset=pid``), and the time spoken in the machine's own zone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from voiced.plugins import PluginRegistry, PluginSettings, ToolRunner
from voiced.plugins.zone import find_zone_name, system_zone_name

ROOT = Path(__file__).resolve().parents[2]

# device_status through the real registry and runner, printed as the JSON the bot would get.
CALL_DEVICE_STATUS = """
import asyncio, os, sys
from voiced.plugins import PluginRegistry, PluginSettings, ToolRunner
settings = PluginSettings()
result = asyncio.run(ToolRunner(PluginRegistry.load(settings), settings).call("device_status"))
print(os.path.exists("/proc/uptime"), os.path.exists("/proc/loadavg"), file=sys.stderr)
print(result.output.output)
"""


def run_with_proc_subset_pid(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a mount namespace whose /proc is mounted like systemd's ProcSubset=pid."""
    script = f'mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec {sys.executable} -c "$0"'
    return subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script, code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare")
def test_device_status_reports_uptime_and_load_with_proc_reduced_to_processes() -> None:
    probe = run_with_proc_subset_pid("print('mounted')")
    if probe.returncode != 0:
        pytest.skip(f"this kernel or container cannot mount proc with subset=pid: {probe.stderr.strip()}")
    done = run_with_proc_subset_pid(CALL_DEVICE_STATUS)
    assert done.returncode == 0, done.stderr
    # The sandbox really hides the files a naive implementation reads.
    assert done.stderr.split()[-2:] == ["False", "False"]
    status = json.loads(done.stdout.splitlines()[-1])  # the runner logs a line before it
    host_uptime_s = time.clock_gettime(time.CLOCK_BOOTTIME)  # what /proc/uptime shows
    assert status["uptime_s"] is not None and abs(status["uptime_s"] - host_uptime_s) < 30
    assert isinstance(status["load_1m"], float)


async def test_device_status_uptime_matches_the_kernels() -> None:
    host_uptime_s = time.clock_gettime(time.CLOCK_BOOTTIME)  # what /proc/uptime shows
    settings = PluginSettings()
    status = json.loads(
        (await ToolRunner(PluginRegistry.load(settings), settings).call("device_status")).output.output
    )
    assert abs(status["uptime_s"] - host_uptime_s) < 30


def test_the_zone_comes_from_the_localtime_link(tmp_path: Path) -> None:
    (tmp_path / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    assert find_zone_name(tmp_path, environ={}) == "Europe/Berlin"
    assert find_zone_name(tmp_path, environ={"TZ": ":Asia/Tokyo"}) == "Asia/Tokyo"


def test_debians_timezone_file_and_nothing_at_all(tmp_path: Path) -> None:
    assert find_zone_name(tmp_path, environ={}) is None
    (tmp_path / "localtime").write_bytes(b"TZif copied, not linked")
    (tmp_path / "timezone").write_text("America/Chicago\n")
    assert find_zone_name(tmp_path, environ={}) == "America/Chicago"
    (tmp_path / "timezone").write_text("Not/AZone\n")
    assert find_zone_name(tmp_path, environ={}) is None


async def test_current_time_speaks_in_the_systems_zone_by_default() -> None:
    settings = PluginSettings()
    assert settings.timezone == system_zone_name() == (find_zone_name() or "UTC")
    answer = json.loads(
        (await ToolRunner(PluginRegistry.load(settings), settings).call("current_time")).output.output
    )
    assert answer["timezone"] == settings.timezone
    assert abs(time.time() - datetime.fromisoformat(answer["iso"]).timestamp()) < 5


def test_a_machine_in_berlin_gets_berlins_time(tmp_path: Path) -> None:
    # A fresh interpreter: the system zone is read once per process.
    code = "from voiced.plugins import PluginSettings; print(PluginSettings().timezone)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TZ": "Europe/Berlin"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.strip() == "Europe/Berlin"
