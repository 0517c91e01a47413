"""Answering ``conversation.chat.requires_action``: run every tool call, one output per call.

The daemon's contract (protocol.md §4.3)::

    outputs = await runner.run(chat.id, chat.tool_calls)      # never raises for a plugin failure
    send ConversationChatSubmitToolOutputs(chat_id=chat.id, tool_outputs=outputs)   # one submission

If the chat is cancelled (barge-in) or the connection drops, cancel the task awaiting :meth:`run`:
every plugin task is cancelled (isolated children are killed), :meth:`run` raises
``CancelledError``, and the caller must submit nothing for that chat.

No plugin code runs on the daemon's event loop. A sync tool runs in its own daemon thread; an async
tool runs in its own daemon thread too, on a private event loop. So a plugin that blocks
(``time.sleep``, a busy loop), calls ``sys.exit``, raises ``KeyboardInterrupt`` or any
``BaseException``, or cancels "every task" reaches only its own thread and loop: the daemon keeps
talking, answers the bot with an error output on time, and still obeys SIGTERM. A thread cannot be
killed, so a tool that ignores its timeout keeps its thread until it returns (their number is
capped); only tools marked ``isolated`` run in a process that can be killed and memory-capped. What
a thread cannot contain is process-wide harm: ``os._exit``, a segfault in C code, memory growth, or
changing global state (signal handlers, ``sys.modules``); run untrusted plugins isolated.

Every output is passed through :func:`voiced.log.redact` before it is sent: a tool whose exception
text (or result) quotes the Coze token sends ``***`` in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from voiced.log import redact
from voiced.plugins.context import PluginContext, ToolError, VolumeControl
from voiced.plugins.isolated import IsolatedCallError, run_isolated
from voiced.plugins.output import cap_output, error_output, serialise_result
from voiced.plugins.registry import PluginRegistry, ToolInfo
from voiced.plugins.schema import ArgumentsError
from voiced.plugins.settings import PluginSettings
from voiced.protocol.models import FunctionCall, ToolCall, ToolOutput

#: Builds the context handed to one call of the given tool.
ContextFactory = Callable[[ToolInfo], PluginContext]

# Threads of sync plugins that overran their timeout keep running; past this many beyond the
# concurrency limit, sync calls are refused so hung plugins cannot exhaust the device's memory.
_EXTRA_THREADS_ALLOWED = 8
# How long a cancelled async tool may take to finish its cleanup on its own loop before the caller
# stops waiting for it.
_CANCEL_GRACE_S = 0.25

log = structlog.get_logger("voiced.plugins")


def make_context_factory(
    settings: PluginSettings,
    *,
    volume: VolumeControl | None = None,
    started_at_monotonic_s: float | None = None,
) -> ContextFactory:
    """The usual :data:`ContextFactory`: the daemon's volume, the configured zone and tool options."""
    started = time.monotonic() if started_at_monotonic_s is None else started_at_monotonic_s
    zone = settings.zone

    def factory(info: ToolInfo) -> PluginContext:
        return PluginContext(
            volume=volume,
            timezone=zone,
            started_at_monotonic_s=started,
            logger=structlog.get_logger("voiced.plugins").bind(tool=info.name),
            settings=dict(settings.override(info.name).options),
        )

    return factory


@dataclass(frozen=True)
class CallResult:
    """One answered call: the output to submit, whether the tool succeeded, and how long it took."""

    output: ToolOutput
    ok: bool
    elapsed_s: float
    #: The tool ran past its timeout (``ok`` is False): it was cancelled or its process killed.
    timed_out: bool = False


class ToolRunner:
    """Runs tool calls against a :class:`PluginRegistry` under the ``[plugins]`` limits."""

    def __init__(
        self,
        registry: PluginRegistry,
        settings: PluginSettings | None = None,
        context_factory: ContextFactory | None = None,
        *,
        volume: VolumeControl | None = None,
        started_at_monotonic_s: float | None = None,
    ) -> None:
        """Pass ``volume`` (the daemon's playback volume) or a whole ``context_factory``."""
        self._registry = registry
        self._settings = settings or registry.settings
        self._started_at_monotonic_s = (
            time.monotonic() if started_at_monotonic_s is None else started_at_monotonic_s
        )
        self._context_factory = context_factory or make_context_factory(
            self._settings, volume=volume, started_at_monotonic_s=self._started_at_monotonic_s
        )
        self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        self._threads_lock = threading.Lock()
        self._threads_alive = 0

    @property
    def plugin_threads_alive(self) -> int:
        """Sync plugin threads still running, including those that overran their timeout."""
        with self._threads_lock:
            return self._threads_alive

    async def run(self, chat_id: str, tool_calls: Sequence[ToolCall]) -> list[ToolOutput]:
        """Run all ``tool_calls`` concurrently; one output per call id, in the order of ``tool_calls``.

        Never raises for a plugin's failure (that becomes an error output). Each call's timeout
        starts when it gets one of the ``max_concurrency`` slots. Submit the result in one
        ``conversation.chat.submit_tool_outputs`` with this ``chat_id``. Raises ``CancelledError``
        when cancelled — then submit nothing.
        """
        return [result.output for result in await self.run_detailed(chat_id, tool_calls)]

    async def run_detailed(self, chat_id: str, tool_calls: Sequence[ToolCall]) -> list[CallResult]:
        """Like :meth:`run`, with success flags and timings (for the CLI and metrics)."""
        unique: dict[str, ToolCall] = {}
        for call in tool_calls:
            if call.id in unique:
                # The protocol wants exactly one output per tool_call_id (§4.3).
                log.warning("duplicate tool_call_id answered once", chat_id=chat_id, tool_call_id=call.id)
                continue
            unique[call.id] = call
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._run_one(chat_id, call), name=f"tool {call.function.name} {call.id}")
                for call in unique.values()
            ]
        return [task.result() for task in tasks]

    async def call(self, name: str, arguments: str = "") -> CallResult:
        """Run one tool by name, as if the bot had called it (``voiced plugins call``)."""
        call = ToolCall(id="local", function=FunctionCall(name=name, arguments=arguments))
        (result,) = await self.run_detailed("local", [call])
        return result

    async def _run_one(self, chat_id: str, call: ToolCall) -> CallResult:
        started = time.monotonic()
        name = call.function.name
        call_log = log.bind(chat_id=chat_id, tool=name, tool_call_id=call.id)

        def failed(message: str, *, timed_out: bool = False) -> CallResult:
            capped, _ = cap_output(error_output(name, redact(message)), self._settings.max_output_bytes)
            return CallResult(
                ToolOutput(tool_call_id=call.id, output=capped),
                False,
                time.monotonic() - started,
                timed_out=timed_out,
            )

        info = self._registry.get(name)
        if info is None:
            call_log.warning(
                "bot called an unknown tool",
                hint="declare on the bot only the tools `voiced plugins schema` prints",
            )
            return failed(f"unknown tool {name!r}: this device has no such tool")
        if not info.enabled:
            call_log.warning("bot called a tool that is not enabled", hint="add it to [plugins] enabled")
            return failed(f"tool {name!r} is not enabled on this device")
        try:
            kwargs = info.spec.parameters.validate(call.function.arguments)
        except ArgumentsError as exc:
            call_log.warning(
                "bot sent invalid tool arguments", error=str(exc), arguments=call.function.arguments[:200]
            )
            return failed(str(exc))

        try:
            async with self._slots:
                deadline = asyncio.timeout(info.timeout_s)
                try:
                    async with deadline:
                        output = await self._execute(info, call.function.arguments, kwargs)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    self._log_timeout(call_log, info)
                    return failed(f"tool {name!r} timed out after {info.timeout_s:g} s", timed_out=True)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # Not a cancellation of ours: the plugin raised CancelledError itself.
            call_log.error("plugin raised CancelledError", hint="fix the plugin")
            return failed("CancelledError: the plugin cancelled itself")
        except ToolError as exc:
            call_log.warning("tool reported a failure", error=str(exc))
            return failed(str(exc))
        except IsolatedCallError as exc:
            call_log.error(
                "isolated tool failed", error=str(exc), details=exc.details[-2000:], hint="fix the plugin"
            )
            return failed(str(exc))
        except _TooManyThreadsError:
            call_log.error(
                "sync tool refused: too many hung plugin threads",
                threads=self.plugin_threads_alive,
                hint="mark the hanging tool isolated = true in [plugins.tools.NAME], or restart voiced",
            )
            return failed("the device is overloaded by hung plugins; try again later")
        except Exception as exc:
            call_log.error(
                "tool raised", error=f"{type(exc).__name__}: {exc}", hint="fix the plugin", exc_info=exc
            )
            return failed(f"{type(exc).__name__}: {exc}")

        capped, truncated = cap_output(redact(output), self._settings.max_output_bytes)
        if truncated:
            call_log.warning(
                "tool output truncated",
                output_bytes=len(output.encode("utf-8")),
                max_output_bytes=self._settings.max_output_bytes,
                hint="return less, or raise [plugins] max_output_bytes",
            )
        elapsed_s = time.monotonic() - started
        call_log.info("tool call answered", elapsed_ms=round(elapsed_s * 1000, 1), output_bytes=len(capped))
        return CallResult(ToolOutput(tool_call_id=call.id, output=capped), True, elapsed_s)

    async def _execute(self, info: ToolInfo, raw_arguments: str, kwargs: dict[str, Any]) -> str:
        spec = info.spec
        if info.isolated:
            return await run_isolated(
                spec,
                raw_arguments,
                timezone=self._settings.timezone,
                started_at_monotonic_s=self._started_at_monotonic_s,
                options=dict(self._settings.override(info.name).options),
                max_output_bytes=self._settings.max_output_bytes,
                memory_limit_mb=self._settings.isolated_memory_mb,
            )
        if spec.parameters.ctx_param is not None:
            kwargs = {**kwargs, spec.parameters.ctx_param: self._context_factory(info)}
        result = await self._in_thread(spec.func, kwargs, info.name, is_async=spec.is_async)
        return serialise_result(result)

    async def _in_thread(
        self, func: Callable[..., Any], kwargs: dict[str, Any], name: str, *, is_async: bool
    ) -> Any:
        # A fresh daemon thread per call rather than the loop's executor: a hung plugin then holds
        # only its own thread, cannot starve the executor the daemon uses (e.g. for DNS), and cannot
        # keep the process alive at exit. An async tool gets a private event loop in that thread.
        with self._threads_lock:
            if self._threads_alive >= self._settings.max_concurrency + _EXTRA_THREADS_ALLOWED:
                raise _TooManyThreadsError
            self._threads_alive += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()
        plugin_loop: asyncio.AbstractEventLoop | None = None
        plugin_task: asyncio.Task[Any] | None = None
        if is_async:
            plugin_loop = asyncio.new_event_loop()
            # Created here, run there: the caller can cancel it before the thread even starts.
            plugin_task = plugin_loop.create_task(func(**kwargs), context=context)

        finished: asyncio.Future[None] = loop.create_future()

        def deliver(result: Any, error: BaseException | None) -> None:
            if not finished.done():
                finished.set_result(None)
            if future.done():
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        def target() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                if plugin_loop is not None and plugin_task is not None:
                    result = _run_private_loop(plugin_loop, plugin_task)
                else:
                    result = context.run(func, **kwargs)
            except asyncio.CancelledError:
                error = _PluginCancelledError()
            except Exception as exc:
                error = exc
            except BaseException as exc:
                # SystemExit and friends from a plugin must not travel into the event loop.
                error = RuntimeError(f"the plugin raised {type(exc).__name__}: {exc}")
            finally:
                with self._threads_lock:
                    self._threads_alive -= 1
            # RuntimeError: the loop is closed, nobody waits for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, result, error)

        threading.Thread(target=target, name=f"voiced-plugin-{name}", daemon=True).start()
        try:
            return await future
        except _PluginCancelledError:
            raise asyncio.CancelledError from None
        finally:
            if plugin_loop is not None and plugin_task is not None and not finished.done():
                # Our caller gave up (timeout, barge-in): cancel the plugin on its own loop. If that
                # loop is blocked, the cancellation waits there; the daemon does not.
                with contextlib.suppress(RuntimeError):
                    plugin_loop.call_soon_threadsafe(plugin_task.cancel)
                # A well-behaved tool has finished its cleanup when run() raises; a blocked one is
                # left behind after a short grace.
                await asyncio.wait({finished}, timeout=_CANCEL_GRACE_S)

    @staticmethod
    def _log_timeout(call_log: Any, info: ToolInfo) -> None:
        if info.isolated:
            call_log.warning("isolated tool timed out; its process was killed", timeout_s=info.timeout_s)
        elif info.spec.is_async:
            call_log.warning(
                "tool timed out and was cancelled",
                timeout_s=info.timeout_s,
                hint="raise its timeout_s or fix it",
            )
        else:
            call_log.warning(
                "sync tool timed out; its thread keeps running until it returns",
                timeout_s=info.timeout_s,
                hint="a thread cannot be killed: set isolated = true in [plugins.tools.NAME] so it is",
            )


def _run_private_loop(plugin_loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Any:
    """Run an async tool's task to its end on its own loop (in the calling thread), then close it."""
    asyncio.set_event_loop(plugin_loop)
    try:
        return plugin_loop.run_until_complete(task)
    finally:
        try:
            # Whatever the plugin spawned and left behind ends with its call.
            leftovers = [t for t in asyncio.all_tasks(plugin_loop) if not t.done()]
            for leftover in leftovers:
                leftover.cancel()
            if leftovers:
                plugin_loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            plugin_loop.run_until_complete(plugin_loop.shutdown_asyncgens())
        except BaseException:
            log.warning("plugin left tasks that would not finish", exc_info=False)
        finally:
            asyncio.set_event_loop(None)
            plugin_loop.close()


class _PluginCancelledError(Exception):
    """The plugin's coroutine ended in CancelledError (by itself, or because we cancelled it)."""


class _TooManyThreadsError(Exception):
    """Raised instead of starting one more thread when hung plugin threads pile up."""
