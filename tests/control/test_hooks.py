"""Hooks as real subprocesses: the event in a scrubbed environment, never blocking, killed on time."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from voiced.control import (
    EventPublisher,
    HooksSettings,
    ReplyTextEvent,
    State,
    StateEvent,
    TurnEvent,
    TurnSummary,
    run_hooks,
)
from voiced.control.hooks import HookRun, HookRunner, hook_environment


async def wait_runs(runner: HookRunner, count: int, timeout_s: float = 10.0) -> list[HookRun]:
    async with asyncio.timeout(timeout_s):
        while len(runner.recent) < count:
            await asyncio.sleep(0.01)
    return list(runner.recent)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def read_pid(path: Path) -> int:
    return int(path.read_text())


def read_dumps(folder: Path) -> dict[str, str]:
    return {p.name.split(".")[1]: p.read_text() for p in folder.iterdir()}


def dump_env(path: Path) -> str:
    return f'env > "{path}.$VOICED_HOOK.$$"'


async def test_hooks_get_the_event_and_never_the_token(tmp_path: Path) -> None:
    out = tmp_path / "env"
    settings = HooksSettings(
        on_listening=dump_env(out),
        on_error=dump_env(out),
        on_turn=dump_env(out),
        pass_env=["LED_PIN", "COZE_API_TOKEN", "LEAKY"],
    )
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": "/home/pi",
        "LED_PIN": "17",
        "COZE_API_TOKEN": "pat_supersecret",
        "VOICED_CONTROL__TOKEN": "control-secret",
        "LEAKY": "Bearer pat_supersecret",
        "UNRELATED": "x",
    }
    publisher = EventPublisher()
    async with run_hooks(settings, publisher, environ=environ, secrets=["pat_supersecret"]) as runner:
        publisher.publish(StateEvent(state=State.LISTENING))
        publisher.publish(ReplyTextEvent(delta="runs no hook"))
        await wait_runs(runner, 1)
        publisher.publish(StateEvent(state=State.ERROR, hint="microphone lost: plug it back in"))
        await wait_runs(runner, 2)
        publisher.publish(TurnEvent(turn=TurnSummary(heard="hi", reply="hello")))
        runs = await wait_runs(runner, 3)
    assert [(r.hook, r.exit_code, r.timed_out) for r in runs] == [
        ("on_listening", 0, False),
        ("on_error", 0, False),
        ("on_turn", 0, False),
    ]
    dumps = read_dumps(tmp_path)
    envs = {
        hook: dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        for hook, text in dumps.items()
    }
    listening = envs["on_listening"]
    assert listening["VOICED_STATE"] == "listening"
    assert listening["VOICED_EVENT_TYPE"] == "state"
    assert json.loads(listening["VOICED_EVENT"]) == {"v": 1, "type": "state", "state": "listening"}
    assert listening["LED_PIN"] == "17" and listening["HOME"] == "/home/pi"
    assert envs["on_error"]["VOICED_HINT"] == "microphone lost: plug it back in"
    assert json.loads(envs["on_turn"]["VOICED_EVENT"])["turn"]["reply"] == "hello"
    assert envs["on_turn"]["VOICED_STATE"] == "error"  # the state the device was in
    for text in dumps.values():
        assert "secret" not in text
        assert "UNRELATED" not in text


def test_hook_environment_is_an_allow_list() -> None:
    env = hook_environment(
        {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "k", "MY_TOKEN": "t", "TZ": "UTC", "OTHER": "o"},
        ["AWS_SECRET_ACCESS_KEY", "MY_TOKEN"],
    )
    assert env == {"PATH": "/bin", "TZ": "UTC"}


async def test_a_hanging_hook_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The shell starts a child that ignores SIGTERM: only killing the whole group ends it.
    command = (
        f"sh -c 'trap \"\" TERM; echo $$ > {pids}.child; sleep 60' & echo $$ > {pids}.shell; "
        "echo started; wait"
    )
    settings = HooksSettings(on_thinking=command, timeout_s=0.5, kill_grace_s=0.3)
    publisher = EventPublisher()
    async with run_hooks(settings, publisher) as runner:
        started_s = time.monotonic()
        publisher.publish(StateEvent(state=State.THINKING))
        (run,) = await wait_runs(runner, 1)
        elapsed_s = time.monotonic() - started_s
    assert run.timed_out and run.exit_code is not None and run.exit_code < 0
    assert "started" in run.output
    assert 0.5 <= elapsed_s < 4.0
    for name in ("shell", "child"):
        await asyncio.sleep(0.05)
        assert not alive(read_pid(Path(f"{pids}.{name}")))


async def test_publish_never_waits_and_a_busy_hook_coalesces(tmp_path: Path) -> None:
    log_path = tmp_path / "log"
    settings = HooksSettings(on_speaking=f'sleep 0.3; echo "$VOICED_EVENT" >> "{log_path}"', timeout_s=5)
    publisher = EventPublisher()
    async with run_hooks(settings, publisher) as runner:
        started_s = time.perf_counter()
        for n in range(50):
            publisher.publish(StateEvent(state=State.SPEAKING, hint=f"n{n}"))
            await asyncio.sleep(0)
        publish_s = time.perf_counter() - started_s
        runs = await wait_runs(runner, 2)
        await asyncio.sleep(0.5)
    assert publish_s < 0.2
    assert len(runs) == 2 == runner.runs_started
    hints = [json.loads(line)["hint"] for line in log_path.read_text().splitlines()]
    # An early event ran; the ones that came while it ran collapsed into the newest.
    assert len(hints) == 2 and hints[1] == "n49" and int(hints[0][1:]) < 10


async def test_output_is_clipped_and_failures_reported(tmp_path: Path) -> None:
    settings = HooksSettings(on_idle="head -c 100000 /dev/zero | tr '\\0' x; exit 3", max_output_bytes=64)
    publisher = EventPublisher()
    async with run_hooks(settings, publisher) as runner:
        publisher.publish(StateEvent(state=State.SLEEPING))
        (run,) = await wait_runs(runner, 1)
    assert run.exit_code == 3
    assert run.output.startswith("x" * 64)
    assert "99936 more bytes dropped" in run.output
    assert len(run.output) < 120


async def test_leaving_the_block_kills_a_running_hook(tmp_path: Path) -> None:
    pid_file = tmp_path / "wake.pid"
    settings = HooksSettings(on_wake=f"echo $$ > {pid_file}; exec sleep 60", timeout_s=120)
    publisher = EventPublisher()
    async with run_hooks(settings, publisher):
        publisher.publish(StateEvent(state=State.WOKEN))
        async with asyncio.timeout(5):
            while not read_dumps(tmp_path):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    assert not alive(read_pid(pid_file))
