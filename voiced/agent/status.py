"""The one state of the whole device: what `systemctl status` shows and what observers are told.

The daemon's phase (opening devices, connecting, running, stopping) and the conversation's turn
state combine into one :class:`DeviceState`; :class:`StatusBoard` recomputes it whenever either
changes and tells every listener once per change.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from voiced.conversation.states import TurnState


class Phase(enum.Enum):
    STARTING = "starting"
    WAITING_FOR_DEVICES = "waiting for devices"
    CONNECTING = "connecting"
    OFFLINE = "offline"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


class DeviceState(enum.Enum):
    STARTING = "starting"
    WAITING_FOR_DEVICES = "waiting for devices"
    CONNECTING = "connecting"
    OFFLINE = "offline, reconnecting"
    SLEEPING = "sleeping"
    LISTENING = "listening"
    HEARING = "hearing the user"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    STOPPING = "stopping"
    ERROR = "error"


_BY_TURN: dict[TurnState, DeviceState] = {
    TurnState.SLEEPING: DeviceState.SLEEPING,
    TurnState.IDLE: DeviceState.LISTENING,
    TurnState.USER_TURN: DeviceState.HEARING,
    TurnState.PUSH_TO_TALK: DeviceState.HEARING,
    TurnState.AWAITING_REPLY: DeviceState.THINKING,
    TurnState.SPEAKING: DeviceState.SPEAKING,
    TurnState.GATED: DeviceState.SPEAKING,
}

_BY_PHASE: dict[Phase, DeviceState] = {
    Phase.STARTING: DeviceState.STARTING,
    Phase.WAITING_FOR_DEVICES: DeviceState.WAITING_FOR_DEVICES,
    Phase.CONNECTING: DeviceState.CONNECTING,
    Phase.OFFLINE: DeviceState.OFFLINE,
    Phase.STOPPING: DeviceState.STOPPING,
    Phase.FAILED: DeviceState.ERROR,
}


def device_state(phase: Phase, turn: TurnState | None, muted: bool) -> DeviceState:
    """The device's state from the daemon's phase, the turn state and the microphone mute."""
    if phase is not Phase.RUNNING or turn is None:
        return _BY_PHASE.get(phase, DeviceState.STARTING)
    state = _BY_TURN[turn]
    if muted and state in (DeviceState.LISTENING, DeviceState.SLEEPING, DeviceState.HEARING):
        return DeviceState.MUTED
    return state


class StatusBoard:
    """Holds the phase, the turn state and the mute; calls every listener once per change of state.

    ``detail`` travels with a change (what is waited for, the error's hint); listeners get
    ``(state, detail)``.
    """

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.turn: TurnState | None = None
        self.muted = False
        self.detail = ""
        self.state = DeviceState.STARTING
        self._listeners: list[Callable[[DeviceState, str], None]] = []

    def subscribe(self, listener: Callable[[DeviceState, str], None]) -> None:
        """Call ``listener(state, detail)`` on every change from now on (and once now)."""
        self._listeners.append(listener)
        listener(self.state, self.detail)

    def update(
        self,
        *,
        phase: Phase | None = None,
        turn: TurnState | None = None,
        muted: bool | None = None,
        detail: str | None = None,
    ) -> None:
        """Record what changed; listeners hear of it if the device state or its detail changed."""
        if phase is not None:
            self.phase = phase
        if turn is not None:
            self.turn = turn
        if muted is not None:
            self.muted = muted
        new = device_state(self.phase, self.turn, self.muted)
        new_detail = detail if detail is not None else ("" if new is not self.state else self.detail)
        if new is self.state and new_detail == self.detail:
            return
        self.state, self.detail = new, new_detail
        for listener in self._listeners:
            listener(new, new_detail)

    def text(self) -> str:
        """One line for humans (systemd's STATUS=)."""
        return f"{self.state.value}: {self.detail}" if self.detail else self.state.value
