"""The device's face: the local control API, the kiosk page, event hooks and Prometheus metrics.

The daemon implements :class:`ControlTarget`, publishes every event to an :class:`EventPublisher`,
and runs the rest for its whole lifetime::

    publisher = EventPublisher()
    metrics = Metrics(snapshot=daemon.metrics_snapshot)
    async with serve_control(config.control, daemon, publisher, metrics=metrics), \\
               run_hooks(config.hooks, publisher, secrets=[token]):
        ...
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
