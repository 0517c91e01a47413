"""Discovery of tools: the ``voiced.plugins`` entry-point group and the modules named in the config.

An entry point (``[project.entry-points."voiced.plugins"]`` in a plugin package) may name a module, a
list or tuple of decorated functions, or one decorated function. From a module, every decorated
function it exposes is collected (or, if it defines ``VOICED_TOOLS``, exactly that list).

A plugin that fails to import or declares a broken tool is skipped with one log line saying what to
do; it never stops the daemon. Each plugin is imported in a thread of its own with a deadline
(``[plugins] import_timeout_s``): one that raises anything (even ``SystemExit`` or
``KeyboardInterrupt``) or takes too long (sleeps, waits on the network) is skipped, and the start
goes on. A plugin cannot install signal handlers at import (only the main thread may). Every tool
found is listed; only those named in ``[plugins] enabled`` may run.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import structlog

from voiced.plugins.api import ToolSpec, tool_spec
from voiced.plugins.settings import PluginSettings

ENTRY_POINT_GROUP = "voiced.plugins"

log = structlog.get_logger("voiced.plugins")


@dataclass(frozen=True)
class ToolInfo:
    """One discovered tool, with the effective limits after ``[plugins.tools.NAME]`` overrides."""

    name: str
    description: str
    #: Where it came from, e.g. ``"entry point 'builtin' (voiced.plugins.builtin)"``.
    source: str
    enabled: bool
    #: The JSON Schema of its arguments object.
    schema: dict[str, Any]
    isolated: bool
    timeout_s: float
    spec: ToolSpec = field(repr=False, compare=False)

    def declaration(self) -> dict[str, Any]:
        """What to declare on the Coze bot for this tool: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.schema}


@dataclass(frozen=True)
class PluginLoadError:
    """A plugin source that was skipped, and why (shown by ``voiced plugins list``)."""

    source: str
    message: str


class PluginRegistry:
    """The tools voiced knows about. Build it with :meth:`load`; it does not change afterwards."""

    def __init__(
        self, tools: Iterable[ToolInfo], errors: Iterable[PluginLoadError] = (), *, settings: PluginSettings
    ) -> None:
        self._tools = {info.name: info for info in tools}
        self.errors: list[PluginLoadError] = list(errors)
        self.settings = settings

    @classmethod
    def load(
        cls, settings: PluginSettings, *, entry_points_: Iterable[EntryPoint] | None = None
    ) -> PluginRegistry:
        """Discover tools from the entry points (installed packages) and ``settings.modules``.

        ``entry_points_`` replaces the installed entry points (tests, embedding). Never raises for a
        broken plugin: it is logged and listed in :attr:`errors`. Hand the result to a ToolRunner.
        """
        found: list[tuple[ToolSpec, str]] = []
        errors: list[PluginLoadError] = []
        eps = list(entry_points(group=ENTRY_POINT_GROUP) if entry_points_ is None else entry_points_)
        for ep in eps:
            source = f"entry point {ep.name!r} ({ep.value})"
            try:
                obj = _import_with_deadline(ep.load, settings.import_timeout_s)
            except _ImportFailedError as exc:
                errors.append(_skip(source, exc, "fix or uninstall the package that provides it"))
                continue
            found.extend(_collect(obj, source, errors))
        for module_name in settings.modules:
            source = f"module {module_name}"
            try:
                module = _import_with_deadline(
                    functools.partial(importlib.import_module, module_name), settings.import_timeout_s
                )
            except _ImportFailedError as exc:
                errors.append(_skip(source, exc, "fix the module or remove it from [plugins] modules"))
                continue
            found.extend(_collect(module, source, errors))

        tools: dict[str, ToolInfo] = {}
        for spec, source in found:
            existing = tools.get(spec.name)
            if existing is not None:
                if existing.spec.func is not spec.func:
                    errors.append(
                        PluginLoadError(source, f"tool {spec.name!r} already provided by {existing.source}")
                    )
                    log.warning(
                        "plugin tool name clash, second one skipped",
                        tool=spec.name,
                        kept=existing.source,
                        skipped=source,
                        hint="rename one of the tools or remove one plugin",
                    )
                continue
            override = settings.override(spec.name)
            tools[spec.name] = ToolInfo(
                name=spec.name,
                description=spec.description,
                source=source,
                enabled=spec.name in settings.enabled,
                schema=spec.parameters.json_schema,
                isolated=spec.isolated if override.isolated is None else override.isolated,
                timeout_s=override.timeout_s or spec.timeout_s or settings.timeout_s,
                spec=spec,
            )
        for name in settings.enabled:
            if name not in tools:
                log.warning(
                    "enabled plugin tool not found",
                    tool=name,
                    hint="install the package that provides it, add its module to [plugins] modules,"
                    " or remove it from [plugins] enabled",
                )
        for name in settings.tools:
            if name not in tools:
                log.warning("settings for unknown plugin tool ignored", tool=name, hint="check the name")
        return cls(tools.values(), errors, settings=settings)

    def get(self, name: str) -> ToolInfo | None:
        """The tool called ``name`` (enabled or not), or ``None``."""
        return self._tools.get(name)

    def all(self) -> list[ToolInfo]:
        """Every discovered tool, sorted by name."""
        return sorted(self._tools.values(), key=lambda info: info.name)

    def enabled(self) -> list[ToolInfo]:
        """The tools allowed to run, sorted by name."""
        return [info for info in self.all() if info.enabled]

    def schema_json(self) -> str:
        """The JSON list of enabled tool declarations to paste into the Coze bot's device plugins."""
        return json.dumps([info.declaration() for info in self.enabled()], ensure_ascii=False, indent=2)


def _collect(obj: object, source: str, errors: list[PluginLoadError]) -> list[tuple[ToolSpec, str]]:
    candidates: Iterable[object]
    if isinstance(obj, types.ModuleType):
        declared = getattr(obj, "VOICED_TOOLS", None)
        candidates = declared if isinstance(declared, (list, tuple)) else vars(obj).values()
    elif isinstance(obj, (list, tuple)):
        candidates = obj
    else:
        candidates = [obj]
    specs: list[tuple[ToolSpec, str]] = []
    for candidate in candidates:
        spec = tool_spec(candidate)
        if spec is not None:
            specs.append((spec, source))
    if not specs:
        message = "no @tool functions found in it"
        errors.append(PluginLoadError(source, message))
        log.warning(
            "plugin provides no tools",
            source=source,
            hint="decorate functions with voiced.plugins.tool, or point the entry point at the module",
        )
    return specs


class _ImportFailedError(Exception):
    """A plugin's import raised, or did not finish in time; ``str()`` says which and why."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def _import_with_deadline(load: Callable[[], object], timeout_s: float) -> object:
    """``load()`` run in a daemon thread; its result, or :class:`_ImportFailedError`.

    A thread cannot be stopped: an import that never ends keeps its thread (and that module's import
    lock) for good, but the start goes on without it.
    """
    outcome: list[object] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(load())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="voiced-plugin-import", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise _ImportFailedError(
            f"importing it took longer than {timeout_s:g} s ([plugins] import_timeout_s)"
        )
    if failure:
        raise _ImportFailedError(f"{type(failure[0]).__name__}: {failure[0]}", failure[0])
    return outcome[0]


def _skip(source: str, exc: _ImportFailedError, hint: str) -> PluginLoadError:
    message = str(exc)
    log.error(
        "plugin skipped: it failed to load",
        source=source,
        error=message,
        hint=hint,
        exc_info=exc.cause if isinstance(exc.cause, Exception) else None,
    )
    return PluginLoadError(source, message)
