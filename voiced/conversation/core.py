"""The conversation, with no I/O: microphone frames, button presses and session results in, actions out.

:class:`Conversation` decides what every frame of the microphone means (sleep, a wake word, a turn,
a barge-in), which reply audio is played or dropped, when tool calls start and stop, and which
frames go on the wire. It never awaits, never touches a socket, a device or the clock: each call
takes ``now_s`` and returns a list of actions for the shell (``voiced.agent.agent``) to execute in
order. Its turn states and their legal moves are the table in :mod:`voiced.conversation.states`;
the connection's are :class:`~voiced.protocol.session.ClientSession`'s, which it drives.

Tests drive it with a fake clock and no event loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voiced.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted
from voiced.conversation.notices import Notice, NoticeKind
from voiced.conversation.settings import CueKind
from voiced.conversation.states import DETECTING, REPLYING, TRANSITIONS, Trigger, TurnState, resolve
from voiced.conversation.timeline import LatencyStats, TurnTimeline
from voiced.devices.base import MicFrame
from voiced.errors import EXIT_CONFIG, FatalError, server_code_error
from voiced.mic.stages import MicPath, StageFrame, WakeDetected
from voiced.mic.turn import TurnDetectorStage
from voiced.protocol import events as ev
from voiced.protocol.errors import INVALID_PARAMETER_CODES, RATE_LIMITED_CODE
from voiced.protocol.models import ToolCall, ToolOutput
from voiced.protocol.session import (
    AudioChunk,
    ChatCancelled,
    ClientSession,
    ConnectionState,
    FrameToSend,
    InvalidAudio,
    OutOfOrder,
    ReceiveResult,
    SessionStateError,
    StaleAudio,
    ToolCallsRequested,
)

if TYPE_CHECKING:
    from voiced.config import VoicedConfig

#: Turns kept while their chat is in flight; older ones are summarised and forgotten.
MAX_TRACKED_CHATS = 64
#: A press shorter than this is a bounce, not a turn: its audio is cleared, no reply is asked for.
MIN_PRESS_S = 0.1
#: How long after the device stops playing its echo may still reach the microphone (the output
#: latency of a sound server plus a room's delay and reverberation).
ECHO_TAIL_S = 0.5

# --- actions -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAudio:
    """Encode ``pcm`` (16 kHz s16le, whole 20 ms frames) and queue it for the uplink.

    ``live`` is False for audio that was held back until now (a turn's pre-roll, sent once the turn
    detector confirms speech): its wait is the detector's, so it is not counted as mic → wire latency.
    """

    pcm: bytes
    captured_at_s: float
    live: bool = True


@dataclass(frozen=True, slots=True)
class EndTurn:
    """Queue the end of the user's turn (``input_audio_buffer.complete``) behind its audio."""

    speech_end_s: float
    turn: TurnTimeline | None


@dataclass(frozen=True, slots=True)
class SendControl:
    """Send ``frame`` ahead of queued audio; ``first`` puts it ahead of other control frames too."""

    frame: str
    first: bool = False


@dataclass(frozen=True, slots=True)
class Play:
    """Decode ``payload`` (one reply audio delta of ``chat_id``) and queue it for the speaker."""

    chat_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PlayoutComplete:
    """No more audio will come for ``chat_id``: play out what is queued."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Silence ``chat_id`` (None: everything) with a ``fade_ms`` fade; record what was heard in ``turn``."""

    chat_id: str | None
    fade_ms: float
    turn: TurnTimeline | None = None


@dataclass(frozen=True, slots=True)
class StartTools:
    """Run ``calls`` for ``chat_id`` and report with :meth:`Conversation.tools_finished`."""

    chat_id: str
    calls: list[ToolCall]


@dataclass(frozen=True, slots=True)
class CancelTools:
    """Cancel the tool runs of ``chat_id``; submit nothing for them."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The turn state moved (publish it: systemd status, the control API, LEDs)."""

    old: TurnState
    new: TurnState
    trigger: Trigger
    at_s: float


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """A turn is over: fill in its playback figures, log its summary line, tell observers."""

    turn: TurnTimeline


@dataclass(frozen=True, slots=True)
class PlayCue:
    """Play the feedback sound ``kind``: wake, done, offline or fatal."""

    kind: CueKind


@dataclass(frozen=True, slots=True)
class Stop:
    """Retrying cannot help: end the daemon with ``error``."""

    error: FatalError


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close this connection and open a new one, not before ``retry_after_s`` if given."""

    reason: str
    retry_after_s: float | None = None


Action = (
    SendAudio
    | EndTurn
    | SendControl
    | Play
    | PlayoutComplete
    | Flush
    | StartTools
    | CancelTools
    | StateChanged
    | TurnEnded
    | PlayCue
    | Stop
    | Reconnect
    | Notice
)


@dataclass(slots=True)
class Counters:
    """What happened since start. One instance for the daemon's life: monotonic across reconnects."""

    mic_frames: int = 0
    appends_sent: int = 0
    uplink_bytes: int = 0
    uplink_dropped_frames: int = 0
    audio_chunks: int = 0
    stale_chunks: int = 0
    invalid_frames: int = 0
    unknown_events: int = 0
    interrupts: int = 0
    tool_batches: int = 0
    server_errors: int = 0
    turns: int = 0
    wakes: int = 0
    unanswered_turns: int = 0
    illegal_moves: int = 0
    internal_errors: int = 0
    interrupts_by_reason: dict[str, int] = field(default_factory=dict)
    server_errors_by_code: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Playback:
    """What the speaker is doing now, as the shell sees it."""

    active: bool = False
    level_dbfs: float | None = None
    chat_id: str | None = None


class Conversation:
    """One device's conversation across any number of connections. See the module docstring.

    ``session`` is the protocol state machine it drives; ``mic_path`` the configured stages in
    front of ``detector``. Counters and latency samples accumulate in :attr:`counters` and
    :attr:`latency`.
    """

    def __init__(
        self,
        config: VoicedConfig,
        session: ClientSession,
        mic_path: MicPath,
        detector: TurnDetectorStage,
        *,
        counters: Counters | None = None,
        latency: LatencyStats | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.mic_path = mic_path
        self.detector = detector
        self.counters = counters if counters is not None else Counters()
        self.latency = latency if latency is not None else LatencyStats()
        self.state = self._rest_state()
        self.muted = False
        self._mute_until_s = 0.0
        self._echo_until_s = 0.0
        self._listen_deadline_s: float | None = None
        self._reply_deadline_s: float | None = None
        self._turn: TurnTimeline | None = None
        self._by_chat: dict[str, TurnTimeline] = {}
        self._ended: list[TurnTimeline] = []
        self._running_tools: set[str] = set()
        self._press_s: float | None = None
        self._press_frames = 0
        self._barge_in_onset_s: float | None = None
        self._server_speech_s: float | None = None
        self._heard_chats: set[str] = set()

    # --- settings that may change on reload ---------------------------------------------------------

    @property
    def server_vad(self) -> bool:
        """The cloud decides when a turn ends (server_vad / semantic_vad): stream, never complete."""
        return self.config.session.turn_detection != "client_interrupt"

    @property
    def barge_in_allowed(self) -> bool:
        """Whether speech may interrupt a reply (else the mic is deaf while the device talks)."""
        agent = self.config.agent
        return agent.barge_in and not agent.half_duplex

    @property
    def mic_idle(self) -> bool:
        """Nothing waits for the next microphone frame: listening for speech or a wake word with no
        turn, reply or tool run open and no audio streaming. A few frames may then be read and
        analysed together (a turn opens a few tens of ms later, with all its audio)."""
        state = self.state
        if state is TurnState.SLEEPING:
            return self.session.current_chat_id is None
        return (
            state is TurnState.IDLE
            and not self.server_vad
            and self.session.current_chat_id is None
            and not self._running_tools
        )

    def _rest_state(self) -> TurnState:
        return TurnState.IDLE if self.config.listen.mode == "always" else TurnState.SLEEPING

    # --- the table ----------------------------------------------------------------------------------

    def _fire(self, trigger: Trigger, now_s: float, out: list[Action]) -> bool:
        """Make the move ``trigger`` from the current state; report an illegal one and change nothing."""
        target = TRANSITIONS.get((self.state, trigger))
        if target is None:
            self.counters.illegal_moves += 1
            out.append(
                Notice(
                    NoticeKind.ILLEGAL_MOVE,
                    "conversation move not allowed here; ignored",
                    {"state": self.state.value, "trigger": trigger.value},
                )
            )
            return False
        listen = self.config.listen
        new = resolve(target, listen.mode, listen.follow_up_s)
        old = self.state
        self._on_leave(old, new, out)
        self.state = new
        self._on_enter(old, new, trigger, now_s, out)
        if new is not old:
            out.append(StateChanged(old, new, trigger, now_s))
        return True

    def _on_leave(self, old: TurnState, new: TurnState, out: list[Action]) -> None:
        if old in DETECTING and new not in DETECTING:
            self.detector.reset()

    def _on_enter(
        self, old: TurnState, new: TurnState, trigger: Trigger, now_s: float, out: list[Action]
    ) -> None:
        listen = self.config.listen
        if new is TurnState.IDLE and listen.mode == "wake_word":
            if trigger is Trigger.WAKE:
                self._listen_deadline_s = now_s + listen.after_wake_timeout_s
            elif old is not TurnState.IDLE:
                self._listen_deadline_s = now_s + listen.follow_up_s
        elif new is not TurnState.IDLE:
            self._listen_deadline_s = None
        if new is TurnState.AWAITING_REPLY:
            self._reply_deadline_s = now_s + listen.unanswered_timeout_s
        elif old is TurnState.AWAITING_REPLY:
            self._reply_deadline_s = None
        if (
            new is TurnState.SLEEPING
            and old is not TurnState.SLEEPING
            and trigger
            in (
                Trigger.LISTEN_TIMEOUT,
                Trigger.REPLY_PLAYED,
                Trigger.NO_REPLY,
            )
        ):
            out.append(PlayCue("done"))

    # --- microphone ---------------------------------------------------------------------------------

    def mic_frame(self, frame: MicFrame, playback: Playback, now_s: float) -> list[Action]:
        """One 20 ms microphone frame. Constant work."""
        out: list[Action] = []
        self.counters.mic_frames += 1
        if self.state in REPLYING:
            self._check_playback(playback, now_s, out)
        captured_at_s = frame.captured_at_s
        if self.muted or captured_at_s < self._mute_until_s:
            return out
        staged = StageFrame(frame.pcm, captured_at_s, playback.active, playback.level_dbfs)
        events: list[object] = []
        passed = self.mic_path.process(staged, events)
        woken = False
        for event in events:
            if isinstance(event, WakeDetected):
                woken = self._on_wake(event, playback, now_s, out) or woken
        if passed is None or woken:
            # The frame that completed the wake word is the wake word: not part of the turn.
            return out
        state = self.state
        if state is TurnState.PUSH_TO_TALK:
            self._press_frames += 1
            out.append(SendAudio(passed.pcm, passed.captured_at_s))
            return out
        if state in DETECTING and not self._echo_unvouched(passed):
            turn_events: list[object] = []
            self.detector.process(passed, turn_events)
            for event in turn_events:
                self._on_turn_event(event, passed, playback, now_s, out)
        if self.state in DETECTING and self.server_vad:
            # The cloud decides the turns: once awake and not gated, stream everything, unsegmented.
            out.append(SendAudio(passed.pcm, passed.captured_at_s))
        return out

    def _on_wake(self, event: WakeDetected, playback: Playback, now_s: float, out: list[Action]) -> bool:
        """Act on a wake word; whether it was taken (then the frame carrying it is not the turn's)."""
        self.counters.wakes += 1
        out.append(
            Notice(
                NoticeKind.WAKE,
                "wake word",
                {"model": event.model, "score": round(event.score, 3), "state": self.state.value},
            )
        )
        if self.state in (TurnState.USER_TURN, TurnState.PUSH_TO_TALK):
            # The user is already being heard (a barge-in, a press): the wake word is part of the turn.
            return False
        if self.state is TurnState.SPEAKING or (
            self.state is TurnState.GATED and not self.config.agent.half_duplex
        ):
            # Only an echo-cancelled microphone scores over the device's own voice: the user said it.
            # With barge-in off plain speech may not interrupt, but the wake word does; half duplex
            # keeps the microphone deaf to everything but a button.
            self._barge_in_onset_s = event.detected_at_s
            self._interrupt("wake word", send_cancel=True, playback=playback, now_s=now_s, out=out)
        if not self._fire(Trigger.WAKE, now_s, out):
            return False
        # The audio after the wake word is the turn; the wake word itself is not sent.
        self.detector.reset()
        out.append(PlayCue("wake"))
        return True

    def _on_turn_event(
        self, event: object, frame: StageFrame, playback: Playback, now_s: float, out: list[Action]
    ) -> None:
        match event:
            case SpeechStarted():
                if self._reply_active(playback) and self.barge_in_allowed:
                    self._barge_in_onset_s = event.timestamp_s
                    self._interrupt("barge-in", send_cancel=True, playback=playback, now_s=now_s, out=out)
                if self._fire(Trigger.SPEECH_STARTED, now_s, out):
                    self._turn = TurnTimeline(speech_start_s=event.timestamp_s)
                    if not self.server_vad:
                        out.append(SendAudio(event.audio, frame.captured_at_s, live=False))
            case SpeechAudio():
                if not self.server_vad and self.state is TurnState.USER_TURN:
                    out.append(SendAudio(event.audio, frame.captured_at_s))
            case SpeechEnded():
                if self.state is not TurnState.USER_TURN:
                    return
                turn = self._turn
                if turn is not None:
                    turn.speech_end_s = event.timestamp_s
                self._fire(Trigger.SPEECH_ENDED, now_s, out)
                if not self.server_vad:
                    out.append(EndTurn(event.timestamp_s, turn))

    def _echo_unvouched(self, frame: StageFrame) -> bool:
        """An echo canceller is configured but did not vouch for this frame while the device talks or
        its echo may still be in the room (converging, its reference stalled, too slow): the frame may
        be the device's own voice, so it is not listened to — half duplex is the safe fallback, never
        self-interruption."""
        if self.config.audio.echo.mode != "webrtc" or frame.echo_cancelled:
            return False
        if frame.playback_active:
            self._echo_until_s = frame.captured_at_s + ECHO_TAIL_S
            return True
        return frame.captured_at_s < self._echo_until_s

    def _reply_active(self, playback: Playback) -> bool:
        return playback.active or self.session.current_chat_id is not None

    def mute_mic_until(self, until_s: float) -> None:
        """Ignore frames captured before ``until_s`` (so the mic does not hear a chime as speech)."""
        self._mute_until_s = max(self._mute_until_s, until_s)

    def set_muted(self, muted: bool, now_s: float) -> list[Action]:
        """Mute or unmute the microphone: muted, not one frame is looked at or sent."""
        out: list[Action] = []
        if muted and not self.muted:
            if self.state is TurnState.USER_TURN:
                self._fire(Trigger.CONNECTION_LOST, now_s, out)
            self.detector.reset()
        self.muted = muted
        return out

    # --- buttons ------------------------------------------------------------------------------------

    def press(self, playback: Playback, now_s: float) -> list[Action]:
        """Push-to-talk pressed: interrupt the reply; every later frame is the user's until release.

        With the cloud deciding turns, a press only interrupts (and wakes a sleeping device).
        """
        out: list[Action] = []
        if self._reply_active(playback):
            self._barge_in_onset_s = now_s
            self._interrupt("push-to-talk", send_cancel=True, playback=playback, now_s=now_s, out=out)
        if self.server_vad:
            if self.state is TurnState.SLEEPING:
                self._fire(Trigger.WAKE, now_s, out)
            return out
        if self.state is TurnState.PUSH_TO_TALK:
            return out
        if self._fire(Trigger.PRESS, now_s, out):
            self._press_s = now_s
            self._press_frames = 0
            self._turn = TurnTimeline(speech_start_s=now_s)
        return out

    def release(self, now_s: float) -> list[Action]:
        """Push-to-talk released: the turn ends (a bounce with no audio asks for no reply)."""
        out: list[Action] = []
        if self.state is not TurnState.PUSH_TO_TALK:
            return out
        held_s = now_s - (self._press_s if self._press_s is not None else now_s)
        if self._press_frames == 0 or held_s < MIN_PRESS_S:
            self._fire(Trigger.RELEASE_EMPTY, now_s, out)
            self._turn = None
            if self._press_frames and self.session.ready:
                # Audio of the bounce already went out: drop it on the server too.
                out.append(SendControl(self.session.clear()))
            return out
        turn = self._turn
        if turn is not None:
            turn.speech_end_s = now_s
        self._fire(Trigger.RELEASE, now_s, out)
        out.append(EndTurn(now_s, turn))
        return out

    # --- interrupts -----------------------------------------------------------------------------------

    def interrupt(self, reason: str, *, send_cancel: bool, playback: Playback, now_s: float) -> list[Action]:
        """Stop the reply now (see :meth:`_interrupt`); ``send_cancel`` tells the server too."""
        out: list[Action] = []
        self._interrupt(reason, send_cancel=send_cancel, playback=playback, now_s=now_s, out=out)
        return out

    def _interrupt(
        self, reason: str, *, send_cancel: bool, playback: Playback, now_s: float, out: list[Action]
    ) -> None:
        """Fade the output out, drop its audio, cancel its tool calls; both the chat being heard and
        the one in progress (they differ when a finished reply still plays while the next one runs
        its tools)."""
        current = self.session.current_chat_id
        targets = list(dict.fromkeys(c for c in (playback.chat_id, current) if c))
        if send_cancel and self.session.ready and current is not None:
            with contextlib.suppress(SessionStateError):
                out.append(SendControl(self.session.cancel(), first=True))
        fade_ms = self.config.agent.interrupt_fade_ms
        if targets:
            for chat_id in targets:
                self._drop_chat(chat_id, fade_ms, now_s, out)
        else:
            out.append(Flush(None, fade_ms))
        self.counters.interrupts += 1
        by_reason = self.counters.interrupts_by_reason
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if self.state in REPLYING:
            self._fire(Trigger.INTERRUPTED, now_s, out)
        out.append(
            Notice(
                NoticeKind.INTERRUPTED,
                "reply interrupted",
                {"reason": reason, "chat_ids": targets, "logid": self.session.last_logid},
            )
        )
        if reason in ("barge-in", "push-to-talk", "wake word"):
            self.latency.add("barge_in_to_silent", self._barge_in_onset_s, now_s)
        elif reason == "server speech_started":
            self.latency.add("server_speech_started_to_silent", self._server_speech_s, now_s)

    def _drop_chat(self, chat_id: str, fade_ms: float, now_s: float, out: list[Action]) -> None:
        """Silence and forget one chat: its queued and later audio, its tool calls, its turn."""
        self.session.mark_cancelled(chat_id)
        turn = self._by_chat.get(chat_id)
        out.append(Flush(chat_id, fade_ms, turn))
        if chat_id in self._running_tools:
            self._running_tools.discard(chat_id)
            out.append(CancelTools(chat_id))
            out.append(
                Notice(
                    NoticeKind.TOOLS_CANCELLED, "tool calls cancelled with their chat", {"chat_id": chat_id}
                )
            )
        if turn is not None:
            turn.interrupted = True
            turn.interrupted_s = now_s
            self._end_turn(turn, out)

    # --- the connection -----------------------------------------------------------------------------

    def connection_lost(self, now_s: float) -> list[Action]:
        """The socket is gone: abandon tool runs and the user's turn; queued reply audio plays out."""
        out: list[Action] = []
        for chat_id in sorted(self._running_tools):
            out.append(CancelTools(chat_id))
        self._running_tools.clear()
        if self.session.state is not ConnectionState.CLOSED:
            abandoned = self.session.connection_lost()
            if abandoned:
                out.append(
                    Notice(
                        NoticeKind.TOOLS_ABANDONED,
                        "tool calls abandoned with the connection",
                        {"chat_ids": abandoned},
                    )
                )
        for turn in list(self._by_chat.values()):
            if turn.chat_id is not None:
                out.append(PlayoutComplete(turn.chat_id))
            if turn not in self._ended:
                turn.chat_done_s = now_s
                self._ended.append(turn)
        if self.state in (
            TurnState.USER_TURN,
            TurnState.PUSH_TO_TALK,
            TurnState.AWAITING_REPLY,
            TurnState.IDLE,
        ):
            self._fire(Trigger.CONNECTION_LOST, now_s, out)
        self._turn = None
        self.session.reconnected()
        return out

    # --- the downlink -------------------------------------------------------------------------------

    def received(self, results: Iterable[ReceiveResult], playback: Playback, now_s: float) -> list[Action]:
        """Everything :meth:`ClientSession.receive` returned for one frame."""
        out: list[Action] = []
        results = list(results)
        # An event the session found out of order changed nothing there: do not act on it here.
        ignored = any(isinstance(r, OutOfOrder) for r in results)
        for result in results:
            if ignored and isinstance(result, ev.EventBase):
                continue
            self._dispatch(result, playback, now_s, out)
        return out

    def _dispatch(self, result: ReceiveResult, playback: Playback, now_s: float, out: list[Action]) -> None:
        match result:
            case AudioChunk():
                self._on_audio(result, now_s, out)
            case StaleAudio():
                self.counters.stale_chunks += 1
            case FrameToSend():
                out.append(SendControl(result.frame, first=True))
            case ev.ChatUpdated():
                out.append(
                    Notice(
                        NoticeKind.CONFIGURED,
                        "session configured",
                        {"conversation_id": self.session.conversation_id, "logid": self.session.last_logid},
                    )
                )
            case ToolCallsRequested():
                self._start_tools(result, out)
            case ev.ConversationChatCreated():
                self._on_chat_created(result.data.id, out)
            case ev.ConversationAudioCompleted():
                chat_id = result.data.chat_id if result.data is not None else None
                if chat_id and not self.session.is_cancelled(chat_id):
                    out.append(PlayoutComplete(chat_id))
            case ev.ConversationChatCompleted() | ev.ConversationChatFailed():
                self._on_chat_done(result, now_s, out)
            case ChatCancelled():
                # The session already counts the chat as cancelled; drop what was queued of it,
                # whether or not it had started to play.
                if result.chat_id in self._by_chat or result.chat_id in self._running_tools:
                    self._drop_chat(result.chat_id, self.config.agent.interrupt_fade_ms, now_s, out)
                    out.append(
                        Notice(
                            NoticeKind.SERVER_CANCELLED,
                            "reply cancelled by the server",
                            {
                                "chat_id": result.chat_id,
                                "reason": result.reason,
                                "logid": self.session.last_logid,
                            },
                        )
                    )
                if self.state in REPLYING and self.session.current_chat_id is None:
                    self._fire(Trigger.INTERRUPTED, now_s, out)
            case ev.InputAudioBufferSpeechStarted():
                self._server_speech_s = now_s
                if playback.active or playback.chat_id is not None:
                    self._interrupt(
                        "server speech_started", send_cancel=False, playback=playback, now_s=now_s, out=out
                    )
                if self.state in (TurnState.IDLE, TurnState.AWAITING_REPLY):
                    self._fire(Trigger.SPEECH_STARTED, now_s, out)
                self._turn = TurnTimeline(speech_start_s=now_s)
            case ev.InputAudioBufferSpeechStopped():
                if self._turn is not None:
                    self._turn.speech_end_s = now_s
                if self.state is TurnState.USER_TURN:
                    self._fire(Trigger.SPEECH_ENDED, now_s, out)
            case ev.ConversationAudioTranscriptCompleted():
                out.append(
                    Notice(
                        NoticeKind.HEARD,
                        "heard",
                        {"text": result.data.content, "logid": self.session.last_logid},
                    )
                )
                if self._turn is not None:
                    self._turn.heard = result.data.content
                else:
                    turn = self._by_chat.get(self.session.current_chat_id or "")
                    if turn is not None:
                        turn.heard = result.data.content
            case ev.ConversationMessageCompleted():
                message = result.data
                if (
                    message.role == "assistant"
                    and message.type == "answer"
                    and message.content_type == "text"
                ):
                    turn = self._by_chat.get(message.chat_id or "")
                    if turn is not None:
                        turn.reply = message.content
            case ev.Error():
                self._on_server_error(result, out)
            case OutOfOrder():
                out.append(
                    Notice(
                        NoticeKind.OUT_OF_ORDER,
                        "server event out of order; ignored",
                        {"event_type": result.event_type},
                    )
                )
            case InvalidAudio():
                self.counters.invalid_frames += 1
                out.append(
                    Notice(
                        NoticeKind.INVALID_AUDIO, "undecodable audio delta dropped", {"reason": result.reason}
                    )
                )
            case ev.MalformedEvent():
                self.counters.invalid_frames += 1
                out.append(
                    Notice(
                        NoticeKind.MALFORMED,
                        "malformed server frame dropped",
                        {"reason": result.reason, "excerpt": result.excerpt},
                    )
                )
            case ev.UnknownEvent():
                self.counters.unknown_events += 1
                out.append(
                    Notice(
                        NoticeKind.UNKNOWN_EVENT,
                        "unknown server event ignored",
                        {"event_type": result.event_type},
                    )
                )
            case _:
                pass

    def _on_chat_created(self, chat_id: str, out: list[Action]) -> None:
        self._reply_deadline_s = None
        turn = self._turn if self._turn is not None and self._turn.chat_id is None else None
        if turn is None:
            # A text turn, a prologue or an announcement: no local speech preceded it.
            turn = TurnTimeline()
        turn.chat_id = chat_id
        self._by_chat[chat_id] = turn
        self._turn = None
        while len(self._by_chat) > MAX_TRACKED_CHATS:
            oldest = next(iter(self._by_chat.values()))
            self._end_turn(oldest, out)

    def _on_audio(self, chunk: AudioChunk, now_s: float, out: list[Action]) -> None:
        self.counters.audio_chunks += 1
        turn = self._by_chat.get(chunk.chat_id)
        if turn is not None and turn.first_delta_s is None:
            turn.first_delta_s = now_s
        out.append(Play(chunk.chat_id, chunk.payload))
        if self.state not in REPLYING:
            trigger = Trigger.REPLY_AUDIO if self.barge_in_allowed else Trigger.REPLY_AUDIO_GATED
            self._fire(trigger, now_s, out)

    def _on_chat_done(
        self, event: ev.ConversationChatCompleted | ev.ConversationChatFailed, now_s: float, out: list[Action]
    ) -> None:
        chat = event.data
        turn = self._by_chat.get(chat.id)
        if isinstance(event, ev.ConversationChatFailed):
            error = chat.last_error
            out.append(
                Notice(
                    NoticeKind.CHAT_FAILED,
                    "the bot failed to answer",
                    {
                        "chat_id": chat.id,
                        "code": error.code if error else None,
                        "msg": error.msg if error else None,
                        "logid": self.session.last_logid,
                    },
                )
            )
        # The server may skip audio.completed on failure; play what arrived.
        out.append(PlayoutComplete(chat.id))
        if turn is not None and turn not in self._ended:
            turn.chat_done_s = now_s
            self._ended.append(turn)
        if self.state is TurnState.AWAITING_REPLY and (turn is None or turn.first_delta_s is None):
            self._fire(Trigger.NO_REPLY, now_s, out)

    def _on_server_error(self, event: ev.Error, out: list[Action]) -> None:
        self.counters.server_errors += 1
        code = event.data.code
        by_code = self.counters.server_errors_by_code
        if code in by_code or len(by_code) < 32:
            by_code[code] = by_code.get(code, 0) + 1
        logid = event.detail.logid if event.detail else None
        fatal = server_code_error(code, event.data.msg, logid)
        if fatal is not None:
            out.append(Stop(fatal))
            return
        if self.session.state is ConnectionState.CONFIGURING:
            if code in INVALID_PARAMETER_CODES:
                # The answer to chat.update: the session config itself is wrong, and will be on every retry.
                where = f" (logid {logid})" if logid else ""
                out.append(
                    Stop(
                        FatalError(
                            f"Coze rejected the session configuration with error {code} ({event.data.msg}): "
                            f"fix the [session] settings{where}",
                            EXIT_CONFIG,
                        )
                    )
                )
                return
            # Not a verdict on the config (a 5000, a rate limit): try again on a new connection.
            retry_after_s = 5.0 if code == RATE_LIMITED_CODE else None
            out.append(Reconnect(f"server error {code} before the session was configured", retry_after_s))
        out.append(
            Notice(
                NoticeKind.SERVER_ERROR, "server error", {"code": code, "msg": event.data.msg, "logid": logid}
            )
        )

    # --- tools --------------------------------------------------------------------------------------

    def _start_tools(self, request: ToolCallsRequested, out: list[Action]) -> None:
        self.counters.tool_batches += 1
        turn = self._by_chat.get(request.chat_id)
        if turn is not None:
            turn.tool_calls.extend(call.function.name for call in request.tool_calls)
        self._running_tools.add(request.chat_id)
        out.append(StartTools(request.chat_id, request.tool_calls))

    def tools_finished(self, chat_id: str, outputs: list[ToolOutput], now_s: float) -> list[Action]:
        """The outputs of the tool runs started for ``chat_id``: submit them if the chat still waits."""
        out: list[Action] = []
        self._running_tools.discard(chat_id)
        if self.session.is_cancelled(chat_id) or chat_id not in self.session.pending_tool_calls:
            return out
        try:
            out.append(SendControl(self.session.submit_tool_outputs(chat_id, outputs)))
        except SessionStateError as exc:
            out.append(
                Notice(
                    NoticeKind.TOOLS_NOT_SUBMITTED,
                    "tool outputs not submitted",
                    {"chat_id": chat_id, "error": str(exc)},
                )
            )
        return out

    # --- time ---------------------------------------------------------------------------------------

    def tick(self, playback: Playback, now_s: float) -> list[Action]:
        """Housekeeping a few times a second: deadlines, replies played out, turn summaries."""
        out: list[Action] = []
        self._check_playback(playback, now_s, out)
        if self._listen_deadline_s is not None and now_s >= self._listen_deadline_s:
            self._listen_deadline_s = None
            if self.state is TurnState.IDLE and self.config.listen.mode == "wake_word":
                out.append(Notice(NoticeKind.LISTEN_TIMEOUT, "no speech; back to sleep", {}))
                self._fire(Trigger.LISTEN_TIMEOUT, now_s, out)
        if self._reply_deadline_s is not None and now_s >= self._reply_deadline_s:
            self._reply_deadline_s = None
            if self.state is TurnState.AWAITING_REPLY:
                self.counters.unanswered_turns += 1
                out.append(
                    Notice(
                        NoticeKind.UNANSWERED,
                        "the bot did not answer the turn; listening again",
                        {
                            "waited_s": self.config.listen.unanswered_timeout_s,
                            "logid": self.session.last_logid,
                        },
                    )
                )
                self._fire(Trigger.NO_REPLY, now_s, out)
        for turn in list(self._ended):
            chat_id = turn.chat_id
            if chat_id is None:
                continue
            if playback.active and playback.chat_id in (chat_id, None):
                continue
            self._end_turn(turn, out)
        return out

    def _check_playback(self, playback: Playback, now_s: float, out: list[Action]) -> None:
        if (
            self.state in REPLYING
            and not playback.active
            and playback.chat_id is None
            and self.session.current_chat_id is None
        ):
            self._fire(Trigger.REPLY_PLAYED, now_s, out)

    def _end_turn(self, turn: TurnTimeline, out: list[Action]) -> None:
        if turn.chat_id is not None and self._by_chat.get(turn.chat_id) is turn:
            del self._by_chat[turn.chat_id]
        if turn in self._ended:
            self._ended.remove(turn)
        self.counters.turns += 1
        out.append(TurnEnded(turn))


def error_outputs(calls: list[ToolCall], message: str) -> list[ToolOutput]:
    """One error output per distinct call id (what the bot gets when the tools could not run)."""
    seen: dict[str, ToolCall] = {}
    for call in calls:
        seen.setdefault(call.id, call)
    return [
        ToolOutput(tool_call_id=c.id, output=json.dumps({"error": message, "tool": c.function.name}))
        for c in seen.values()
    ]
