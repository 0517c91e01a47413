"""Running one tool call in a child process that is killed at its deadline.

The parent side is :func:`run_isolated`; the child side is :func:`child_main`, started as
``python -c "from voiced.plugins.isolated import child_main; child_main()"`` (not ``-m``, which
would import this module twice). The request is one JSON document on the child's stdin; the answer
one JSON document on a private copy of its stdout, while the plugin's own prints go to stderr so
they cannot corrupt the answer. The child runs in its own session: killing its process group also
ends anything the plugin started. A plugin that blocks, segfaults or calls ``os._exit`` costs one
child process, never the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
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
) -> str:
    """Run ``spec`` with the raw ``arguments`` JSON in a fresh child; returns the output string.

    Raises :class:`IsolatedCallError` when the plugin fails or the child dies. Wrap the call in a
    timeout: on timeout or cancellation the child's process group is killed and reaped before the
    exception propagates, so no child outlives its call.
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
    }
    env = dict(os.environ)
    # The child must import the same modules the parent did, including ones added to sys.path at
    # run time (config `modules`, tests), so it inherits the parent's search path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
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
        answer, stderr_tail, returncode = await asyncio.gather(
            _read_capped(proc.stdout, answer_limit),
            _read_tail(proc.stderr, _STDERR_KEEP_BYTES),
            proc.wait(),
        )
    finally:
        # Always: the child may be gone while something it started still holds the pipes open.
        _kill_group(proc.pid)
        if proc.returncode is None:
            # Reap it even while being cancelled, so the kill is complete when we return.
            await asyncio.shield(proc.wait())
    return _decode_answer(spec.name, answer, stderr_tail, returncode)


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


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    """Everything until EOF, or ``None`` once more than ``limit`` bytes arrived (the rest is drained)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        if total <= limit:
            chunks.append(chunk)
    return None if total > limit else b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# --- the child side -----------------------------------------------------------------------------


def child_main() -> None:
    """Serve one request from stdin and exit. Only :func:`run_isolated` should start this."""
    answer_fd = os.dup(1)
    # From here on fd 1 is stderr: whatever the plugin prints cannot corrupt the answer.
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.read())
    response = _serve(request)
    with os.fdopen(answer_fd, "wb") as answer:
        answer.write(json.dumps(response, ensure_ascii=False).encode("utf-8"))
    sys.stdout.flush()
    sys.stderr.flush()


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
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _resolve(module_name: str, qualname: str) -> ToolSpec:
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    spec = tool_spec(obj)
    if spec is None:
        raise LookupError(f"{module_name}.{qualname} is not a @tool function")
    return spec
