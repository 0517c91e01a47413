"""The command line as a user meets it: `voiced run` under SIGTERM, config errors, check, demo."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.agent.harness import BOT_ID, TOKEN, UTTERANCE
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.errors import EXIT_CONFIG, EXIT_NOPERM

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def voiced_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_", "NOTIFY_"))}
    env.update(extra)
    return env


async def run_voiced(*args: str, env: dict[str, str], timeout_s: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voiced",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_sends_ready_then_stops_on_sigterm_without_leaking_the_token(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("")
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    out_wav = tmp_path / "reply.wav"
    async with serve_emulator(EmulatorSettings(port=0, token=TOKEN, scenario=load_scenario("demo"))) as emu:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voiced",
            "run",
            "--set",
            f"coze.base_url={emu.url}",
            "--set",
            f"coze.bot_id={BOT_ID}",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--input-wav",
            str(UTTERANCE),
            "--output-wav",
            str(out_wav),
            env=voiced_env(
                COZE_API_TOKEN=TOKEN,
                NOTIFY_SOCKET=str(notify_path),
                WATCHDOG_USEC="2000000",
                VOICED_CONFIG=str(tmp_path / "empty.toml"),
            ),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        # Drain the log as it comes: a full pipe would block the daemon's writes.
        assert proc.stderr is not None
        stderr_task = asyncio.create_task(proc.stderr.read())
        loop = asyncio.get_running_loop()
        messages: list[str] = []
        async with asyncio.timeout(30):
            while not any("READY=1" in m for m in messages):
                messages.append((await loop.sock_recv(notify, 4096)).decode())
            # The watchdog is fed while mic frames flow and the connection is up.
            while not any("WATCHDOG=1" in m for m in messages):
                messages.append((await loop.sock_recv(notify, 4096)).decode())
        # Let a whole turn happen (the tool call included) before stopping.
        await emu.wait_for(lambda e: type(e).__name__ == "ConversationChatSubmitToolOutputs", 30)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        err = await stderr_task
    notify.close()
    assert proc.returncode == 0
    stderr = err.decode()
    assert TOKEN not in stderr
    assert '"event": "ready: listening"' in stderr
    assert any("STATUS=" in m for m in messages)
    assert out_wav.stat().st_size > 44


async def test_config_error_names_file_and_key_and_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "voiced.toml"
    bad.write_text('[session]\nturn_detection = "always"\n[agent]\nbarge_inn = true\n')
    code, _, err = await run_voiced("run", "--config", str(bad), env=voiced_env())
    assert code == EXIT_CONFIG
    assert f"{bad}: session.turn_detection" in err
    assert f"{bad}: unknown key 'agent.barge_inn'" in err
    assert "Traceback" not in err


async def test_wrong_token_exits_77_with_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    async with serve_emulator(EmulatorSettings(port=0, token="the-right-one")) as emu:
        code, _, err = await run_voiced(
            "run",
            "--set",
            f"coze.base_url={emu.url}",
            "--set",
            f"coze.bot_id={BOT_ID}",
            "--input-wav",
            str(UTTERANCE),
            "--output-wav",
            str(tmp_path / "o.wav"),
            env=voiced_env(COZE_API_TOKEN=TOKEN, VOICED_CONFIG=str(tmp_path / "none.toml")),
        )
    assert code == EXIT_NOPERM
    assert "HTTP 401" in err and "check the token" in err
    assert TOKEN not in err
    assert "Traceback" not in err


async def test_check_reports_a_table_and_fails_without_token(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    async with serve_emulator(EmulatorSettings(port=0, token=TOKEN)) as emu:
        args = (
            "check",
            "--skip-devices",
            "--set",
            f"coze.base_url={emu.url}",
            "--set",
            f"coze.bot_id={BOT_ID}",
        )
        env_none = voiced_env(VOICED_CONFIG=str(tmp_path / "none.toml"))
        code_ok, out_ok, _ = await run_voiced(
            *args, env=voiced_env(COZE_API_TOKEN=TOKEN, VOICED_CONFIG=str(tmp_path / "none.toml"))
        )
        code_bad, out_bad, _ = await run_voiced(*args, env=env_none)
    assert code_ok == 0, out_ok
    assert "chat.updated received" in out_ok and "FAIL" not in out_ok
    assert code_bad == 1
    assert "token present" in out_bad and "FAIL" in out_bad


async def test_demo_command_produces_a_reply_wav_and_a_timeline(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    code, stdout, stderr = await run_voiced("demo", "--out", str(out), env=voiced_env(), timeout_s=90)
    assert code == 0, stderr
    assert "you said" in stdout and "What time is it right now?" in stdout
    assert "current_time" in stdout
    assert "the bot replied:" in stdout and "It is" in stdout
    assert "you hear the reply" in stdout
    assert out.stat().st_size > 24000  # at least half a second of 24 kHz audio
    assert "wake word heard" in stdout  # "Okay Nabu, ..." woke it: the whole flow of a speaker


async def test_demo_listen_always_skips_the_wake_word(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    code, stdout, stderr = await run_voiced(
        "demo", "--listen", "always", "--out", str(out), env=voiced_env(), timeout_s=90
    )
    assert code == 0, stderr
    assert "listening (utterance_16k.wav" in stdout and "wake word" not in stdout
    assert "It is" in stdout


async def test_version_and_help() -> None:
    code, out, _ = await run_voiced("--version", env=voiced_env())
    assert code == 0 and out.startswith("voiced ")
    code, out, _ = await run_voiced(env=voiced_env())
    assert code == 2 and "demo" in out and "emulator" in out
