"""Running one tool call in a child process that is killed at its deadline.

The parent side is :func:`run_isolated`; the child side is :func:`child_main`, started as
``python -c "from voiced.plugins.isolated import child_main; child_main()"`` (not ``-m``, which
would import this module twice). The request is one JSON document on the child's stdin; the answer
one JSON document on a private copy of its stdout, while the plugin's own prints go to stderr so
they cannot corrupt the answer. A plugin that blocks, segfaults or calls ``os._exit`` costs one
child process, never the daemon.

What the child gets and what it cannot do:

- an environment scrubbed to a short allowlist (``PATH``, locale, ``HOME``…): no ``COZE_API_TOKEN``,
  no ``VOICED_*`` settings, no systemd credentials or notify socket;
- an address-space limit (``RLIMIT_AS``, ``[plugins] isolated_memory_mb``): a runaway allocation
  raises ``MemoryError`` in the plugin instead of growing the device's memory;
- everything it starts stays its descendant, even in a new session (the child is a sub-reaper),
  and is killed when the call ends, when it times out, and when the daemon goes away (a watchdog
  thread in the child notices the parent's death). The answer is read when the child exits, not at
  the end of the pipes, which a grandchild may hold open. Only a SIGKILL of voiced while the child's
  interpreter is stuck holding the GIL can leave a grandchild behind (no cgroup is used).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from voiced.plugins.api import ToolSpec, tool_spec
from voiced.plugins.context import PluginContext, ToolError
from voiced.plugins.output import cap_output, serialise_result

_CHILD_COMMAND = "from voiced.plugins.isolated import child_main; child_main()"
_STDERR_KEEP_BYTES = 4096
#: After the child exits, how long its pipes may stay open (held by something it started) before
#: what was read is taken as the whole answer.
_PIPE_GRACE_S = 0.5
#: Environment variables an isolated child inherits; everything else (tokens, credentials) is dropped.
_ENV_ALLOWED = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "PYTHONHASHSEED", "VIRTUAL_ENV"}
)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def child_environment(environ: dict[str, str] | os._Environ[str], search_path: list[str]) -> dict[str, str]:
    """The environment of an isolated child: the allowlisted variables and ``LC_*``, plus PYTHONPATH.

    The child must import the same modules the parent did, including ones added to sys.path at run
    time (config ``modules``, tests), so it gets the parent's search path. Nothing else travels: a
    plugin has no business with ``COZE_API_TOKEN`` or the systemd credentials directory.
    """
    env = {k: v for k, v in environ.items() if k in _ENV_ALLOWED or k.startswith("LC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in search_path if p)
    return env


class IsolatedCallError(Exception):
    """The isolated call failed; ``str(exc)`` is the message for the bot, ``details`` for the log."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


async def run_isolated(
    spec: ToolSpec,
    arguments: str,
    *,
    timezone: str,
    started_at_monotonic_s: float,
    options: dict[str, Any],
    max_output_bytes: int,
    memory_limit_mb: int = 1024,
) -> str:
    """Run ``spec`` with the raw ``arguments`` JSON in a fresh child; returns the output string.

    Raises :class:`IsolatedCallError` when the plugin fails or the child dies. Wrap the call in a
    timeout: on timeout or cancellation the child and everything it started are killed and the child
    is reaped before the exception propagates, so no process outlives its call.
    """
    where = spec.import_path
    if where is None:
        raise IsolatedCallError(
            f"tool {spec.name!r} cannot run isolated: define it at the top level of an importable module"
        )
    request = {
        "module": where[0],
        "qualname": where[1],
        "arguments": arguments,
        "timezone": timezone,
        "started_at_monotonic_s": started_at_monotonic_s,
        "options": options,
        "max_output_bytes": max_output_bytes,
        "memory_limit_mb": memory_limit_mb,
        "parent_pid": os.getpid(),
    }
    env = child_environment(os.environ, sys.path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD_COMMAND,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(request).encode("utf-8"))
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        # JSON escaping can grow the capped output; anything much larger is not a valid answer.
        answer_limit = 8 * max_output_bytes + 65536
        answer_reader = _CappedReader(answer_limit)
        stderr_reader = _TailReader(_STDERR_KEEP_BYTES)
        readers = [
            asyncio.ensure_future(answer_reader.consume(proc.stdout)),
            asyncio.ensure_future(stderr_reader.consume(proc.stderr)),
        ]
        try:
            returncode = await proc.wait()
            # Not the pipes' end: something the plugin started may hold them open for ever.
            await asyncio.wait(readers, timeout=_PIPE_GRACE_S)
        finally:
            for reader in readers:
                reader.cancel()
    finally:
        if proc.returncode is None:
            # Timed out or cancelled: the child and everything it started. (Once reaped, its pid may
            # belong to someone else: an exited child has already killed its own descendants.)
            kill_tree(proc.pid)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            # Reap it even while being cancelled, so the kill is complete when we return.
            await asyncio.shield(proc.wait())
    return _decode_answer(spec.name, answer_reader.result(), stderr_reader.tail, returncode)


def _decode_answer(name: str, answer: bytes | None, stderr_tail: bytes, returncode: int) -> str:
    stderr_text = stderr_tail.decode("utf-8", errors="replace").strip()
    if answer is None:
        raise IsolatedCallError(f"tool {name!r} produced an oversized answer", stderr_text)
    if not answer:
        how = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        raise IsolatedCallError(f"the plugin process died before answering ({how})", stderr_text)
    try:
        response = json.loads(answer)
    except json.JSONDecodeError as exc:
        raise IsolatedCallError("the plugin process sent a garbled answer", stderr_text) from exc
    if response.get("ok") is True and isinstance(response.get("output"), str):
        output: str = response["output"]
        return output
    raise IsolatedCallError(str(response.get("error", "unknown failure")), str(response.get("traceback", "")))


class _CappedReader:
    """Keeps what a stream sends up to ``limit`` bytes; :meth:`result` is None once it sent more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.chunks: list[bytes] = []

    async def consume(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.total += len(chunk)
            if self.total <= self.limit:
                self.chunks.append(chunk)

    def result(self) -> bytes | None:
        return None if self.total > self.limit else b"".join(self.chunks)


class _TailReader:
    """Keeps the last ``keep`` bytes a stream sends."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.tail = b""

    async def consume(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.tail = (self.tail + chunk)[-self.keep :]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, in any session or process group, from ``/proc``.

    Built from each process's parent id (``/proc/N/stat``), which every Linux kernel has.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.append(child)
                pending.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s descendants (in any session or group) and then ``pid`` itself.

    Stopped first, then killed, a few rounds: a process that forks while being walked is caught on
    the next round.
    """
    for _ in range(3):
        found = descendants(pid)
        if not found:
            break
        for target in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGSTOP)
        for target in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


# --- the child side -----------------------------------------------------------------------------


def child_main() -> None:
    """Serve one request from stdin and exit. Only :func:`run_isolated` should start this."""
    answer_fd = os.dup(1)
    # From here on fd 1 is stderr: whatever the plugin prints cannot corrupt the answer.
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.read())
    _contain_self(int(request.get("parent_pid", 0)), int(request.get("memory_limit_mb", 0)))
    response = _serve(request)
    sys.stdout.flush()
    sys.stderr.flush()
    # Whatever the plugin started ends with the call; then the answer, then a hard exit (a plugin's
    # non-daemon threads or atexit hooks must not keep the child).
    _kill_descendants()
    with os.fdopen(answer_fd, "wb") as answer:
        answer.write(json.dumps(response, ensure_ascii=False).encode("utf-8"))
    os._exit(0)


def _contain_self(parent_pid: int, memory_limit_mb: int) -> None:
    """Sub-reaper, death signal, parent watchdog and memory cap: the child's side of the contract."""
    libc = _libc()
    if libc is not None:
        # Descendants that daemonise (setsid + double fork) are re-parented to us, not to init.
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # SIGTERM from the parent's death: take the descendants along, then go.
    signal.signal(signal.SIGTERM, lambda _s, _f: _die())
    if parent_pid:
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
        ).start()
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _watch_parent(parent_pid: int) -> None:
    # The death signal needs the main thread to run Python; this thread does not.
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    _die()


def _die() -> None:
    _kill_descendants()
    os._exit(137)


def _kill_descendants() -> None:
    for _ in range(3):
        found = descendants(os.getpid())
        if not found:
            return
        for target in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGKILL)
        # Reap what was re-parented to us, so the next walk sees only the living.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = _resolve(request["module"], request["qualname"])
        kwargs = spec.parameters.validate(request["arguments"])
        if spec.parameters.ctx_param is not None:
            kwargs[spec.parameters.ctx_param] = PluginContext(
                volume=None,
                timezone=ZoneInfo(request["timezone"]),
                started_at_monotonic_s=float(request["started_at_monotonic_s"]),
                logger=structlog.get_logger("voiced.plugins").bind(tool=spec.name, isolated=True),
                settings=dict(request["options"]),
            )
        started = time.monotonic()
        result = asyncio.run(spec.func(**kwargs)) if spec.is_async else spec.func(**kwargs)
        output, _ = cap_output(serialise_result(result), int(request["max_output_bytes"]))
        return {"ok": True, "output": output, "elapsed_s": time.monotonic() - started}
    except ToolError as exc:
        return {"ok": False, "error": str(exc), "traceback": traceback.format_exc()}
    except MemoryError:
        return {
            "ok": False,
            "error": "the tool ran out of its memory limit ([plugins] isolated_memory_mb)",
            "traceback": traceback.format_exc(),
        }
    except BaseException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _resolve(module_name: str, qualname: str) -> ToolSpec:
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    spec = tool_spec(obj)
    if spec is None:
        raise LookupError(f"{module_name}.{qualname} is not a @tool function")
    return spec
