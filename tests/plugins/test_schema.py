"""Type hints and pydantic models become the JSON Schema the bot sees, and validate its arguments."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import pytest
from pydantic import Field

from tests.plugins import sample_tools
from voiced.plugins import ArgumentsError, PluginContext, tool, tool_spec
from voiced.plugins.api import ToolSpec


def spec_of(func: object) -> ToolSpec:
    spec = tool_spec(func)
    assert spec is not None
    return spec


def test_types_defaults_and_descriptions_become_json_schema() -> None:
    schema = spec_of(sample_tools.paint).parameters.json_schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["colour"]
    props: dict[str, Any] = schema["properties"]
    assert set(props) == {"colour", "shade", "coats", "thinned", "tags", "ratio"}, "ctx must not be in it"
    assert props["colour"] == {"enum": ["red", "green"], "type": "string"}
    assert props["shade"] == {"enum": ["light", "dark"], "type": "string", "default": "light"}
    assert props["coats"] == {"type": "integer", "minimum": 1, "description": "How many coats.", "default": 1}
    assert props["thinned"] == {"type": "boolean", "default": False}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "default": None}
    assert props["ratio"] == {"type": "number", "default": None}
    assert "title" not in str(schema) and "$ref" not in str(schema)


def test_a_single_pydantic_model_parameter_is_the_schema() -> None:
    spec = spec_of(sample_tools.lamp)
    schema = spec.parameters.json_schema
    assert schema["required"] == ["room"]
    assert schema["properties"]["room"] == {"type": "string", "description": "Which room's lamp."}
    kwargs = spec.parameters.validate('{"room": "kitchen"}')
    assert kwargs == {"request": sample_tools.LampRequest(room="kitchen", on=True)}


def test_the_context_parameter_is_found_by_type_or_by_name_and_left_out() -> None:
    @tool(description="d")
    def by_name(ctx, n: int) -> int:  # type: ignore[no-untyped-def]
        return n

    assert spec_of(by_name).parameters.ctx_param == "ctx"
    assert list(spec_of(by_name).parameters.json_schema["properties"]) == ["n"]
    assert spec_of(sample_tools.paint).parameters.ctx_param == "ctx"
    assert spec_of(sample_tools.sleepy).parameters.ctx_param is None


def test_validation_converts_and_names_each_problem() -> None:
    params = spec_of(sample_tools.paint).parameters
    kwargs = params.validate('{"colour": "green", "coats": 2}')
    assert kwargs["colour"] is sample_tools.Colour.GREEN
    assert kwargs["coats"] == 2 and kwargs["shade"] == "light"

    with pytest.raises(ArgumentsError, match=r"colour: Field required"):
        params.validate("")
    with pytest.raises(ArgumentsError, match=r"coats: Input should be greater than or equal to 1"):
        params.validate('{"colour": "red", "coats": 0}')
    with pytest.raises(ArgumentsError, match=r"colour: Input should be 'red' or 'green'"):
        params.validate('{"colour": "blue"}')
    with pytest.raises(ArgumentsError, match=r"paint_brush: unknown argument"):
        params.validate('{"colour": "red", "paint_brush": 1}')
    with pytest.raises(ArgumentsError, match=r"not valid JSON"):
        params.validate('{"colour": ')
    with pytest.raises(ArgumentsError, match=r"must be a JSON object, got list"):
        params.validate("[1]")


def test_no_arguments_accepts_empty_string_and_null() -> None:
    params = spec_of(sample_tools.hang_async).parameters
    assert params.validate("") == {}
    assert params.validate("null") == {}
    assert params.validate("  {} ") == {}


def test_name_and_description_defaults_come_from_the_function() -> None:
    @tool
    def switch_fan(on: Annotated[bool, Field(description="True to run the fan.")]) -> str:
        """Run or stop the ceiling fan.

        More text the bot does not need.
        """
        return "ok"

    spec = spec_of(switch_fan)
    assert spec.name == "switch_fan"
    assert spec.description == "Run or stop the ceiling fan."
    assert spec.parameters.json_schema["properties"]["on"]["description"] == "True to run the fan."
    assert switch_fan(on=True) == "ok", "the decorator must leave the function callable"


def test_unusable_tools_are_refused_at_import_with_a_reason() -> None:
    with pytest.raises(TypeError, match="needs a description"):

        @tool
        def undocumented() -> None: ...

    with pytest.raises(TypeError, match="has no type hint"):

        @tool(description="d")
        def untyped(x) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(TypeError, match="not usable"):

        @tool(name="bad name!", description="d")
        def named() -> None: ...

    with pytest.raises(TypeError, match=r"\*args"):

        @tool(description="d")
        def star(*values: int) -> None: ...

    with pytest.raises(TypeError, match="timeout_s must be > 0"):

        @tool(description="d", timeout_s=0)
        def instant() -> None: ...


def test_context_annotation_is_recognised_under_postponed_annotations() -> None:
    def with_ctx(ctx: PluginContext, level: int = 3) -> int:
        return level

    spec = spec_of(tool(description="d")(with_ctx))
    assert spec.parameters.ctx_param == "ctx"
    assert spec.parameters.json_schema["properties"] == {"level": {"type": "integer", "default": 3}}


def test_awkward_parameter_names_and_types() -> None:
    @tool(description="d")
    def shadowing(json: str, schema: int = 1) -> str:
        return json

    assert spec_of(shadowing).parameters.validate('{"json": "x", "schema": 2}') == {"json": "x", "schema": 2}

    with pytest.raises(TypeError, match="must not start with an underscore"):

        @tool(description="d")
        def private(_secret: int) -> None: ...

    with pytest.raises(TypeError, match="unsupported parameter types"):

        @tool(description="d")
        def opaque(handle: threading.Lock) -> None: ...
