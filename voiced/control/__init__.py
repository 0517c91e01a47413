"""The device's face: the local control API, the kiosk page, event hooks and Prometheus metrics.

The daemon implements :class:`ControlTarget`, publishes every event to an :class:`EventPublisher`,
and runs the rest for its whole lifetime::

    publisher = EventPublisher()
    metrics = Metrics(snapshot=daemon.metrics_snapshot)
    async with serve_control(config.control, daemon, publisher, metrics=metrics), \\
               run_hooks(config.hooks, publisher, secrets=[token]):
        ...

What to publish, and when (all on the event loop; ``publish`` never blocks):

- its state changes: ``StateEvent(state=…, hint=…)`` (a hint for offline and error);
- mute or volume changes: ``ControlsEvent(muted=…, volume_pct=…)``;
- ``conversation.audio_transcript.update``: ``UserTextEvent(text=content)``, ``.completed`` with
  ``final=True``;
- ``conversation.message.delta`` of the answer: ``ReplyTextEvent(chat_id=…, delta=content)``, and
  one with ``final=True`` when the message completes;
- a tool call starting and ending: ``ToolEvent(name=…, outcome="started" | "ok" | "error" | …)``;
- a turn's summary: ``TurnEvent(turn=TurnSummary.from_summary(timeline.summary()))``;
- an interrupt: ``InterruptEvent(reason=…, chat_id=…, played_ms=…)``;
- a device lost or reopened: ``DeviceEvent(direction=…, present=…, name=…)``;
- connected or disconnected: ``ConnectionEvent(up=…, attempt=…, retry_in_s=…)``;
- an ``error`` event from the server: ``ServerErrorEvent(code=…, message=…)``.

The metrics count from these events; the daemon also calls ``metrics.observe_mic_to_wire_ms``,
``observe_barge_in_to_silence_ms`` and ``observe_wake_to_first_append_ms`` where it measures them.

The names below load their module on first use: the configuration imports only the settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voiced.control.hooks import HookRunner, run_hooks
    from voiced.control.messages import (
        ConnectionEvent,
        ControlsEvent,
        DeviceEvent,
        DeviceInfo,
        DeviceList,
        Event,
        InterruptEvent,
        ReplyTextEvent,
        ServerErrorEvent,
        State,
        StateEvent,
        StatusSnapshot,
        ToolEvent,
        TurnEvent,
        TurnLatency,
        TurnSummary,
        UserTextEvent,
    )
    from voiced.control.metrics import Metrics, MetricsSnapshot
    from voiced.control.publisher import EventPublisher
    from voiced.control.server import ControlServer, ControlUnavailableError, serve_control
    from voiced.control.settings import ControlSettings, HooksSettings
    from voiced.control.target import CommandRejectedError, ControlTarget

_EXPORTS = {
    "CommandRejectedError": "voiced.control.target",
    "ConnectionEvent": "voiced.control.messages",
    "ControlServer": "voiced.control.server",
    "ControlSettings": "voiced.control.settings",
    "ControlTarget": "voiced.control.target",
    "ControlUnavailableError": "voiced.control.server",
    "ControlsEvent": "voiced.control.messages",
    "DeviceEvent": "voiced.control.messages",
    "DeviceInfo": "voiced.control.messages",
    "DeviceList": "voiced.control.messages",
    "Event": "voiced.control.messages",
    "EventPublisher": "voiced.control.publisher",
    "HookRunner": "voiced.control.hooks",
    "HooksSettings": "voiced.control.settings",
    "InterruptEvent": "voiced.control.messages",
    "Metrics": "voiced.control.metrics",
    "MetricsSnapshot": "voiced.control.metrics",
    "ReplyTextEvent": "voiced.control.messages",
    "ServerErrorEvent": "voiced.control.messages",
    "State": "voiced.control.messages",
    "StateEvent": "voiced.control.messages",
    "StatusSnapshot": "voiced.control.messages",
    "ToolEvent": "voiced.control.messages",
    "TurnEvent": "voiced.control.messages",
    "TurnLatency": "voiced.control.messages",
    "TurnSummary": "voiced.control.messages",
    "UserTextEvent": "voiced.control.messages",
    "run_hooks": "voiced.control.hooks",
    "serve_control": "voiced.control.server",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'voiced.control' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CommandRejectedError",
    "ConnectionEvent",
    "ControlServer",
    "ControlSettings",
    "ControlTarget",
    "ControlUnavailableError",
    "ControlsEvent",
    "DeviceEvent",
    "DeviceInfo",
    "DeviceList",
    "Event",
    "EventPublisher",
    "HookRunner",
    "HooksSettings",
    "InterruptEvent",
    "Metrics",
    "MetricsSnapshot",
    "ReplyTextEvent",
    "ServerErrorEvent",
    "State",
    "StateEvent",
    "StatusSnapshot",
    "ToolEvent",
    "TurnEvent",
    "TurnLatency",
    "TurnSummary",
    "UserTextEvent",
    "run_hooks",
    "serve_control",
]
