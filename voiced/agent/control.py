"""The daemon as the control API sees it: commands carried out, events published, metrics fed.

:func:`control_surface` runs for the daemon's whole life (``Daemon.run`` enters it): the control
server (``[control]``), the hooks (``[hooks]``) and the metrics. :class:`DaemonControl` implements
:class:`voiced.control.ControlTarget` over the :class:`~voiced.agent.daemon.Daemon` and its
:class:`~voiced.agent.agent.Agent`, and turns what they report (the status board, the agent's
``on_*`` observers, the daemon's connection and device callbacks) into control events. Every
observer here only builds an event and hands it to the publisher, which never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from voiced.agent.status import DeviceState, StatusBoard
from voiced.control.hooks import HOOK_FOR_STATE, HOOK_FOR_TYPE, HookRunner, run_hooks
from voiced.control.messages import (
    ConnectionEvent,
    ControlsEvent,
    DeviceEvent,
    DeviceInfo,
    DeviceList,
    InterruptEvent,
    InterruptReason,
    ReplyTextEvent,
    ServerErrorEvent,
    State,
    StateEvent,
    StatusSnapshot,
    ToolEvent,
    TurnEvent,
    TurnSummary,
    UserTextEvent,
)
from voiced.control.publisher import EventPublisher
from voiced.control.server import ControlServer, ControlUnavailableError, serve_control
from voiced.control.target import CommandRejectedError, Direction
from voiced.conversation.core import Action, CancelTools, Flush, TurnEnded
from voiced.conversation.notices import Notice, NoticeKind
from voiced.conversation.states import TurnState
from voiced.devices.base import DeviceError
from voiced.devices.listing import DeviceRow, list_devices
from voiced.errors import ConfigError
from voiced.log import get_logger
from voiced.plugins import CallResult
from voiced.protocol import events as ev
from voiced.protocol.session import ReceiveResult, SessionStateError, ToolCallsRequested

if TYPE_CHECKING:
    from voiced.agent.agent import Agent
    from voiced.agent.daemon import Daemon
    from voiced.control.metrics import Metrics, MetricsSnapshot

log = get_logger("control")

#: The core's interrupt reasons as the API names them.
INTERRUPT_REASONS: dict[str, InterruptReason] = {
    "barge-in": "barge_in",
    "wake word": "barge_in",
    "push-to-talk": "push_to_talk",
    "control": "command",
    "server speech_started": "server_vad",
}
#: Chats whose tool names are remembered for their outcome events.
_MAX_TOOL_CHATS = 16
_NOT_RUNNING = "the device is not running yet (waiting for its audio devices): try again shortly"
_OFFLINE = "not connected to the server: try again once the connection is back"


def control_state(board: StatusBoard, listen_mode: str, woken: bool) -> tuple[State, str | None]:
    """The API's state (and hint) for the daemon's status board.

    ``woken``: the conversation just left sleeping for listening (a wake word). Listening for
    speech is "sleeping" (ready) in always mode, where it is the resting state.
    """
    state, detail = board.state, board.detail or None
    match state:
        case DeviceState.STARTING:
            return State.OFFLINE, "starting"
        case DeviceState.WAITING_FOR_DEVICES:
            return State.OFFLINE, detail or "waiting for the audio devices"
        case DeviceState.CONNECTING:
            return State.RECONNECTING, detail or "connecting to the server"
        case DeviceState.OFFLINE:
            return State.RECONNECTING, detail or "offline: reconnecting"
        case DeviceState.STOPPING:
            return State.OFFLINE, "stopping"
        case DeviceState.ERROR:
            return State.ERROR, detail or "see the daemon's log"
        case DeviceState.MUTED:
            return State.MUTED, None
        case DeviceState.SLEEPING:
            return State.SLEEPING, None
        case DeviceState.HEARING:
            return State.LISTENING, None
        case DeviceState.THINKING:
            return State.THINKING, None
        case DeviceState.SPEAKING:
            return State.SPEAKING, None
        case DeviceState.LISTENING:
            if woken:
                return State.WOKEN, None
            return (State.SLEEPING if listen_mode == "always" else State.LISTENING), None
    return State.OFFLINE, detail


class DaemonControl:
    """Implements :class:`voiced.control.ControlTarget` for a running daemon and publishes its events.

    Build it with :func:`control_surface`; :meth:`attach` wires the observers, :meth:`detach`
    removes them. All methods run on the daemon's event loop.
    """

    def __init__(self, daemon: Daemon, publisher: EventPublisher) -> None:
        self.daemon = daemon
        self.publisher = publisher
        # Only the control server serves the metrics: without it prometheus_client is never loaded.
        self.metrics: Metrics | None = None
        if daemon.config.control.enabled:
            from voiced.control.metrics import Metrics  # noqa: PLC0415  (loads prometheus_client)

            self.metrics = Metrics(snapshot=self.metrics_snapshot)
        self.server: ControlServer | None = None
        self.hooks: HookRunner | None = None
        self.last_turn: TurnSummary | None = None
        self._agent: Agent | None = None
        self._attached = False
        self._state: tuple[State, str | None] = (State.OFFLINE, "starting")
        self._turn: TurnState | None = None
        self._controls: tuple[bool, int] | None = None
        self._woken_at_s: float | None = None
        self._tool_names: OrderedDict[str, dict[str, str]] = OrderedDict()
        #: (chat id, ms of it heard) of the last reply silenced by an interrupt.
        self._played_ms: tuple[str | None, float | None] = (None, None)

    # --- wiring -------------------------------------------------------------------------------------

    def attach(self) -> None:
        """Start observing the daemon (and its agent, once it exists)."""
        self._attached = True
        daemon = self.daemon
        daemon.on_connection = self._on_connection
        daemon.on_device = self._on_device
        daemon.status.subscribe(self._on_status)

    def detach(self) -> None:
        """Stop observing; nothing is published afterwards."""
        self._attached = False
        self.daemon.on_connection = None
        self.daemon.on_device = None
        agent = self._agent
        if agent is not None:
            agent.on_received = None
            agent.on_action = None
            agent.on_tool_results = None
            agent.latency.on_sample = None
        self._agent = None

    def _attach_agent(self, agent: Agent) -> None:
        self._agent = agent
        agent.on_received = self._on_received
        agent.on_action = self._on_action
        agent.on_tool_results = self._on_tool_results
        agent.latency.on_sample = self._on_latency

    # --- what the daemon reports --------------------------------------------------------------------

    def _on_status(self, _state: DeviceState, _detail: str) -> None:
        if not self._attached:
            return
        daemon = self.daemon
        agent = daemon.agent
        if agent is not None and agent is not self._agent:
            self._attach_agent(agent)
        board = daemon.status
        woken = board.turn is TurnState.IDLE and self._turn is TurnState.SLEEPING
        self._turn = board.turn
        state = control_state(board, daemon.config.listen.mode, woken)
        if woken:
            self._woken_at_s = daemon.clock()
        if state != self._state:
            self._state = state
            self.publisher.publish(StateEvent(state=state[0], hint=state[1]))
        self._publish_controls()

    def _publish_controls(self) -> None:
        """A controls event when mute or volume changed (by a command, a tool or a reload)."""
        controls = (self.daemon.status.muted, self._volume_pct())
        if controls != self._controls:
            self._controls = controls
            self.publisher.publish(ControlsEvent(muted=controls[0], volume_pct=controls[1]))

    def _on_connection(self, up: bool, attempt: int, retry_in_s: float | None) -> None:
        hint = None if up else "connection to the server lost"
        retry = round(retry_in_s, 2) if retry_in_s is not None else None
        self.publisher.publish(ConnectionEvent(up=up, attempt=attempt, retry_in_s=retry, hint=hint))

    def _on_device(self, direction: str, present: bool, detail: str) -> None:
        devices = self.daemon.config.audio.devices
        spec = devices.input_device if direction == "input" else devices.output_device
        self.publisher.publish(
            DeviceEvent(
                direction="input" if direction == "input" else "output",
                present=present,
                name=_device_name(spec),
                hint=detail or None,
            )
        )

    def _on_received(self, results: list[ReceiveResult]) -> None:
        for result in results:
            match result:
                case ev.ConversationAudioTranscriptUpdate():
                    self.publisher.publish(UserTextEvent(text=result.data.content))
                case ev.ConversationAudioTranscriptCompleted():
                    self.publisher.publish(UserTextEvent(text=result.data.content, final=True))
                case ev.ConversationMessageDelta():
                    message = result.data
                    if message.content and _is_answer_text(message.role, message.type, message.content_type):
                        self.publisher.publish(ReplyTextEvent(chat_id=message.chat_id, delta=message.content))
                case ev.ConversationMessageCompleted():
                    message = result.data
                    if _is_answer_text(message.role, message.type, message.content_type):
                        self.publisher.publish(ReplyTextEvent(chat_id=message.chat_id, final=True))
                case ToolCallsRequested():
                    names = {call.id: call.function.name for call in result.tool_calls}
                    self._tool_names[result.chat_id] = names
                    while len(self._tool_names) > _MAX_TOOL_CHATS:
                        self._tool_names.popitem(last=False)
                    for call in result.tool_calls:
                        self.publisher.publish(
                            ToolEvent(
                                chat_id=result.chat_id,
                                call_id=call.id,
                                name=call.function.name,
                                outcome="started",
                            )
                        )
                case ev.Error():
                    self.publisher.publish(
                        ServerErrorEvent(code=result.data.code, message=result.data.msg or "")
                    )
                case _:
                    pass

    def _on_action(self, action: Action) -> None:
        match action:
            case TurnEnded(turn=turn):
                summary = TurnSummary.from_summary(turn.summary())
                self.last_turn = summary
                self.publisher.publish(TurnEvent(turn=summary))
            case Flush(chat_id=chat_id, turn=turn) if chat_id is not None and turn is not None:
                # The flush runs before the interrupt's notice: what was heard of the chat is known.
                self._played_ms = (chat_id, turn.played_ms)
            case Notice(kind=NoticeKind.INTERRUPTED, fields=fields):
                reason = INTERRUPT_REASONS.get(str(fields.get("reason")), "command")
                chat_ids = fields.get("chat_ids")
                chat_id = chat_ids[0] if isinstance(chat_ids, list) and chat_ids else None
                played_ms = self._played_ms[1] if self._played_ms[0] == chat_id else None
                self.publisher.publish(
                    InterruptEvent(
                        reason=reason,
                        chat_id=chat_id,
                        played_ms=round(played_ms, 1) if played_ms is not None else None,
                    )
                )
            case CancelTools(chat_id=chat_id):
                for call_id, name in self._tool_names.pop(chat_id, {}).items():
                    self.publisher.publish(
                        ToolEvent(chat_id=chat_id, call_id=call_id, name=name, outcome="cancelled")
                    )
            case _:
                pass

    def _on_tool_results(self, chat_id: str, results: list[CallResult]) -> None:
        names = self._tool_names.pop(chat_id, {})
        for result in results:
            call_id = result.output.tool_call_id
            self.publisher.publish(
                ToolEvent(
                    chat_id=chat_id,
                    call_id=call_id,
                    name=names.get(call_id, "tool"),
                    outcome="ok" if result.ok else "timeout" if result.timed_out else "error",
                    duration_ms=round(result.elapsed_s * 1000.0, 1),
                )
            )

    def _on_latency(self, name: str, latency_ms: float) -> None:
        if self.metrics is None:
            return
        if name == "mic_to_wire":
            self.metrics.observe_mic_to_wire_ms(latency_ms)
            if self._woken_at_s is not None:
                woken_ms = (self.daemon.clock() - self._woken_at_s) * 1000.0
                self.metrics.observe_wake_to_first_append_ms(woken_ms)
                self._woken_at_s = None
        elif name == "barge_in_to_silent":
            self.metrics.observe_barge_in_to_silence_ms(latency_ms)

    def metrics_snapshot(self) -> MetricsSnapshot:
        """Totals the audio path keeps, read at each scrape."""
        from voiced.control.metrics import MetricsSnapshot  # noqa: PLC0415  (loaded with the metrics)

        agent = self.daemon.agent
        if agent is None:
            return MetricsSnapshot()
        jitter = agent.playout.jitter.stats()
        return MetricsSnapshot(
            underruns=int(jitter.underruns),
            uplink_dropped_frames=agent.counters.uplink_dropped_frames,
            jitter_target_ms=float(jitter.target_ms),
        )

    # --- ControlTarget --------------------------------------------------------------------------------

    def _volume_pct(self) -> int:
        agent = self.daemon.agent
        return agent.volume_pct if agent is not None else self.daemon.config.agent.volume_pct

    def _running_agent(self) -> Agent:
        agent = self.daemon.agent
        if agent is None:
            raise CommandRejectedError(_NOT_RUNNING)
        return agent

    def status(self) -> StatusSnapshot:
        """The device now, for a new client and the ``status`` command."""
        daemon = self.daemon
        agent = daemon.agent
        devices = daemon.config.audio.devices
        return StatusSnapshot(
            state=self._state[0],
            hint=self._state[1],
            muted=daemon.status.muted,
            volume_pct=self._volume_pct(),
            connected=agent is not None and agent.connected,
            input_device=_device_name(devices.input_device),
            output_device=_device_name(devices.output_device),
            last_turn=self.last_turn,
        )

    async def talk(self, pressed: bool) -> None:
        """Push-to-talk, as SIGUSR1 / SIGUSR2."""
        self._running_agent()
        self.daemon.push_to_talk(pressed)

    async def interrupt(self) -> None:
        """Stop the reply and cancel its chat on the server."""
        self._running_agent().interrupt("control", send_cancel=True)

    async def set_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone."""
        self.daemon.set_muted(muted)
        self._publish_controls()

    async def set_volume_pct(self, volume_pct: int) -> None:
        """voiced's own playback volume, from the next audio received."""
        self._running_agent().set_volume_pct(volume_pct)
        self._publish_controls()

    async def send_text(self, text: str) -> None:
        """Ask the bot with a typed message; its reply is spoken."""
        agent = self._running_agent()
        if not agent.connected:
            raise CommandRejectedError(_OFFLINE)
        try:
            agent.send_text(text)
        except SessionStateError:
            raise CommandRejectedError(_OFFLINE) from None

    async def announce(self, text: str) -> None:
        """Speak ``text`` in the bot's voice without asking the bot."""
        agent = self._running_agent()
        if not agent.connected:
            raise CommandRejectedError(_OFFLINE)
        try:
            agent.announce(text)
        except SessionStateError:
            raise CommandRejectedError(_OFFLINE) from None

    async def list_devices(self) -> DeviceList:
        """The sound devices PortAudio sees, and the ones configured."""
        rows = await _device_rows()
        devices = self.daemon.config.audio.devices
        return DeviceList(
            input=[
                DeviceInfo(index=r.index, name=r.name, default=r.is_default_input)
                for r in rows
                if r.max_input_channels > 0
            ][:256],
            output=[
                DeviceInfo(index=r.index, name=r.name, default=r.is_default_output)
                for r in rows
                if r.max_output_channels > 0
            ][:256],
            selected_input=_device_name(devices.input_device),
            selected_output=_device_name(devices.output_device),
        )

    async def select_device(self, direction: Direction, spec: str) -> str:
        """Reopen both devices with ``spec`` (index, part of a name, ``pulse:…``; "" = the default)."""
        daemon = self.daemon
        if daemon.device_factories_for is None:
            raise CommandRejectedError(
                "these audio devices are fixed (WAV files or test devices): restart voiced to change them"
            )
        value = await _resolve_device(direction, spec.strip())
        current = daemon.config.audio.devices
        devices = current.model_copy(update={f"{direction}_device": value})
        try:
            daemon.reopen_devices(devices)
        except ValueError as exc:
            raise CommandRejectedError(str(exc)) from None
        name = _device_name(value)
        self.publisher.publish(DeviceEvent(direction=direction, present=True, name=name))
        return name

    async def reload(self) -> None:
        """Re-read the config file, as SIGHUP does."""
        self.daemon.reload()
        self._publish_controls()


def _is_answer_text(role: str | None, kind: str | None, content_type: str | None) -> bool:
    return role == "assistant" and kind == "answer" and content_type in (None, "text")


def _device_name(spec: str | int | None) -> str:
    return "default" if spec is None or spec == "" else str(spec)


async def _device_rows() -> list[DeviceRow]:
    try:
        return await asyncio.wait_for(asyncio.to_thread(list_devices, ()), 10.0)
    except DeviceError as exc:
        raise CommandRejectedError(f"cannot list the sound devices: {exc}"[:290]) from None
    except TimeoutError:
        raise CommandRejectedError(
            "listing the sound devices took too long: is the sound server hung?"
        ) from None


async def _resolve_device(direction: Literal["input", "output"], spec: str) -> str | int | None:
    """The ``[audio.devices]`` value for ``spec``, checked against the devices present."""
    if spec == "":
        return None
    if spec.startswith("pulse:"):
        return spec
    rows = [
        r
        for r in await _device_rows()
        if (r.max_input_channels if direction == "input" else r.max_output_channels) > 0
    ]
    if spec.isdigit():
        if any(r.index == int(spec) for r in rows):
            return int(spec)
    elif any(spec.lower() in r.name.lower() for r in rows):
        return spec
    raise CommandRejectedError(f"no {direction} device matches {spec!r}: see `voiced devices`")


def _hooks_configured(daemon: Daemon) -> bool:
    hooks = daemon.config.hooks
    names = set(HOOK_FOR_STATE.values()) | set(HOOK_FOR_TYPE.values())
    return any((getattr(hooks, name) or "").strip() for name in names)


def _secrets(daemon: Daemon) -> list[str]:
    found: list[str] = []
    token = daemon.config.coze.token
    if token is not None:
        found.append(token.get_secret_value())
    with contextlib.suppress(OSError):
        control_token = daemon.config.control.resolved_token()
        if control_token:
            found.append(control_token)
    return found


@contextlib.asynccontextmanager
async def control_surface(daemon: Daemon) -> AsyncIterator[DaemonControl | None]:
    """Serve the control API and run the hooks while the block runs; yields None when both are off.

    A control server that cannot start (a taken port, an unreadable token file) is logged in one
    line and the daemon runs on without it.
    """
    config = daemon.config
    if not config.control.enabled and not _hooks_configured(daemon):
        yield None
        return
    publisher = EventPublisher()
    control = DaemonControl(daemon, publisher)
    async with contextlib.AsyncExitStack() as stack:
        if config.control.enabled:
            try:
                control.server = await stack.enter_async_context(
                    serve_control(config.control, control, publisher, metrics=control.metrics)
                )
            except (ControlUnavailableError, ConfigError) as exc:
                log.error(f"{exc}; running on without the control API")
        control.hooks = await stack.enter_async_context(
            run_hooks(config.hooks, publisher, secrets=_secrets(daemon))
        )
        control.attach()
        try:
            yield control
        finally:
            control.detach()
