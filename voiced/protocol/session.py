"""The client side of one Coze realtime chat connection, as a state machine with no I/O.

Feed every received frame to :meth:`ClientSession.receive`; it returns what happened as typed
events. Call the sending methods (:meth:`~ClientSession.update`, :meth:`~ClientSession.append_audio`,
…) to get the text frame to put on the wire; a move that the protocol forbids in the current state
raises :class:`SessionStateError` before anything is sent. After the socket drops, call
:meth:`~ClientSession.connection_lost`, connect again and start over from ``chat.created``: the
session keeps the ``conversation_id`` so the next ``chat.update`` resumes the same context
(protocol.md §3.1, "Config is per connection").

All connection-state transitions live in :data:`TRANSITIONS`, one table in the manner of h11.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

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
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferComplete,
    InputAudioBufferSpeechStarted,
    InputTextGenerateAudio,
    MalformedEvent,
    MessageCreateData,
    SubmitToolOutputsData,
    UnknownEvent,
    new_event_id,
    parse_server_frame,
)
from voiced.protocol.models import ChatConfig, SessionConfig, ToolCall, ToolOutput


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

_FINAL_CHAT_STATUSES = frozenset({"completed", "failed", "canceled"})


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
class OutOfOrder:
    """A server event that the protocol does not expect in ``state``; it was ignored. Log it."""

    event_type: str
    state: ConnectionState


SessionEvent = (
    AnyServerEvent | AudioChunk | StaleAudio | InvalidAudio | ToolCallsRequested | ChatCancelled | OutOfOrder
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
        self.chat_status: OrderedDict[str, str] = OrderedDict()
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
        event = parse_server_frame(frame, self.max_frame_bytes)
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
                return self._received_move(Move.RECV_CHAT_CREATED, event)
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
                self.current_chat_id = chat.id
                self._set_status(chat.id, chat.status or "in_progress")
                if chat.conversation_id and chat.conversation_id != "0":
                    self.conversation_id = chat.conversation_id
                return [event]
            case ConversationChatRequiresAction():
                chat = event.data
                self._set_status(chat.id, "requires_action")
                calls = chat.tool_calls
                if self.is_cancelled(chat.id):
                    return [event]
                self.pending_tool_calls[chat.id] = calls
                return [event, ToolCallsRequested(chat.id, calls)]
            case ConversationChatCompleted() | ConversationChatFailed():
                chat = event.data
                self._set_status(
                    chat.id, "completed" if isinstance(event, ConversationChatCompleted) else "failed"
                )
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

    def _audio(self, event: ConversationAudioDelta) -> AudioChunk | StaleAudio | InvalidAudio:
        chat_id = event.data.chat_id or GENERATED_AUDIO_CHAT_ID
        if self.is_cancelled(chat_id):
            # Size from the base64 length: no need to decode what is thrown away.
            return StaleAudio(chat_id, len(event.data.content) * 3 // 4)
        try:
            payload = event.audio()
        except ValueError as exc:
            return InvalidAudio(chat_id, str(exc))
        return AudioChunk(chat_id, payload, event)

    def _set_status(self, chat_id: str, status: str) -> None:
        self.chat_status[chat_id] = status
        self.chat_status.move_to_end(chat_id)
        while len(self.chat_status) > self._max_cancelled:
            self.chat_status.popitem(last=False)

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
        if chat_id not in self.chat_status or self.chat_status[chat_id] not in _FINAL_CHAT_STATUSES:
            self._set_status(chat_id, "canceled")
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
        return InputAudioBufferAppend.from_audio(payload, event_id=new_event_id()).to_frame()

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
        want = sorted(call.id for call in pending)
        got = sorted(output.tool_call_id for output in outputs)
        if want != got:
            raise SessionStateError(f"tool outputs for {got} do not match the pending calls {want}")
        del self.pending_tool_calls[chat_id]
        self._set_status(chat_id, "in_progress")
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
