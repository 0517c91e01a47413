"""The systemd unit: valid, hardened, and consistent with the daemon's exit codes and credential."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from voiced.config import CREDENTIAL_NAME
from voiced.errors import EXIT_CONFIG, EXIT_NOPERM, EXIT_UNAVAILABLE

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "voiced.service"


def test_unit_matches_the_daemon() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=on-failure" in text
    excluded = set(re.search(r"^RestartPreventExitStatus=(.+)$", text, re.M).group(1).split())  # type: ignore[union-attr]
    assert {str(EXIT_CONFIG), str(EXIT_NOPERM), str(EXIT_UNAVAILABLE)} <= excluded
    assert f"LoadCredential={CREDENTIAL_NAME}:" in text
    for option in (
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=",
    ):
        assert option in text
    assert "SupplementaryGroups=audio" in text
    # A runaway plugin hits a ceiling instead of swapping the device to death.
    assert re.search(r"^MemoryMax=\d+[KMG]$", text, re.M)
    # ProcSubset=pid is why device_status reads the boot clock instead of /proc/uptime.
    assert "ProcSubset=pid" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_security_exposure_is_low() -> None:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for voiced.service: ([0-9.]+)", out.stdout + out.stderr)
    assert match is not None, out.stdout + out.stderr
    assert float(match.group(1)) <= 2.0
