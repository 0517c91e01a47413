"""Event hooks: the shell commands of ``[hooks]``, run when the device changes state.

A maker's LED ring follows the device by ``on_listening = "ledctl blue"`` and so on. Each hook runs
through ``/bin/sh -c`` in its own process group with the event in its environment; it never blocks
the conversation (the publisher only records the event), at most one process per hook runs at a
time (events arriving meanwhile collapse into the newest, which runs next), a hook still running
after ``timeout_s`` gets SIGTERM and then SIGKILL to its whole group, and its output is logged,
clipped to ``max_output_bytes``. Hooks get a scrubbed environment: a few harmless variables, those
named in ``pass_env``, never a token.

Use :func:`run_hooks` as an async context manager around the daemon's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from voiced.control.messages import MAX_TEXT_CHARS, Event, State, StateEvent, event_json
from voiced.control.publisher import EventPublisher
from voiced.control.settings import HooksSettings
from voiced.control.throttle import Throttle
from voiced.log import get_logger, redact

log = get_logger("hooks")

#: The hook each state runs.
HOOK_FOR_STATE: Mapping[State, str] = {
    State.SLEEPING: "on_idle",
    State.WOKEN: "on_wake",
    State.LISTENING: "on_listening",
    State.THINKING: "on_thinking",
    State.SPEAKING: "on_speaking",
    State.MUTED: "on_muted",
    State.RECONNECTING: "on_offline",
    State.OFFLINE: "on_offline",
    State.ERROR: "on_error",
}
#: The hook other event types run (text deltas run none: they come many times a second).
HOOK_FOR_TYPE: Mapping[str, str] = {
    "turn": "on_turn",
    "tool": "on_tool",
    "device": "on_device",
    "connection": "on_connection",
}
#: Variables every hook gets from the daemon's environment, when set.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL")
#: Names never passed on, whatever ``pass_env`` says.
_SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "KEY")
#: How long the output of a finished hook may keep its pipe open (a child it left behind).
_OUTPUT_GRACE_S = 0.5


def hook_name(event: Event) -> str | None:
    """The ``[hooks]`` key that ``event`` runs, or None."""
    if isinstance(event, StateEvent):
        return HOOK_FOR_STATE[event.state]
    return HOOK_FOR_TYPE.get(event.type)


def hook_environment(
    environ: Mapping[str, str], pass_env: Iterable[str], secrets: Iterable[str] = ()
) -> dict[str, str]:
    """The daemon's variables a hook may see: :data:`BASE_ENV` and ``pass_env``, minus anything secret."""
    secret_values = [s for s in secrets if s]
    env: dict[str, str] = {}
    for name in (*BASE_ENV, *pass_env):
        value = environ.get(name)
        if value is None or any(marker in name.upper() for marker in _SECRET_MARKERS):
            continue
        if any(secret in value for secret in secret_values):
            continue
        env[name] = value
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


@dataclass(frozen=True, slots=True)
class HookRun:
    """How one run of a hook ended."""

    hook: str
    event_type: str
    exit_code: int | None
    duration_s: float
    timed_out: bool
    output: str


class _Slot:
    def __init__(self, name: str, command: str) -> None:
        self.name = name
        self.command = command
        self.pending: tuple[Event, State | None] | None = None
        self.wake = asyncio.Event()


class HookRunner:
    """Runs the configured hooks. Add :meth:`on_event` as a publisher listener and run :meth:`run`."""

    def __init__(
        self,
        settings: HooksSettings,
        environ: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self._base_env = hook_environment(
            os.environ if environ is None else environ, settings.pass_env, secrets
        )
        commands = settings.model_dump(include=set(HOOK_FOR_STATE.values()) | set(HOOK_FOR_TYPE.values()))
        self._slots = {name: _Slot(name, cmd) for name, cmd in commands.items() if cmd and cmd.strip()}
        self._state: State | None = None
        self._throttle = Throttle(interval_s=30.0)
        #: The latest runs, newest last (for status pages and tests).
        self.recent: deque[HookRun] = deque(maxlen=32)
        self.runs_started = 0
        self.coalesced = 0

    @property
    def configured(self) -> list[str]:
        """The hooks that have a command."""
        return sorted(self._slots)

    def on_event(self, event: Event) -> None:
        """Schedule the hook ``event`` runs, if any; returns at once."""
        if isinstance(event, StateEvent):
            self._state = event.state
        name = hook_name(event)
        slot = self._slots.get(name) if name else None
        if slot is None:
            return
        if slot.pending is not None:
            self.coalesced += 1
        slot.pending = (event, self._state)
        slot.wake.set()

    async def run(self) -> None:
        """Run hooks as events arrive, until cancelled (which kills any running hook)."""
        if not self._slots:
            await asyncio.Event().wait()
        async with asyncio.TaskGroup() as group:
            for slot in self._slots.values():
                group.create_task(self._worker(slot), name=f"hook-{slot.name}")

    async def _worker(self, slot: _Slot) -> None:
        while True:
            await slot.wake.wait()
            slot.wake.clear()
            if slot.pending is None:
                continue
            event, state = slot.pending
            slot.pending = None
            try:
                result = await self._run_once(slot, event, state)
            except Exception as exc:
                log.error("hook runner failed", hook=slot.name, error=f"{type(exc).__name__}: {exc}"[:300])
                continue
            self.recent.append(result)
            self._log(result)

    def _environment(self, slot: _Slot, event: Event, state: State | None) -> dict[str, str]:
        env = dict(self._base_env)
        env["VOICED_HOOK"] = slot.name
        env["VOICED_EVENT_TYPE"] = event.type
        env["VOICED_EVENT"] = event_json(event)[: 2 * MAX_TEXT_CHARS]
        if state is not None:
            env["VOICED_STATE"] = state.value
        hint = getattr(event, "hint", None)
        if isinstance(hint, str):
            env["VOICED_HINT"] = hint
        return env

    async def _run_once(self, slot: _Slot, event: Event, state: State | None) -> HookRun:
        started_s = time.monotonic()
        self.runs_started += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                slot.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._environment(slot, event, state),
                start_new_session=True,
            )
        except OSError as exc:
            return HookRun(slot.name, event.type, None, 0.0, False, f"cannot start: {exc.strerror}")
        assert proc.stdout is not None
        reader = asyncio.create_task(_read_clipped(proc.stdout, self.settings.max_output_bytes))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
                await _kill_group(proc, self.settings.kill_grace_s)
            try:
                output = await asyncio.wait_for(asyncio.shield(reader), _OUTPUT_GRACE_S)
            except TimeoutError:
                output = b"(output still open after exit: a child process was left behind)"
        finally:
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGKILL)
            if not reader.done():
                reader.cancel()
                # asyncio.wait does not raise the reader's cancellation, only our own.
                await asyncio.wait([reader])
        return HookRun(
            slot.name,
            event.type,
            proc.returncode,
            time.monotonic() - started_s,
            timed_out,
            redact(output.decode("utf-8", "replace")).strip(),
        )

    def _log(self, run: HookRun) -> None:
        fields = {
            "hook": run.hook,
            "event_type": run.event_type,
            "exit_code": run.exit_code,
            "duration_ms": round(run.duration_s * 1000.0, 1),
            "output": run.output,
        }
        if run.timed_out or run.exit_code != 0:
            suppressed = self._throttle.allow(run.hook)
            if suppressed is not None:
                why = f"killed after {self.settings.timeout_s} s" if run.timed_out else "failed"
                log.warning(f"hook {why}", suppressed=suppressed, **fields)
        else:
            log.debug("hook ran", **fields)


async def _read_clipped(stream: asyncio.StreamReader, limit_bytes: int) -> bytes:
    """The first ``limit_bytes`` of ``stream``; the rest is read and dropped so the child never blocks."""
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(4096):
        room = limit_bytes - len(kept)
        kept += chunk[:room]
        dropped += max(0, len(chunk) - room)
    if dropped:
        kept += f" … ({dropped} more bytes dropped)".encode()
    return bytes(kept)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _kill_group(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM the hook's process group, then SIGKILL whatever is left after ``grace_s``."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace_s)
    # Children that ignored SIGTERM outlive the shell; the group id stays valid while they do.
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


@contextlib.asynccontextmanager
async def run_hooks(
    settings: HooksSettings,
    publisher: EventPublisher,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> AsyncIterator[HookRunner]:
    """Run ``settings``' hooks on ``publisher``'s events while the block runs.

    Pass every secret (the Coze token, the control token) in ``secrets``: a variable holding one is
    never handed to a hook. On exit, running hooks are killed.
    """
    runner = HookRunner(settings, environ=environ, secrets=secrets)
    publisher.add_listener(runner.on_event)
    task = asyncio.create_task(runner.run(), name="hooks")
    try:
        yield runner
    finally:
        publisher.remove_listener(runner.on_event)
        task.cancel()
        await asyncio.wait([task])
