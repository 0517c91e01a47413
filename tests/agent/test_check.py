"""`voiced check` a user can trust: every row always there, where the config and the token came
from, plugins validated, a silent microphone warned about, a test tone that reaches the speaker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.agent.harness import BOT_ID, TOKEN, daemon_config, utterance_pcm
from tests.agent.test_cli import run_voiced, voiced_env
from tests.support.pulse import PulseServer
from voiced.agent.check import TONE_HZ, collect_checks, render
from voiced.config import load_config
from voiced.emulator import EmulatorSettings, serve_emulator

pytestmark = pytest.mark.timeout(60)

ROWS = [
    "config valid",
    "config file",
    "token present",
    "bot_id set",
    "plugins enabled",
    "time zone",
    "session settings",
    "microphone opens and delivers audio",
    "microphone level",
    "speaker opens",
    "test tone",
    "server reachable, chat.updated received",
    "echo cancellation",
    "wake word",
]


def row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name))


async def test_without_a_token_every_row_is_still_there_and_says_why(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text(f'[coze]\nbot_id = "{BOT_ID}"\n')
    code, out, err = await run_voiced("check", "--skip-devices", "--config", str(config), env=voiced_env())
    assert code == 1, err
    assert [line.split("  ")[0].strip() for line in out.splitlines()[1:]] == ROWS
    assert str(config) in row(out, "config file")
    assert "FAIL" in row(out, "token present") and "COZE_API_TOKEN" in row(out, "token present")
    assert "FAIL" in row(out, "server reachable") and "not tried" in row(out, "server reachable")
    assert "skip" in row(out, "microphone level")


async def test_it_names_the_token_source_and_never_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "coze-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    async with serve_emulator(EmulatorSettings(port=0, token=TOKEN)) as emu:
        config = tmp_path / "voiced.toml"
        config.write_text(
            f'[coze]\nbase_url = "{emu.url}"\nbot_id = "{BOT_ID}"\ntoken_file = "{token_file}"\n'
        )
        code, out, err = await run_voiced(
            "check", "--skip-devices", "--config", str(config), env=voiced_env()
        )
        assert code == 0, out + err
        assert f"coze.token_file {token_file}" in row(out, "token present")
        (tmp_path / "none.toml").write_text("")
        code, out, _ = await run_voiced(
            "check",
            "--skip-devices",
            "--set",
            f"coze.base_url={emu.url}",
            "--set",
            f"coze.bot_id={BOT_ID}",
            env=voiced_env(COZE_API_TOKEN=TOKEN, VOICED_CONFIG=str(tmp_path / "none.toml")),
        )
    assert code == 0
    assert "$COZE_API_TOKEN" in row(out, "token present")
    assert TOKEN not in out


async def test_an_enabled_plugin_that_does_not_exist_fails(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={"plugins.enabled": ["current_time", "open_garage"]})
    results = await collect_checks(config, open_devices=False, environ={})
    plugins = next(r for r in results if r.name == "plugins enabled")
    assert (
        plugins.status == "FAIL" and "open_garage" in plugins.detail and "plugins.enabled" in plugins.detail
    )


@pytest.mark.pulse
async def test_a_silent_microphone_is_a_warning_and_speech_is_not(pulse: PulseServer) -> None:
    async with serve_emulator(EmulatorSettings(port=0)) as emu:
        silent = await collect_checks(daemon_config(emu), open_devices=True)
        level = next(r for r in silent if r.name == "microphone level")
        assert level.status == "WARN" and "muted" in level.detail, render(silent)
        assert all(r.ok for r in silent), render(silent)  # a warning does not fail the check
        pulse.say(utterance_pcm())
        spoken = await collect_checks(daemon_config(emu), open_devices=True)
    level = next(r for r in spoken if r.name == "microphone level")
    assert level.status == "ok" and "dBFS" in level.detail, render(spoken)


@pytest.mark.pulse
async def test_the_test_tone_reaches_the_speaker(pulse: PulseServer) -> None:
    async with serve_emulator(EmulatorSettings(port=0)) as emu:
        results = await collect_checks(daemon_config(emu), open_devices=True, tone=True)
    tone = next(r for r in results if r.name == "test tone")
    assert tone.status == "ok", render(results)
    heard = pulse.speaker_audio().astype(np.float64)
    assert heard.size > pulse.speaker_rate_hz // 2
    spectrum = np.abs(np.fft.rfft(heard))
    peak_hz = np.argmax(spectrum) * pulse.speaker_rate_hz / heard.size
    assert abs(peak_hz - TONE_HZ) < 5
