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
"""

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
