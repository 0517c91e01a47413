"""The client side of one Coze realtime chat connection, as a state machine with no I/O.

Feed every received frame to :meth:`ClientSession.receive`; it returns what happened as typed
events. Call the sending methods (:meth:`~ClientSession.update`, :meth:`~ClientSession.append_audio`,
…) to get the text frame to put on the wire; a move that the protocol forbids in the current state
raises :class:`SessionStateError` before anything is sent. After the socket drops, call
:meth:`~ClientSession.connection_lost`, connect again and start over from ``chat.created``: the
session keeps the ``conversation_id`` so the next ``chat.update`` resumes the same context
(protocol.md §3.1, "Config is per connection").

All connection-state transitions live in :data:`TRANSITIONS`, one table in the manner of h11; every
chat's lifecycle (created → in_progress ⇄ requires_action → completed / failed / canceled) in
:data:`CHAT_TRANSITIONS`. ``receive`` also returns the frames the protocol itself requires in
answer (:class:`FrameToSend`: ``chat.update`` after ``chat.created``): send them first.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from voiced.protocol.append import append_frame, new_append_id
from voiced.protocol.events import (
    DEFAULT_MAX_FRAME_BYTES,
    AnyServerEvent,
    ChatCreated,
    ChatUpdate,
    ChatUpdated,
    ConversationAudioDelta,
    ConversationChatCancel,
    ConversationChatCanceled,
    ConversationChatCompleted,
    ConversationChatCreated,
    ConversationChatFailed,
    ConversationChatInProgress,
    ConversationChatRequiresAction,
    ConversationChatSubmitToolOutputs,
    ConversationClear,
    ConversationMessageCreate,
    EventBase,
    GenerateAudioData,
    InputAudioBufferClear,
    InputAudioBufferComplete,
    InputAudioBufferSpeechStarted,
    InputTextGenerateAudio,
    MalformedEvent,
    MessageCreateData,
    SubmitToolOutputsData,
    UnknownEvent,
    new_event_id,
)
from voiced.protocol.models import ChatConfig, SessionConfig, ToolCall, ToolOutput
from voiced.protocol.parse import parse_server_frame_fast


class SessionStateError(Exception):
    """A send that the protocol forbids right now. The message says what to do instead."""


class ConnectionState(enum.Enum):
    AWAITING_CREATED = "awaiting_created"  # socket open, chat.created not yet seen
    CREATED = "created"  # chat.created seen; send chat.update next
    CONFIGURING = "configuring"  # chat.update sent; wait for chat.updated before any audio
    READY = "ready"  # chat.updated seen: audio and turns may flow
    CLOSED = "closed"  # socket gone; call connection_lost() then reconnect


class Move(enum.Enum):
    RECV_CHAT_CREATED = "recv chat.created"
    SEND_UPDATE = "send chat.update"
    RECV_CHAT_UPDATED = "recv chat.updated"
    CONNECTION_LOST = "connection lost"
    RECONNECT = "reconnect"


S = ConnectionState
#: Every connection-state transition. A pair that is not here is an illegal move.
TRANSITIONS: dict[tuple[ConnectionState, Move], ConnectionState] = {
    (S.AWAITING_CREATED, Move.RECV_CHAT_CREATED): S.CREATED,
    # chat.update may go out before chat.created arrives; the server queues it.
    (S.AWAITING_CREATED, Move.SEND_UPDATE): S.CONFIGURING,
    (S.CREATED, Move.SEND_UPDATE): S.CONFIGURING,
    (S.CONFIGURING, Move.SEND_UPDATE): S.CONFIGURING,
    (S.READY, Move.SEND_UPDATE): S.CONFIGURING,
    (S.CONFIGURING, Move.RECV_CHAT_CREATED): S.CONFIGURING,
    (S.CONFIGURING, Move.RECV_CHAT_UPDATED): S.READY,
    # An unprompted chat.updated (the server may echo config) changes nothing.
    (S.READY, Move.RECV_CHAT_UPDATED): S.READY,
    (S.CREATED, Move.RECV_CHAT_UPDATED): S.READY,
    (S.AWAITING_CREATED, Move.CONNECTION_LOST): S.CLOSED,
    (S.CREATED, Move.CONNECTION_LOST): S.CLOSED,
    (S.CONFIGURING, Move.CONNECTION_LOST): S.CLOSED,
    (S.READY, Move.CONNECTION_LOST): S.CLOSED,
    (S.CLOSED, Move.CONNECTION_LOST): S.CLOSED,
    (S.CLOSED, Move.RECONNECT): S.AWAITING_CREATED,
}

#: input_text.generate_audio replies carry this placeholder chat id [trace].
GENERATED_AUDIO_CHAT_ID = "0"


class ChatStatus(enum.Enum):
    CREATED = "created"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class ChatMove(enum.Enum):
    RECV_CREATED = "recv conversation.chat.created"
    RECV_IN_PROGRESS = "recv conversation.chat.in_progress"
    RECV_REQUIRES_ACTION = "recv conversation.chat.requires_action"
    SEND_TOOL_OUTPUTS = "send submit_tool_outputs"
    RECV_AUDIO = "recv conversation.audio.delta"
    RECV_COMPLETED = "recv conversation.chat.completed"
    RECV_FAILED = "recv conversation.chat.failed"
    CANCEL = "cancel"


C = ChatStatus
M = ChatMove
#: Every chat-lifecycle transition; a chat never announced is None. A pair not here is illegal: the
#: event is reported as :class:`OutOfOrder` and changes nothing.
CHAT_TRANSITIONS: dict[tuple[ChatStatus | None, ChatMove], ChatStatus] = {
    (None, M.RECV_CREATED): C.CREATED,
    (C.CREATED, M.RECV_CREATED): C.CREATED,
    (C.CREATED, M.RECV_IN_PROGRESS): C.IN_PROGRESS,
    (C.IN_PROGRESS, M.RECV_IN_PROGRESS): C.IN_PROGRESS,
    (C.REQUIRES_ACTION, M.RECV_IN_PROGRESS): C.IN_PROGRESS,
    (C.CREATED, M.RECV_REQUIRES_ACTION): C.REQUIRES_ACTION,
    (C.IN_PROGRESS, M.RECV_REQUIRES_ACTION): C.REQUIRES_ACTION,
    (C.REQUIRES_ACTION, M.SEND_TOOL_OUTPUTS): C.IN_PROGRESS,
    (C.CREATED, M.RECV_AUDIO): C.CREATED,
    (C.IN_PROGRESS, M.RECV_AUDIO): C.IN_PROGRESS,
    (C.REQUIRES_ACTION, M.RECV_AUDIO): C.REQUIRES_ACTION,
    # Audio may trail the chat's own end event by a frame or two.
    (C.COMPLETED, M.RECV_AUDIO): C.COMPLETED,
    (C.FAILED, M.RECV_AUDIO): C.FAILED,
    (C.CREATED, M.RECV_COMPLETED): C.COMPLETED,
    (C.IN_PROGRESS, M.RECV_COMPLETED): C.COMPLETED,
    (C.REQUIRES_ACTION, M.RECV_COMPLETED): C.COMPLETED,
    (C.CREATED, M.RECV_FAILED): C.FAILED,
    (C.IN_PROGRESS, M.RECV_FAILED): C.FAILED,
    (C.REQUIRES_ACTION, M.RECV_FAILED): C.FAILED,
    (None, M.CANCEL): C.CANCELED,
    (C.CREATED, M.CANCEL): C.CANCELED,
    (C.IN_PROGRESS, M.CANCEL): C.CANCELED,
    (C.REQUIRES_ACTION, M.CANCEL): C.CANCELED,
    (C.CANCELED, M.CANCEL): C.CANCELED,
}


# --- what receive() reports, beyond the typed server event itself --------------------------------


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Reply audio to play: ``payload`` is raw codec data (PCM bytes or one Opus packet)."""

    chat_id: str
    payload: bytes
    event: ConversationAudioDelta


@dataclass(frozen=True, slots=True)
class StaleAudio:
    """Audio of a chat this client cancelled. Drop it: playing it would talk over the user."""

    chat_id: str
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class InvalidAudio:
    """An audio delta whose content could not be decoded. Log it; the session goes on."""

    chat_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ToolCallsRequested:
    """The bot waits for outputs: run ``tool_calls`` and call ``submit_tool_outputs(chat_id, …)``."""

    chat_id: str
    tool_calls: list[ToolCall]


@dataclass(frozen=True, slots=True)
class ChatCancelled:
    """The server ended ``chat_id`` (``chat.canceled``, or the user spoke over it in ``server_vad``).

    Drop everything queued of that chat and cancel its tool calls; later audio of it is stale.
    """

    chat_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class FrameToSend:
    """A frame the protocol requires in answer to what was received: send it before anything else."""

    frame: str


@dataclass(frozen=True, slots=True)
class OutOfOrder:
    """A server event that the protocol does not expect in ``state``; it was ignored. Log it."""

    event_type: str
    state: ConnectionState | ChatStatus | None


SessionEvent = (
    AnyServerEvent
    | AudioChunk
    | StaleAudio
    | InvalidAudio
    | ToolCallsRequested
    | ChatCancelled
    | OutOfOrder
    | FrameToSend
)
ReceiveResult = SessionEvent | UnknownEvent | MalformedEvent


class ClientSession:
    """One logical Coze chat session across any number of connections.

    ``config`` is what :meth:`update` sends by default. ``max_cancelled_chats`` bounds the memory
    of cancelled chat ids (oldest forgotten first); a chat cancelled that long ago sends no audio.
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_cancelled_chats: int = 64,
    ) -> None:
        self.config = config if config is not None else SessionConfig()
        self.max_frame_bytes = max_frame_bytes
        self.state = ConnectionState.AWAITING_CREATED
        self.conversation_id: str | None = None
        self.current_chat_id: str | None = None
        self.chat_status: OrderedDict[str, ChatStatus] = OrderedDict()
        self.pending_tool_calls: dict[str, list[ToolCall]] = {}
        self.effective_config: SessionConfig | None = None
        self.last_logid: str | None = None
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._max_cancelled = max_cancelled_chats

    # --- state table ----------------------------------------------------------------------------

    def _move(self, move: Move) -> None:
        if not self._try_move(move):
            raise SessionStateError(f"{move.value} is not allowed while the connection is {self.state.value}")

    @property
    def ready(self) -> bool:
        """True once ``chat.updated`` arrived on this connection: audio may be sent."""
        return self.state is ConnectionState.READY

    def is_cancelled(self, chat_id: str | None) -> bool:
        """Whether audio of ``chat_id`` must be dropped."""
        return chat_id is not None and chat_id in self._cancelled

    # --- receiving --------------------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[ReceiveResult]:
        """Parse one received frame and update the session. Never raises.

        Returns the typed event (or :class:`UnknownEvent` / :class:`MalformedEvent`, which the caller
        logs and drops). Audio deltas are returned as :class:`AudioChunk` to play,
        :class:`StaleAudio` to drop, or :class:`InvalidAudio`; ``requires_action`` is followed by a
        :class:`ToolCallsRequested`.
        """
        event = parse_server_frame_fast(frame, self.max_frame_bytes)
        if isinstance(event, UnknownEvent):
            self.last_logid = event.logid or self.last_logid
            return [event]
        if isinstance(event, MalformedEvent):
            return [event]
        if event.detail is not None and event.detail.logid:
            self.last_logid = event.detail.logid
        return self._apply(event)

    def _apply(self, event: AnyServerEvent) -> list[ReceiveResult]:
        match event:
            case ConversationAudioDelta():
                return [self._audio(event)]
            case ChatCreated():
                results = self._received_move(Move.RECV_CHAT_CREATED, event)
                if self.state is ConnectionState.CREATED:
                    # protocol.md §3.1: configure before anything else; the server default input
                    # format would reject our audio.
                    results.append(FrameToSend(self.update()))
                return results
            case ChatUpdated():
                if not self._try_move(Move.RECV_CHAT_UPDATED):
                    return [event, OutOfOrder(event.event_type, self.state)]
                self.effective_config = event.data
                chat_config = event.data.chat_config
                if chat_config is not None and chat_config.conversation_id:
                    self.conversation_id = chat_config.conversation_id
                return [event]
            case ConversationChatCreated() | ConversationChatInProgress():
                chat = event.data
                if self.is_cancelled(chat.id):
                    return [event]
                move = M.RECV_CREATED if isinstance(event, ConversationChatCreated) else M.RECV_IN_PROGRESS
                if not self._chat_move(chat.id, move):
                    return [event, OutOfOrder(event.event_type, self.chat_status.get(chat.id))]
                self.current_chat_id = chat.id
                if chat.conversation_id and chat.conversation_id != "0":
                    self.conversation_id = chat.conversation_id
                return [event]
            case ConversationChatRequiresAction():
                chat = event.data
                if self.is_cancelled(chat.id):
                    return [event]
                if not self._chat_move(chat.id, M.RECV_REQUIRES_ACTION):
                    return [event, OutOfOrder(event.event_type, self.chat_status.get(chat.id))]
                # A repeated tool_call_id is one call: it gets one output (the server keys outputs by id).
                distinct: dict[str, ToolCall] = {}
                for call in chat.tool_calls:
                    distinct.setdefault(call.id, call)
                calls = list(distinct.values())
                self.pending_tool_calls[chat.id] = calls
                return [event, ToolCallsRequested(chat.id, calls)]
            case ConversationChatCompleted() | ConversationChatFailed():
                chat = event.data
                if self.is_cancelled(chat.id):
                    return [event]
                move = M.RECV_COMPLETED if isinstance(event, ConversationChatCompleted) else M.RECV_FAILED
                if not self._chat_move(chat.id, move):
                    return [event, OutOfOrder(event.event_type, self.chat_status.get(chat.id))]
                self.pending_tool_calls.pop(chat.id, None)
                if self.current_chat_id == chat.id:
                    self.current_chat_id = None
                return [event]
            case ConversationChatCanceled():
                return [event, *self._server_cancelled("cancelled by the server")]
            case InputAudioBufferSpeechStarted():
                # server_vad: the user talks over the reply; its remaining audio is stale (§4).
                return [event, *self._server_cancelled("user speech (server_vad)")]
            case _:
                return [event]

    def _try_move(self, move: Move) -> bool:
        new_state = TRANSITIONS.get((self.state, move))
        if new_state is None:
            return False
        self.state = new_state
        return True

    def _received_move(self, move: Move, event: AnyServerEvent) -> list[ReceiveResult]:
        if self._try_move(move):
            return [event]
        return [event, OutOfOrder(event.event_type, self.state)]

    def _server_cancelled(self, reason: str) -> list[ReceiveResult]:
        chat_id = self.current_chat_id
        if chat_id is None:
            return []
        self.mark_cancelled(chat_id)
        return [ChatCancelled(chat_id, reason)]

    def _audio(self, event: ConversationAudioDelta) -> AudioChunk | StaleAudio | InvalidAudio | OutOfOrder:
        chat_id = event.data.chat_id or GENERATED_AUDIO_CHAT_ID
        if self.is_cancelled(chat_id):
            # Size from the base64 length: no need to decode what is thrown away.
            return StaleAudio(chat_id, len(event.data.content) * 3 // 4)
        # Speech of input_text.generate_audio belongs to no chat; any other delta needs its chat.
        if chat_id != GENERATED_AUDIO_CHAT_ID and not self._chat_move(chat_id, M.RECV_AUDIO):
            return OutOfOrder(event.event_type, self.chat_status.get(chat_id))
        try:
            payload = event.audio()
        except ValueError as exc:
            return InvalidAudio(chat_id, str(exc))
        return AudioChunk(chat_id, payload, event)

    def _chat_move(self, chat_id: str, move: ChatMove) -> bool:
        """Apply ``move`` to ``chat_id``'s lifecycle; False (nothing changed) when the table forbids it."""
        new = CHAT_TRANSITIONS.get((self.chat_status.get(chat_id), move))
        if new is None:
            return False
        self.chat_status[chat_id] = new
        self.chat_status.move_to_end(chat_id)
        while len(self.chat_status) > self._max_cancelled:
            self.chat_status.popitem(last=False)
        return True

    # --- interrupts -------------------------------------------------------------------------------

    def mark_cancelled(self, chat_id: str) -> list[ToolCall]:
        """Remember ``chat_id`` as cancelled without sending anything; from now on its audio is stale.

        Returns the tool calls that were pending for it: the caller must cancel their runs and
        submit nothing for them.
        """
        self._cancelled[chat_id] = None
        self._cancelled.move_to_end(chat_id)
        while len(self._cancelled) > self._max_cancelled:
            self._cancelled.popitem(last=False)
        self._chat_move(chat_id, M.CANCEL)
        if self.current_chat_id == chat_id:
            self.current_chat_id = None
        return self.pending_tool_calls.pop(chat_id, [])

    def cancel(self) -> str:
        """The ``conversation.chat.cancel`` frame; the current chat (if any) becomes cancelled first.

        Send it when this device decides to interrupt (barge-in, push-to-talk). Audio of that chat
        that is still in flight will come back as :class:`StaleAudio`.
        """
        self._require_open("cancel a reply")
        if self.current_chat_id is not None:
            self.mark_cancelled(self.current_chat_id)
        return self._frame(ConversationChatCancel())

    # --- sending ----------------------------------------------------------------------------------

    def update(self, config: SessionConfig | None = None) -> str:
        """The ``chat.update`` frame for ``config`` (default: the session's own).

        The known ``conversation_id`` is filled in unless ``config`` names one, so that a reconnect
        keeps its context; a prologue is asked for only while no conversation is known. No audio may
        be sent until ``chat.updated`` is received.
        """
        self._require_open("send chat.update")
        chosen = (config if config is not None else self.config).model_copy(deep=True)
        if self.conversation_id:
            chat_config = chosen.chat_config or ChatConfig()
            if not chat_config.conversation_id:
                chat_config.conversation_id = self.conversation_id
            chosen.chat_config = chat_config
            if chosen.need_play_prologue:
                # The opening line belongs to the start of a conversation, not to a reconnect resuming it.
                chosen.need_play_prologue = None
                chosen.prologue_content = None
        self._move(Move.SEND_UPDATE)
        if config is not None:
            self.config = config
        return self._frame(ChatUpdate(data=chosen))

    def append_audio(self, payload: bytes) -> str:
        """The ``input_audio_buffer.append`` frame for ``payload`` (raw PCM, or exactly one Opus packet)."""
        if self.state is not ConnectionState.READY:
            raise SessionStateError(
                "audio before chat.updated: the server would read it as WAV and answer error 4000; "
                "send update() and wait for chat.updated first"
            )
        if not payload:
            raise SessionStateError("empty audio payload: skip the append instead")
        # A template, not a model per 20 ms frame: the same bytes (tests/protocol/test_append.py).
        return append_frame(payload, new_append_id())

    def complete(self) -> str:
        """The ``input_audio_buffer.complete`` frame that ends the user's turn (``client_interrupt``)."""
        self._require_ready("end the user's turn")
        return self._frame(InputAudioBufferComplete())

    def clear(self) -> str:
        """The ``input_audio_buffer.clear`` frame: drop what was appended and not yet completed."""
        self._require_ready("clear the input buffer")
        return self._frame(InputAudioBufferClear())

    def clear_conversation(self) -> str:
        """The ``conversation.clear`` frame: the bot forgets the context from here on."""
        self._require_ready("clear the conversation")
        return self._frame(ConversationClear())

    def send_text(self, text: str, role: str = "user") -> str:
        """A ``conversation.message.create`` frame; ``role="user"`` starts a reply."""
        self._require_ready("send a message")
        return self._frame(ConversationMessageCreate(data=MessageCreateData(role=role, content=text)))

    def generate_audio(self, text: str) -> str:
        """An ``input_text.generate_audio`` frame: speak ``text`` without an LLM turn (≤1024 bytes)."""
        self._require_ready("generate audio")
        if not text or len(text.encode()) > 1024:
            raise SessionStateError("generate_audio text must be 1 to 1024 bytes of UTF-8")
        # Its audio carries the placeholder chat id: a fresh request un-cancels it.
        self._cancelled.pop(GENERATED_AUDIO_CHAT_ID, None)
        return self._frame(InputTextGenerateAudio(data=GenerateAudioData(mode="text", text=text)))

    def submit_tool_outputs(self, chat_id: str, outputs: Iterable[ToolOutput]) -> str:
        """The ``conversation.chat.submit_tool_outputs`` frame answering the pending calls of ``chat_id``.

        There must be exactly one output per pending ``tool_call_id``; a cancelled chat gets nothing.
        """
        self._require_ready("submit tool outputs")
        outputs = list(outputs)
        if self.is_cancelled(chat_id):
            raise SessionStateError(f"chat {chat_id} was cancelled: submit nothing for it")
        pending = self.pending_tool_calls.get(chat_id)
        if pending is None:
            raise SessionStateError(f"chat {chat_id} has no pending tool calls")
        want = sorted({call.id for call in pending})
        got = sorted(output.tool_call_id for output in outputs)
        if want != got:
            raise SessionStateError(f"tool outputs for {got} do not match the pending calls {want}")
        del self.pending_tool_calls[chat_id]
        self._chat_move(chat_id, M.SEND_TOOL_OUTPUTS)
        return self._frame(
            ConversationChatSubmitToolOutputs(
                data=SubmitToolOutputsData(chat_id=chat_id, tool_outputs=outputs)
            )
        )

    # --- connection lifecycle ---------------------------------------------------------------------

    def connection_lost(self) -> list[str]:
        """Record that the socket is gone. Returns the chat ids whose tool calls were abandoned.

        The caller must cancel those runs; the server forgets paused chats with the connection.
        Then connect again and call :meth:`reconnected`.
        """
        self._move(Move.CONNECTION_LOST)
        abandoned = list(self.pending_tool_calls)
        self.pending_tool_calls.clear()
        if self.current_chat_id is not None:
            self.mark_cancelled(self.current_chat_id)
        self.effective_config = None
        return abandoned

    def reconnected(self) -> None:
        """A new socket is open: wait for ``chat.created``, then send :meth:`update` before any audio."""
        self._move(Move.RECONNECT)

    # --- helpers ----------------------------------------------------------------------------------

    def _require_open(self, what: str) -> None:
        if self.state is ConnectionState.CLOSED:
            raise SessionStateError(f"cannot {what}: the connection is closed; reconnect first")

    def _require_ready(self, what: str) -> None:
        if self.state is not ConnectionState.READY:
            raise SessionStateError(f"cannot {what} before chat.updated (connection is {self.state.value})")

    @staticmethod
    def _frame(event: EventBase) -> str:
        event.id = new_event_id()
        return event.to_frame()
