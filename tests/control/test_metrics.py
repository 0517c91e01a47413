"""/metrics as Prometheus parses it, fed by events, observations and a snapshot."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.control.fake_target import running_server
from tests.control.http_get import http_get
from voiced.control import (
    ConnectionEvent,
    ControlSettings,
    InterruptEvent,
    Metrics,
    MetricsSnapshot,
    ServerErrorEvent,
    State,
    StateEvent,
    ToolEvent,
    TurnEvent,
    TurnLatency,
    TurnSummary,
)
from voiced.control.messages import Event
from voiced.control.metrics import MonotonicTotal


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_monotonic_total_survives_restarts() -> None:
    total = MonotonicTotal()
    assert [total.update(r) for r in (0, 3, 7, 2, 5, 0, 1)] == [0, 3, 7, 9, 12, 12, 13]


async def test_metrics_counts_what_happened_and_prometheus_parses_it() -> None:
    readings = iter(
        [
            MetricsSnapshot(underruns=4, uplink_dropped_frames=10, jitter_target_ms=60.0),
            # The agent was rebuilt after a reconnect: its own totals restarted.
            MetricsSnapshot(underruns=1, uplink_dropped_frames=0, jitter_target_ms=80.0),
        ]
    )
    metrics = Metrics(snapshot=lambda: next(readings))
    async with running_server(ControlSettings(port=0), metrics=metrics) as (server, _target, publisher):
        events: list[Event] = [
            ConnectionEvent(up=True),
            StateEvent(state=State.WOKEN),
            StateEvent(state=State.LISTENING),
            StateEvent(state=State.THINKING),
            ToolEvent(name="current_time", outcome="started"),
            ToolEvent(name="current_time", outcome="ok", duration_ms=3.0),
            ToolEvent(name="set_volume", outcome="timeout", duration_ms=5000.0),
            StateEvent(state=State.SPEAKING),
            TurnEvent(turn=TurnSummary(latency_ms=TurnLatency(speech_end_to_first_sample_ms=640.0))),
            InterruptEvent(reason="barge_in"),
            TurnEvent(turn=TurnSummary(interrupted=True)),
            InterruptEvent(reason="command"),
            InterruptEvent(reason="barge_in"),
            ServerErrorEvent(code=4000, message="bad"),
            ConnectionEvent(up=False, attempt=1),
            StateEvent(state=State.RECONNECTING),
            ConnectionEvent(up=True),
            StateEvent(state=State.SLEEPING),
        ]
        for event in events:
            publisher.publish(event)
        for latency_ms in (12.0, 25.0, 250.0):
            metrics.observe_mic_to_wire_ms(latency_ms)
        metrics.observe_barge_in_to_silence_ms(18.0)
        metrics.observe_wake_to_first_append_ms(150.0)
        first = await http_get(f"http://127.0.0.1:{server.port}/metrics")
        second = await http_get(f"http://127.0.0.1:{server.port}/metrics")
    assert first.status == 200
    assert first.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(first.body.decode())
    assert got[("voiced_turns_total", ())] == 2
    assert got[("voiced_interrupts_total", (("reason", "barge_in"),))] == 2
    assert got[("voiced_interrupts_total", (("reason", "command"),))] == 1
    assert got[("voiced_reconnects_total", ())] == 1
    assert got[("voiced_wakes_total", ())] == 1
    assert got[("voiced_tool_calls_total", (("outcome", "ok"),))] == 1
    assert got[("voiced_tool_calls_total", (("outcome", "timeout"),))] == 1
    assert ("voiced_tool_calls_total", (("outcome", "started"),)) not in got
    assert got[("voiced_server_errors_total", (("code", "4000"),))] == 1
    assert got[("voiced_connected", ())] == 1
    assert got[("voiced_state", (("state", "sleeping"),))] == 1
    assert sum(v for (name, _), v in got.items() if name == "voiced_state") == 1
    assert got[("voiced_underruns_total", ())] == 4
    assert got[("voiced_uplink_dropped_frames_total", ())] == 10
    assert got[("voiced_jitter_target_seconds", ())] == 0.06
    assert got[("voiced_resident_memory_bytes", ())] > 10_000_000
    assert got[("voiced_speech_end_to_first_audio_seconds_count", ())] == 1
    assert got[("voiced_speech_end_to_first_audio_seconds_bucket", (("le", "0.75"),))] == 1
    assert got[("voiced_speech_end_to_first_audio_seconds_bucket", (("le", "0.5"),))] == 0
    assert got[("voiced_mic_to_wire_seconds_count", ())] == 3
    assert got[("voiced_mic_to_wire_seconds_bucket", (("le", "0.03"),))] == 2
    assert got[("voiced_barge_in_to_silence_seconds_sum", ())] == 0.018
    assert got[("voiced_wake_to_first_append_seconds_count", ())] == 1
    # Counters never go back, even when the daemon's own totals restarted.
    again = samples(second.body.decode())
    assert again[("voiced_underruns_total", ())] == 5
    assert again[("voiced_uplink_dropped_frames_total", ())] == 10
    assert again[("voiced_jitter_target_seconds", ())] == 0.08


async def test_server_error_codes_are_bounded_labels() -> None:
    metrics = Metrics()
    for code in range(100):
        metrics.on_event(ServerErrorEvent(code=5000 + code))
    got = samples(metrics.render().decode())
    codes = {dict(labels)["code"] for (name, labels) in got if name == "voiced_server_errors_total"}
    assert len(codes) == 33 and "other" in codes
    assert got[("voiced_server_errors_total", (("code", "other"),))] == 68


async def test_schema_page_and_unknown_routes() -> None:
    async with running_server() as (server, _target, _publisher):
        base = f"http://127.0.0.1:{server.port}"
        schema = await http_get(base + "/schema.json")
        page = await http_get(base + "/")
        script = await http_get(base + "/kiosk.js")
        missing = await http_get(base + "/nope")
        no_metrics = await http_get(base + "/metrics")
        foreign = await http_get(base + "/", {"Origin": "http://evil.example"})
    assert schema.status == 200 and schema.headers["Content-Type"] == "application/json"
    document = json.loads(schema.body)
    assert document["version"] == 1
    assert set(document) >= {"event", "command", "reply", "examples"}
    assert "talk" in json.dumps(document["command"])
    assert page.status == 200 and b"Hold to talk" in page.body
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert missing.status == 404 and b"/metrics" in missing.body
    assert no_metrics.status == 404
    assert foreign.status == 403
