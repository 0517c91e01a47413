"""The plugin author's API: the :func:`tool` decorator.

A tool is a plain function, sync or async, decorated with :func:`tool`::

    @tool(description="Switch the desk lamp on or off.", timeout_s=2.0)
    async def lamp(ctx: PluginContext, on: bool) -> dict[str, object]:
        ...

The decorator returns the function unchanged (it stays callable and testable) and attaches a
:class:`ToolSpec`. The registry collects decorated functions from a module, a list, or a single
function; the runner validates the bot's arguments against the schema built here and calls it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from voiced.plugins.context import PluginContext, ToolError, VolumeControl
from voiced.plugins.schema import Parameters, analyse

F = TypeVar("F", bound=Callable[..., Any])

_SPEC_ATTR = "__voiced_tool__"
# Coze device-side plugin names and most LLM tool APIs accept this shape; anything else is refused
# at import time rather than when the bot first calls it.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class ToolSpec:
    """Everything the registry and the runner need to know about one decorated function."""

    name: str
    description: str
    func: Callable[..., Any] = field(repr=False)
    is_async: bool
    #: The tool's own timeout in seconds; ``None`` means the ``[plugins] timeout_s`` default.
    timeout_s: float | None
    #: Run in a subprocess that is killed at the timeout.
    isolated: bool
    parameters: Parameters = field(repr=False)

    @property
    def import_path(self) -> tuple[str, str] | None:
        """``(module, qualname)`` a subprocess can import the function by, or ``None`` if it cannot."""
        module = getattr(self.func, "__module__", None)
        qualname = getattr(self.func, "__qualname__", "")
        if not module or module == "__main__" or "<locals>" in qualname:
            return None
        return module, qualname


@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    isolated: bool = False,
) -> Callable[[F], F]: ...


def tool(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    isolated: bool = False,
) -> F | Callable[[F], F]:
    """Declare a function as a tool the bot may call.

    ``name`` defaults to the function name, ``description`` to the first paragraph of its docstring;
    the bot chooses tools by these, so write them for the bot. ``timeout_s`` overrides the configured
    default; ``isolated=True`` runs every call in a subprocess that is killed at the timeout (use it
    for code that may block or crash). Raises ``TypeError`` at import when the function cannot be a
    tool (missing type hints or description, a bad name, unsupported parameter types).
    Afterwards, add the name to ``[plugins] enabled`` — nothing runs without it.
    """

    def decorate(target: F) -> F:
        spec = _make_spec(target, name, description, timeout_s, isolated)
        setattr(target, _SPEC_ATTR, spec)
        return target

    if func is not None:
        return decorate(func)
    return decorate


def tool_spec(obj: object) -> ToolSpec | None:
    """The :class:`ToolSpec` attached to ``obj`` by :func:`tool`, or ``None``."""
    spec = getattr(obj, _SPEC_ATTR, None)
    return spec if isinstance(spec, ToolSpec) else None


def _make_spec(
    func: Callable[..., Any],
    name: str | None,
    description: str | None,
    timeout_s: float | None,
    isolated: bool,
) -> ToolSpec:
    if not callable(func):
        raise TypeError(f"@tool decorates functions, not {type(func).__name__}")
    tool_name: str = name or str(getattr(func, "__name__", ""))
    if not _NAME_RE.match(tool_name):
        raise TypeError(
            f"tool name {tool_name!r} is not usable: use letters, digits and underscores, 1-64 chars,"
            " not starting with a digit"
        )
    text = description if description is not None else _first_paragraph(inspect.getdoc(func))
    if not text or not text.strip():
        raise TypeError(f"tool {tool_name!r} needs a description (argument or docstring) for the bot")
    if timeout_s is not None and not timeout_s > 0:
        raise TypeError(f"tool {tool_name!r}: timeout_s must be > 0, got {timeout_s!r}")
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise TypeError(f"tool {tool_name!r} must return a value, not be a generator")
    return ToolSpec(
        name=tool_name,
        description=text.strip(),
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        timeout_s=timeout_s,
        isolated=isolated,
        parameters=analyse(func, tool_name),
    )


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


__all__ = ["PluginContext", "ToolError", "ToolSpec", "VolumeControl", "tool", "tool_spec"]
