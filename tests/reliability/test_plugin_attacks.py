"""Plugin attacks: exits, interrupts, cancelling the world, blocking and spinning the loop, import-time
exits and sleeps, memory hogs, daemonised grandchildren, secrets in prints, exceptions and results.

The daemon's side is asserted: the bot gets one error output in bounded time, the daemon's loop keeps
ticking (its largest stall is measured), and nothing of the token reaches an output or a child.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.agent.harness import TOKEN
from tests.reliability.conftest import CapturedLogs
from voiced.plugins.registry import PluginRegistry
from voiced.plugins.runner import ToolRunner
from voiced.plugins.settings import PluginSettings
from voiced.protocol.models import FunctionCall, ToolCall

pytestmark = pytest.mark.timeout(60)

ATTACKS = "tests.reliability.attack_plugins"
REPO = Path(__file__).resolve().parents[2]


def runner_for(*tools: str, **settings: object) -> ToolRunner:
    plugin_settings = PluginSettings(enabled=list(tools), modules=[ATTACKS], **settings)
    return ToolRunner(PluginRegistry.load(plugin_settings), plugin_settings)


class LoopWatch:
    """Measures the daemon loop's largest stall while a block runs."""

    def __init__(self) -> None:
        self.worst_stall_s = 0.0

    async def tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.worst_stall_s = max(self.worst_stall_s, now - last - 0.01)
            last = now


def error_of(output: str) -> str:
    parsed = json.loads(output)
    assert isinstance(parsed, dict) and "error" in parsed, output
    return str(parsed["error"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("async_exit", "SystemExit"),
        ("async_interrupt", "KeyboardInterrupt"),
        ("async_base", "BaseException"),
        ("blocks_loop", "timed out"),
        ("spins", "timed out"),
    ],
)
async def test_an_async_tool_cannot_end_or_block_the_daemon(name: str, expected: str) -> None:
    runner = runner_for(name)
    watch = LoopWatch()
    ticker = asyncio.create_task(watch.tick())
    started = time.monotonic()
    (output,) = await runner.run(
        "chat", [ToolCall(id="c1", function=FunctionCall(name=name, arguments="{}"))]
    )
    elapsed_s = time.monotonic() - started
    ticker.cancel()
    assert expected in error_of(output.output)
    assert elapsed_s < 1.2, "the answer must come at the tool's timeout, not when the plugin gives up"
    assert watch.worst_stall_s < 0.15, f"the daemon's loop stalled {watch.worst_stall_s:.2f} s"


async def test_a_tool_that_cancels_every_task_cancels_only_itself() -> None:
    runner = runner_for("cancel_everything")
    bystander = asyncio.create_task(asyncio.sleep(5))
    (output,) = await runner.run("chat", [ToolCall(id="c1", function=FunctionCall(name="cancel_everything"))])
    await asyncio.sleep(0.05)
    assert output.output == "cancelled the world"
    assert not bystander.cancelled(), "a daemon task was cancelled by a plugin"
    bystander.cancel()


async def test_secrets_never_reach_the_bot(logs: CapturedLogs) -> None:
    runner = runner_for("leaks_in_exception", "leaks_in_result")
    # The daemon registers the token when it connects; here, by hand.
    from voiced.log import register_secret

    register_secret(TOKEN)
    outputs = await runner.run(
        "chat",
        [
            ToolCall(id="a", function=FunctionCall(name="leaks_in_exception")),
            ToolCall(id="b", function=FunctionCall(name="leaks_in_result")),
        ],
    )
    for output in outputs:
        assert TOKEN not in output.output and "***" in output.output


def test_import_time_exits_and_sleeps_do_not_stop_the_start(logs: CapturedLogs) -> None:
    settings = PluginSettings(
        enabled=["async_exit"],
        modules=["tests.reliability.attack_import_exit", "tests.reliability.attack_import_sleep", ATTACKS],
        import_timeout_s=1.0,
    )
    started = time.monotonic()
    registry = PluginRegistry.load(settings)
    assert time.monotonic() - started < 5.0
    assert registry.get("async_exit") is not None, "the good module still loaded"
    messages = {e.source: e.message for e in registry.errors}
    assert "SystemExit" in messages["module tests.reliability.attack_import_exit"]
    assert "longer than 1 s" in messages["module tests.reliability.attack_import_sleep"]


async def test_an_isolated_memory_hog_is_capped() -> None:
    runner = runner_for("memory_hog", isolated_memory_mb=512)
    (output,) = await runner.run("chat", [ToolCall(id="m", function=FunctionCall(name="memory_hog"))])
    assert "memory limit" in error_of(output.output)


async def test_an_isolated_grandchild_in_a_new_session_loses_no_answer_and_does_not_survive(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "grandchild-started"
    runner = runner_for("daemonises")
    started = time.monotonic()
    arguments = json.dumps({"marker": str(marker)})
    (output,) = await runner.run(
        "chat", [ToolCall(id="g", function=FunctionCall(name="daemonises", arguments=arguments))]
    )
    assert time.monotonic() - started < 5.0
    assert output.output.startswith("started "), output.output
    pid = int(output.output.split()[1])
    assert marker.exists(), "the grandchild ran"
    for _ in range(50):
        if _state(pid) in ("gone", "Z"):
            break
        await asyncio.sleep(0.05)
    assert _state(pid) in ("gone", "Z"), "the grandchild outlived its call"


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2 :].split()[0]


async def test_an_isolated_child_inherits_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COZE_API_TOKEN", TOKEN)
    monkeypatch.setenv("VOICED_COZE__TOKEN", TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/voiced.service")
    runner = runner_for("environment")
    (output,) = await runner.run("chat", [ToolCall(id="e", function=FunctionCall(name="environment"))])
    env = json.loads(output.output)
    assert "PATH" in env
    assert TOKEN not in output.output
    assert not {"COZE_API_TOKEN", "VOICED_COZE__TOKEN", "CREDENTIALS_DIRECTORY"} & set(env)


async def test_voiced_plugins_call_redacts_a_printed_token_and_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_"))}
    env.update(COZE_API_TOKEN=TOKEN, PYTHONPATH=str(REPO))
    config = tmp_path / "voiced.toml"
    config.write_text(
        f'[plugins]\nmodules = ["{ATTACKS}"]\nenabled = ["prints_secret", "leaks_in_exception"]\n'
    )
    for name in ("prints_secret", "leaks_in_exception"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voiced", "plugins", "-c", str(config), "call", name,
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode(errors="replace")
        assert TOKEN not in text, text
        assert "***" in text, text
