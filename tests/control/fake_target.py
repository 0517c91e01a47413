"""A small in-memory ControlTarget: what the daemon would do, recorded, plus the events it would publish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from voiced.control import (
    CommandRejectedError,
    ControlSettings,
    ControlsEvent,
    DeviceInfo,
    DeviceList,
    EventPublisher,
    Metrics,
    State,
    StatusSnapshot,
    serve_control,
)
from voiced.control.server import ControlServer
from voiced.control.target import Direction

DEVICES = DeviceList(
    input=[DeviceInfo(index=0, name="pulse", default=True), DeviceInfo(index=3, name="USB Mic")],
    output=[DeviceInfo(index=0, name="pulse", default=True), DeviceInfo(index=4, name="USB Speaker")],
    selected_input="pulse",
    selected_output="pulse",
)


class FakeTarget:
    """Implements :class:`voiced.control.ControlTarget`; ``calls`` lists every command it received."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self.calls: list[tuple[str, Any]] = []
        self.state = State.SLEEPING
        self.muted = False
        self.volume_pct = 80
        self.connected = True
        self.reload_delay_s = 0.0
        self.fail_interrupt = False

    def status(self) -> StatusSnapshot:
        return StatusSnapshot(
            state=self.state,
            muted=self.muted,
            volume_pct=self.volume_pct,
            connected=self.connected,
            input_device="pulse",
            output_device="pulse",
        )

    async def talk(self, pressed: bool) -> None:
        self.calls.append(("talk", pressed))

    async def interrupt(self) -> None:
        self.calls.append(("interrupt", None))
        if self.fail_interrupt:
            raise RuntimeError("the agent is gone")

    async def set_muted(self, muted: bool) -> None:
        self.calls.append(("set_muted", muted))
        self.muted = muted
        self.publisher.publish(ControlsEvent(muted=muted, volume_pct=self.volume_pct))

    async def set_volume_pct(self, volume_pct: int) -> None:
        self.calls.append(("set_volume_pct", volume_pct))
        self.volume_pct = volume_pct
        self.publisher.publish(ControlsEvent(muted=self.muted, volume_pct=volume_pct))

    async def send_text(self, text: str) -> None:
        self.calls.append(("send_text", text))

    async def announce(self, text: str) -> None:
        self.calls.append(("announce", text))

    async def list_devices(self) -> DeviceList:
        self.calls.append(("list_devices", None))
        return DEVICES

    async def select_device(self, direction: Direction, spec: str) -> str:
        self.calls.append(("select_device", (direction, spec)))
        devices = DEVICES.input if direction == "input" else DEVICES.output
        if spec == "":
            return devices[0].name
        for device in devices:
            if spec.lower() in device.name.lower() or spec == str(device.index):
                return device.name
        raise CommandRejectedError(f"no {direction} device matches {spec!r}: see `voiced devices`")

    async def reload(self) -> None:
        self.calls.append(("reload", None))
        await asyncio.sleep(self.reload_delay_s)


@contextlib.asynccontextmanager
async def running_server(
    settings: ControlSettings | None = None, metrics: Metrics | None = None
) -> AsyncIterator[tuple[ControlServer, FakeTarget, EventPublisher]]:
    """A control server on a free loopback port with a fresh fake target."""
    publisher = EventPublisher()
    target = FakeTarget(publisher)
    settings = settings or ControlSettings(port=0)
    async with serve_control(settings, target, publisher, metrics=metrics) as server:
        assert server is not None
        yield server, target, publisher
