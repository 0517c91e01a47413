"""A tool function's parameters → a pydantic model → the JSON Schema the bot is given.

Parameters come from the type hints (``int``, ``float``, ``str``, ``bool``, ``Literal``, ``Enum``,
``list[...]``, ``X | None``, defaults, ``Annotated[..., Field(description=...)]``) or from a single
parameter typed as a pydantic model. A parameter typed :class:`PluginContext` (or named ``ctx``) is
injected by the runner and left out of the schema. The same model validates the bot's arguments, so
the schema and the validation can never disagree.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from voiced.plugins.context import PluginContext


class ArgumentsError(ValueError):
    """The bot's arguments do not fit the tool's schema; the message says what is wrong."""


@dataclass(frozen=True)
class Parameters:
    """How to validate and pass a tool's arguments."""

    #: Validates the arguments object (``extra="forbid"`` unless a user model says otherwise).
    model: type[BaseModel]
    #: The name of the context parameter, if the function takes one.
    ctx_param: str | None
    #: Set when the function takes one pydantic model: the instance is passed under this name.
    model_param: str | None
    #: The cleaned JSON Schema of the arguments object.
    json_schema: dict[str, Any]

    def validate(self, arguments: str | None) -> dict[str, Any]:
        """Parse ``arguments`` (a JSON object as a string; empty means ``{}``) into call kwargs.

        Raises :class:`ArgumentsError` with a message meant for the bot; the context parameter is
        not included — the caller adds it.
        """
        text = (arguments or "").strip()
        raw: object = {}
        if text:
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ArgumentsError(f"arguments are not valid JSON ({exc.msg} at char {exc.pos})") from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ArgumentsError(f"arguments must be a JSON object, got {type(raw).__name__}")
        try:
            instance = self.model.model_validate(raw)
        except ValidationError as exc:
            raise ArgumentsError(format_validation_error(exc)) from exc
        if self.model_param is not None:
            return {self.model_param: instance}
        return {name: getattr(instance, name) for name in type(instance).model_fields}


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, ``field: message``, e.g. ``volume_pct: Field required``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        if error["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown argument")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "invalid arguments: " + "; ".join(parts)


def analyse(func: Callable[..., Any], tool_name: str) -> Parameters:
    """Build the :class:`Parameters` of ``func``; raises ``TypeError`` naming what to fix."""
    signature = inspect.signature(func)
    try:
        hints = get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise TypeError(f"tool {tool_name!r}: cannot resolve its type hints: {exc}") from exc

    ctx_param: str | None = None
    fields: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"tool {tool_name!r}: parameter {name!r} must be an ordinary named parameter"
                " (no *args, **kwargs or positional-only)"
            )
        hint = hints.get(name, inspect.Parameter.empty)
        if hint is PluginContext or (name == "ctx" and hint is inspect.Parameter.empty):
            ctx_param = name
            continue
        if hint is inspect.Parameter.empty:
            raise TypeError(
                f"tool {tool_name!r}: parameter {name!r} has no type hint; the bot needs its type"
            )
        if name.startswith("_"):
            raise TypeError(f"tool {tool_name!r}: parameter {name!r} must not start with an underscore")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hint, default)

    if len(fields) == 1:
        (only_name, (only_hint, _)) = next(iter(fields.items()))
        if isinstance(only_hint, type) and issubclass(only_hint, BaseModel):
            return Parameters(
                model=only_hint,
                ctx_param=ctx_param,
                model_param=only_name,
                json_schema=clean_schema(only_hint.model_json_schema()),
            )
    try:
        with warnings.catch_warnings():
            # A parameter named like a BaseModel method ("json", "schema") works as a field; the
            # warning about shadowing would only confuse plugin authors.
            warnings.filterwarnings(
                "ignore", message="Field name .* shadows an attribute", category=UserWarning
            )
            model = create_model(
                f"{tool_name}_arguments",
                __config__=ConfigDict(extra="forbid"),
                **fields,
            )
        json_schema = model.model_json_schema()
    except Exception as exc:
        raise TypeError(f"tool {tool_name!r}: unsupported parameter types: {exc}") from exc
    return Parameters(
        model=model, ctx_param=ctx_param, model_param=None, json_schema=clean_schema(json_schema)
    )


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A self-contained, title-free copy of a pydantic JSON Schema.

    ``$ref``s into ``$defs`` are inlined and ``X | None`` becomes plain ``X``, because the Coze
    console's parameter editor (protocol.md §4.3) and the bot's model cope best with flat schemas;
    an optional parameter is already expressed by leaving it out of ``required``.
    """
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, depth: int) -> Any:
        if depth > 32:
            raise TypeError("the parameter types are recursive; a tool's arguments must be finite")
        if isinstance(node, list):
            return [walk(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = dict(defs[ref.removeprefix("#/$defs/")])
            target.update({k: v for k, v in node.items() if k != "$ref"})
            return walk(target, depth + 1)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs"):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: walk(sub, depth + 1) for name, sub in value.items()}
            else:
                out[key] = walk(value, depth + 1)
        variants = out.get("anyOf")
        if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
            (kept,) = [v for v in variants if v != {"type": "null"}]
            del out["anyOf"]
            out = {**kept, **out}
        return out

    cleaned: dict[str, Any] = walk(schema, 0)
    cleaned.setdefault("type", "object")
    cleaned.setdefault("properties", {})
    return cleaned
