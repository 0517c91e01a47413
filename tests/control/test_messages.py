"""The message models: the daemon's turn summary, clipping, the schema."""

from __future__ import annotations

import json

from voiced.control import TurnEvent, TurnSummary, UserTextEvent
from voiced.control.messages import COMMAND_NAMES, EVENT_ADAPTER, MAX_TEXT_CHARS, control_schema, event_json
from voiced.conversation.timeline import TurnTimeline


def test_a_turn_event_from_the_daemons_timeline() -> None:
    timeline = TurnTimeline(speech_end_s=10.0, complete_sent_s=10.7, first_delta_s=10.9, first_sample_s=10.95)
    timeline.chat_id = "7491"
    timeline.heard = "what time is it"
    timeline.reply = "Three."
    timeline.tool_calls.append("current_time")
    turn = TurnSummary.from_summary(timeline.summary())
    assert turn.chat_id == "7491" and turn.heard == "what time is it" and turn.tool_calls == ["current_time"]
    assert turn.latency_ms.speech_end_to_complete_ms == 700.0
    assert turn.latency_ms.speech_end_to_first_sample_ms == 950.0
    assert TurnSummary.from_summary({"unknown": 1, "heard": "x"}).heard == "x"


def test_long_text_is_clipped_not_refused_and_round_trips() -> None:
    event = UserTextEvent(text="a" * 10_000, final=True)
    assert len(event.text) == MAX_TEXT_CHARS and event.text.endswith("…")
    wire = event_json(TurnEvent(turn=TurnSummary(reply="ok")))
    assert EVENT_ADAPTER.validate_json(wire) == TurnEvent(turn=TurnSummary(reply="ok"))


def test_the_schema_validates_its_own_examples() -> None:
    schema = control_schema()
    for example in schema["examples"]["events"]:
        assert EVENT_ADAPTER.validate_python(example).type == example["type"]
    assert json.loads(json.dumps(schema))["version"] == 1
    names = set(schema["command"]["discriminator"]["mapping"])
    assert names == set(COMMAND_NAMES) and "select_device" in names
