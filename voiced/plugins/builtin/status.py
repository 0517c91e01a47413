"""``device_status``: uptime, load and CPU temperature.

The service runs with ``ProcSubset=pid``, which hides ``/proc/uptime`` and ``/proc/loadavg``: the
uptime comes from the boot-time clock and the load from ``getloadavg()`` (the sysinfo call), neither
of which reads ``/proc``. The temperature comes from ``/sys``, which the sandbox leaves readable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from voiced.plugins.api import tool
from voiced.plugins.context import PluginContext

# Raspberry Pi OS names its zone "cpu-thermal"; x86 boards use "x86_pkg_temp"; SoCs often "soc".
_CPU_ZONE_HINTS = ("cpu", "x86_pkg", "soc")


@tool(
    name="device_status",
    description=(
        "The device's health: system uptime, 1-minute load average, CPU temperature, voiced's uptime."
    ),
    timeout_s=2.0,
)
def device_status(ctx: PluginContext) -> dict[str, float | None]:
    """Options ``thermal_dir`` and ``proc_uptime`` read other files instead (for tests or odd boards)."""
    thermal_dir = Path(str(ctx.settings.get("thermal_dir", "/sys/class/thermal")))
    proc_uptime = ctx.settings.get("proc_uptime")
    return {
        "uptime_s": _uptime_s(Path(str(proc_uptime))) if proc_uptime else boot_uptime_s(),
        "load_1m": _load_1m(),
        "cpu_temp_c": cpu_temp_c(thermal_dir),
        "voiced_uptime_s": round(time.monotonic() - ctx.started_at_monotonic_s, 1),
    }


def cpu_temp_c(thermal_dir: Path) -> float | None:
    """The CPU temperature in °C from the kernel's thermal zones, or ``None`` if none is exposed."""
    readings: list[tuple[str, float]] = []
    for zone in sorted(thermal_dir.glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text().strip())
            zone_type = (zone / "type").read_text().strip().lower() if (zone / "type").exists() else ""
        except (OSError, ValueError):
            continue
        readings.append((zone_type, millideg / 1000.0))
    if not readings:
        return None
    for zone_type, celsius in readings:
        if any(hint in zone_type for hint in _CPU_ZONE_HINTS):
            return round(celsius, 1)
    return round(readings[0][1], 1)


def boot_uptime_s() -> float | None:
    """Seconds since boot, suspend included (the kernel's CLOCK_BOOTTIME: no /proc needed)."""
    try:
        return round(time.clock_gettime(time.CLOCK_BOOTTIME), 1)
    except OSError:
        return None


def _uptime_s(path: Path) -> float | None:
    try:
        return round(float(path.read_text().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return None


def _load_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
