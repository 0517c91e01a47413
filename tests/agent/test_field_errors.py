"""Each problem a new user met, as the command line now answers it: one clear line, the documented
exit code, no traceback; and the demo that shows progress and takes the user's own config."""

from __future__ import annotations

import ast
import re
import subprocess
import time
import wave
from pathlib import Path

import pytest

from tests.agent.harness import BOT_ID, TOKEN, UTTERANCE
from tests.agent.test_cli import ROOT, run_voiced, voiced_env
from voiced.config import VoicedConfig
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.emulator.cli import SCENARIO_HELP
from voiced.emulator.scenarios import parse_scenario
from voiced.errors import EXIT_CONFIG, EXIT_DEVICE, EXIT_NOPERM, EXIT_USAGE

pytestmark = pytest.mark.timeout(120)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def config_keys() -> set[str]:
    """Every dotted key of the config model, tables included."""
    keys: set[str] = set()

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            keys.add(prefix + name)
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, prefix + name + ".")

    walk(VoicedConfig, "")
    return keys


# Pieces of wire event names (conversation.audio.delta) built in f-strings, not config keys.
PROTOCOL_NAMES = {"audio.delta", "audio.completed", "audio.sentence_start"}


def test_every_config_key_named_in_a_message_exists() -> None:
    known = config_keys()
    pattern = re.compile(
        r"(?<![\w./])((?:coze|session|audio|agent|reconnect|log|plugins|listen)\.[a-z_]+(?:\.[a-z_]+)*)"
    )
    wrong: list[str] = []
    for path in (ROOT / "voiced").rglob("*.py"):
        tree = ast.parse(path.read_text())
        # Docstrings show code (``log.warning(...)``); messages are what a user reads.
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for key in pattern.findall(node.value):
                    if (
                        key not in known
                        and not key.endswith((".toml", ".py"))
                        and not key.startswith("plugins.tools")
                        and key not in PROTOCOL_NAMES
                    ):
                        wrong.append(f"{path.relative_to(ROOT)}: {key}")
    assert wrong == []


async def test_run_without_a_token_says_so_before_waiting_for_any_device(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    started = time.monotonic()
    code, _, err = await run_voiced(
        "run", "--set", f"coze.bot_id={BOT_ID}", env=voiced_env(VOICED_CONFIG=str(tmp_path / "none.toml"))
    )
    assert code == EXIT_NOPERM
    assert "no Coze token" in one_line(err) and "COZE_API_TOKEN" in err
    assert time.monotonic() - started < 20


async def test_the_emulators_printed_url_works_as_base_url(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    async with serve_emulator(EmulatorSettings(port=0, token=TOKEN)) as emu:
        code, out, err = await run_voiced(
            "check",
            "--skip-devices",
            "--set",
            f"coze.base_url={emu.url}/v1/chat",
            "--set",
            f"coze.bot_id={BOT_ID}",
            env=voiced_env(COZE_API_TOKEN=TOKEN, VOICED_CONFIG=str(tmp_path / "none.toml")),
        )
    assert code == 0, out + err
    assert "appends itself" in err


async def test_a_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "voiced.toml"
    bad.write_bytes('[coze]\nbot_id = "caf\u00e9"\n'.encode("latin-1"))
    code, _, err = await run_voiced("check", "--skip-devices", "--config", str(bad), env=voiced_env())
    assert code == EXIT_CONFIG
    assert "UTF-8" in one_line(err)


async def test_a_config_error_is_printed_once(tmp_path: Path) -> None:
    bad = tmp_path / "voiced.toml"
    bad.write_text("[agent]\nbarge_inn = true\n")
    code, out, err = await run_voiced("run", "--config", str(bad), env=voiced_env())
    assert code == EXIT_CONFIG
    assert (out + err).count("barge_inn") == 1
    one_line(err)


async def test_config_after_plugins_list_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text('[plugins]\nenabled = ["current_time"]\n')
    code, out, err = await run_voiced("plugins", "list", "--config", str(config), env=voiced_env())
    assert code == 0, err
    assert re.search(r"get_volume\s.*\bno\b|get_volume.*disabled", out) or "get_volume" in out


async def test_config_show_names_each_values_source_and_hides_the_token(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text('[coze]\nbot_id = "42"\n')
    code, out, err = await run_voiced(
        "config",
        "show",
        "--config",
        str(config),
        "--set",
        "agent.volume_pct=30",
        env=voiced_env(COZE_API_TOKEN=TOKEN, VOICED_SESSION__TURN_DETECTION="server_vad"),
    )
    assert code == 0, err
    lines = {line.split(" = ")[0].strip(): line for line in out.splitlines() if " = " in line}
    assert lines["coze.bot_id"].endswith(f"# file {config}")
    assert lines["agent.volume_pct"].endswith("# --set")
    assert lines["session.turn_detection"].endswith("# env VOICED_SESSION__TURN_DETECTION")
    assert lines["agent.barge_in"].endswith("# default")
    assert "$COZE_API_TOKEN" in lines["coze.token"]
    assert TOKEN not in out + err


async def test_help_describes_commands_signals_and_exit_codes() -> None:
    code, out, _ = await run_voiced("--help", env=voiced_env())
    assert code == 0 and "SIGHUP" in out and "77" in out and "78" in out
    code, out, _ = await run_voiced("check", "--help", env=voiced_env())
    assert code == 0 and "token source" in out and "exit codes" in out
    code, out, _ = await run_voiced("emulator", "--help", env=voiced_env())
    assert code == 0 and "[[turns]]" in out


def test_the_scenario_format_in_the_help_is_a_valid_scenario() -> None:
    body = "\n".join(line.split("#")[0][2:] for line in SCENARIO_HELP.splitlines()[1:12])
    scenario = parse_scenario(body, "help")
    assert scenario.turns[0].tool_calls[0].name == "garage_state"


def test_dev_help_is_the_usage_only(tmp_path: Path) -> None:
    done = subprocess.run([ROOT / "dev", "help"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0 and "./dev demo" in done.stdout
    assert "set -euo" not in done.stdout


# --- the demo ---------------------------------------------------------------------------------------


async def test_demo_prints_progress_as_the_turn_happens_and_writes_to_the_current_directory(
    tmp_path: Path,
) -> None:
    proc = await __import__("asyncio").create_subprocess_exec(
        str(ROOT / ".venv/bin/voiced") if (ROOT / ".venv/bin/voiced").exists() else "voiced",
        "demo",
        "--scenario",
        "tools",
        env=voiced_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    stdout = out.decode()
    assert proc.returncode == 0, err.decode()
    steps = [
        "listening for the wake word",
        "wake word heard",
        "end of speech",
        "heard: How is the device doing?",
        "tool called",
        "speaking",
    ]
    positions = [stdout.index(step) for step in steps]
    assert positions == sorted(positions)
    assert stdout.index("speaking") < stdout.index("the bot replied")
    assert "still speaking" in stdout  # a long reply is never silent
    assert (tmp_path / "voiced-demo-reply.wav").stat().st_size > 24000


async def test_demo_calls_the_users_own_plugin_with_their_config(tmp_path: Path) -> None:
    config = tmp_path / "voiced.toml"
    config.write_text('[plugins]\nmodules = ["tests.plugins.sample_tools"]\nenabled = ["current_time"]\n')
    out_wav = tmp_path / "reply.wav"
    code, out, err = await run_voiced(
        "demo",
        "--config",
        str(config),
        "--set",
        'plugins.enabled=["paint"]',
        "--call",
        "paint",
        "--args",
        '{"colour": "green", "shade": "dark"}',
        "--out",
        str(out_wav),
        env=voiced_env(),
    )
    assert code == 0, err
    assert "tool called on this device: paint" in out
    assert "paint answered" in out and "dark" in out  # the plugin's output, spoken by the bot


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (["--scenario", "/nonexistent/s.toml"], "cannot read scenario", EXIT_USAGE),
        (["--scenario", "BAD"], "no bundled scenario", EXIT_USAGE),
        (["--out", "/proc/voiced-reply.wav"], "cannot write the reply", EXIT_USAGE),
        (["--call", "x", "--args", "{nope"], "--args is not JSON", EXIT_USAGE),
        (["--call", "no_such_tool"], "no plugin tool named", EXIT_CONFIG),
        (
            ["--play", "--set", "audio.devices.output_device=no-such-card"],
            "audio.devices.output_device",
            EXIT_DEVICE,
        ),
    ],
)
async def test_demo_mistakes_are_one_line_with_the_documented_code(
    tmp_path: Path, args: list[str], expected: str, code: int
) -> None:
    started = time.monotonic()
    got, _, err = await run_voiced("demo", *args, env=voiced_env(), timeout_s=60)
    assert got == code, err
    assert expected in one_line(err)
    assert time.monotonic() - started < 30  # fails fast, not after the 60 s reply timeout


async def test_demo_with_a_malformed_scenario_or_a_truncated_wav_is_one_line(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[turns]]\nreply = ["{unclosed"]\n')
    code, _, err = await run_voiced("demo", "--scenario", str(scenario), env=voiced_env())
    assert code == EXIT_USAGE and str(scenario) in one_line(err)
    odd = tmp_path / "odd.wav"
    with wave.open(str(odd), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(UTTERANCE.read_bytes()[44:])
    odd.write_bytes(odd.read_bytes()[:-1])  # odd-sized: a copy cut in the middle of a sample
    # The whole frames of a truncated recording are still speech: the demo answers it.
    code, out, err = await run_voiced(
        "demo", "--input", str(odd), "--out", str(tmp_path / "r.wav"), "--timeout-s", "40", env=voiced_env()
    )
    assert code == 0, err
    assert "wake word" not in out  # a recording of the user's own: any speech is the turn
    assert "Traceback" not in err
    assert load_scenario("demo").turns
