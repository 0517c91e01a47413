"""The Chromium kiosk command line, as ``python -m voiced.control.kiosk`` prints it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from voiced.control import ControlSettings
from voiced.control.kiosk import kiosk_command


def run_kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voiced.control.kiosk", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_the_command_opens_the_page_full_screen() -> None:
    command = kiosk_command(ControlSettings(), browser="chromium")
    assert command[0] == "chromium"
    assert "--kiosk" in command and "--noerrdialogs" in command
    assert command[-1] == "http://127.0.0.1:8791/"
    network = ControlSettings(host="0.0.0.0", port=9000, token="t0ken-for-lan")
    assert kiosk_command(network, browser="chromium")[-1] == "http://127.0.0.1:9000/"


def test_the_module_prints_it_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text("[control]\nport = 8800\n", encoding="utf-8")
    done = run_kiosk("-c", str(config), "--browser", "chromium-browser")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chromium-browser --kiosk ")
    assert done.stdout.strip().endswith(" http://127.0.0.1:8800/")
    config.write_text('[control]\nunix_socket = "/run/voiced/control.sock"\n', encoding="utf-8")
    refused = run_kiosk("-c", str(config))
    assert refused.returncode == 2
    assert "not a unix socket" in refused.stderr and len(refused.stderr.splitlines()) == 1
    config.write_text('[control]\nhost = "0.0.0.0"\n', encoding="utf-8")
    bad = run_kiosk("-c", str(config))
    assert bad.returncode == 78
    assert "control.token_file" in bad.stderr


def test_voiced_kiosk_prints_it_too(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text("[control]\nport = 8802\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "voiced", "kiosk", "-c", str(config), "--browser", "chromium"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chromium --kiosk ")
    assert done.stdout.strip().endswith(" http://127.0.0.1:8802/")
