"""Output strings: serialisation and the size cap."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from voiced.plugins.output import TRUNCATION_MARKER, cap_output, error_output, serialise_result


def test_strings_pass_through_and_the_rest_is_compact_json() -> None:
    assert serialise_result("it is 5 PM") == "it is 5 PM"
    assert serialise_result({"a": [1, 2.5, None, "é"]}) == '{"a":[1,2.5,null,"é"]}'
    assert serialise_result(3) == "3"


def test_error_outputs_are_json_with_the_tool_name() -> None:
    assert json.loads(error_output("lamp", "broken")) == {"error": "broken", "tool": "lamp"}


@settings(max_examples=50)
@given(text=st.text(min_size=0, max_size=3000), cap=st.integers(min_value=256, max_value=2000))
def test_capped_text_always_fits(text: str, cap: int) -> None:
    capped, truncated = cap_output(text, cap)
    assert len(capped.encode("utf-8")) <= cap
    assert truncated == (len(text.encode("utf-8")) > cap)
    if not truncated:
        assert capped == text


@settings(max_examples=50)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda children: (
            st.lists(children, max_size=20) | st.dictionaries(st.text(max_size=10), children, max_size=20)
        ),
        max_leaves=200,
    ),
    cap=st.integers(min_value=256, max_value=1000),
)
def test_capped_json_stays_json(value: object, cap: int) -> None:
    text = serialise_result([value])  # a bare str would pass through as plain text
    capped, truncated = cap_output(text, cap)
    assert len(capped.encode("utf-8")) <= cap
    decoded = json.loads(capped)
    if truncated:
        assert decoded["truncated"] is True


def test_plain_text_gets_a_marker() -> None:
    capped, truncated = cap_output("word " * 1000, 300)
    assert truncated and capped.endswith(TRUNCATION_MARKER)
