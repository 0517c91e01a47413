"""`voiced run` does not import what only other subcommands or options need (the emulator, the
metrics library when the control server is off): less RSS."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import voiced.cli
parser = voiced.cli.build_parser({command!r})
import voiced.agent.run
print(any(m == "voiced.emulator" or m.startswith("voiced.emulator.") for m in sys.modules))
"""


def _emulator_loaded(command: str | None) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(command=command)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip() == "True"


def test_run_does_not_import_the_emulator() -> None:
    assert not _emulator_loaded("run")


def test_the_emulator_and_help_still_get_their_arguments() -> None:
    assert _emulator_loaded("emulator")
    assert _emulator_loaded(None)
    out = subprocess.run(
        [sys.executable, "-m", "voiced", "emulator", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "--scenario" in out.stdout


_RUN_PATH_PROBE = """
import sys
import voiced.cli
voiced.cli.build_parser("run")
import voiced.agent.run
import voiced.agent.control
print(" ".join(sorted(m for m in ("prometheus_client", "voiced.demo", "sounddevice") if m in sys.modules)))
"""


def test_the_run_path_loads_metrics_and_devices_only_when_used() -> None:
    """prometheus_client is loaded only when the control server is on; PortAudio only when opened."""
    out = subprocess.run(
        [sys.executable, "-c", _RUN_PATH_PROBE], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == []
