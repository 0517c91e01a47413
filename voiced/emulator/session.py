"""One emulated connection: the server side of the Coze realtime chat protocol.

A :class:`Session` owns everything of one WebSocket: the effective session config (defaults of the
real server, merged by ``chat.update``), the input audio buffer and the server VAD, the reply in
progress, a pending tool call, and the :class:`Downlink` that every server frame goes through (where
the delay / jitter / drop / garbage faults are applied). All of its tasks live in one TaskGroup and end
with the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from voiced.emulator.audio_in import AudioRejectedError, InputDecoder, SpeechSegmenter
from voiced.emulator.bot import AudioSender, ReplyRunner, audio_delta, generate_audio, generated_speech_sender
from voiced.emulator.faults import FaultPlan, FaultSettings, merged_faults
from voiced.emulator.scenarios import Turn, TurnCursor, prologue_turn, render_template
from voiced.emulator.settings import EmulatorSettings
from voiced.emulator.tts import Voice
from voiced.protocol.events import (
    AnyClientEvent,
    CanceledData,
    ChatCreated,
    ChatUpdate,
    ChatUpdated,
    ConversationAudioTranscriptCompleted,
    ConversationAudioTranscriptUpdate,
    ConversationChatCancel,
    ConversationChatCanceled,
    ConversationChatSubmitToolOutputs,
    ConversationClear,
    ConversationCleared,
    ConversationMessageCreate,
    Detail,
    Error,
    EventBase,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCleared,
    InputAudioBufferComplete,
    InputAudioBufferCompleted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputTextGenerateAudio,
    MalformedEvent,
    TranscriptData,
    UnknownEvent,
    new_event_id,
    parse_client_frame,
)
from voiced.protocol.models import (
    Chat,
    ChatConfig,
    ErrorData,
    InputAudio,
    OutputAudio,
    PcmConfig,
    SessionConfig,
    ToolCall,
    TurnDetection,
    deep_merge,
)

log = structlog.get_logger("voiced.emulator")

# canceled codes, protocol.md §4: 1 = user speech, 2 = client cancel, 3 = a new message.create.
CANCELED_BY_SPEECH = 1
CANCELED_BY_CLIENT = 2
CANCELED_BY_NEW_MESSAGE = 3
_CANCELED_MSG = {
    CANCELED_BY_SPEECH: "interrupted by user speech",
    CANCELED_BY_CLIENT: "canceled by the client",
    CANCELED_BY_NEW_MESSAGE: "interrupted by a new conversation.message.create",
}
INVALID_PARAMETER = 4000
_INPUT_FORMATS = ("pcm", "wav", "ogg")
_CODECS = ("pcm", "opus", "g711a", "g711u")
_INPUT_RATES_HZ = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
_TURN_TYPES = ("client_interrupt", "server_vad", "semantic_vad")
_GENERATE_AUDIO_MAX_BYTES = 1024
_ORIGIN_EXCERPT_CHARS = 300
#: Server VAD: one more word of interim transcript per this much speech.
_INTERIM_WORD_MS = 250
_DOWNLINK_QUEUE_FRAMES = 512
_id_counter = itertools.count(int(time.time() * 1000) % 10**9)


def default_config() -> SessionConfig:
    """The effective config of a fresh connection: the real server's defaults (protocol.md §3.1)."""
    return SessionConfig(
        chat_config=ChatConfig(auto_save_history=True),
        input_audio=InputAudio(format="wav", codec="pcm", sample_rate=24000, channel=1, bit_depth=16),
        output_audio=OutputAudio(
            codec="pcm", pcm_config=PcmConfig(sample_rate=24000), speech_rate=0, voice_id="emulator-en"
        ),
        turn_detection=TurnDetection(type="client_interrupt", prefix_padding_ms=600, silence_duration_ms=500),
        event_subscriptions=[],
        need_play_prologue=False,
    )


def merge_config(current: SessionConfig, update: SessionConfig) -> SessionConfig:
    """``current`` with ``update`` merged in, field by field. Raises ValueError for a bad value."""
    merged = SessionConfig.model_validate(deep_merge(current.to_wire(), update.to_wire()))
    problems = _config_problems(merged)
    if problems:
        raise ValueError("; ".join(problems))
    return merged


def _config_problems(config: SessionConfig) -> list[str]:
    problems = []
    audio_in = config.input_audio or InputAudio()
    if audio_in.format not in _INPUT_FORMATS:
        problems.append(
            f"input_audio.format must be one of {', '.join(_INPUT_FORMATS)}, got {audio_in.format!r}"
        )
    if audio_in.codec not in _CODECS:
        problems.append(f"input_audio.codec must be one of {', '.join(_CODECS)}, got {audio_in.codec!r}")
    if audio_in.sample_rate not in _INPUT_RATES_HZ:
        problems.append(f"input_audio.sample_rate {audio_in.sample_rate} is not supported")
    elif audio_in.codec == "opus" and audio_in.sample_rate not in (8000, 16000, 24000, 48000):
        problems.append(f"input_audio.sample_rate {audio_in.sample_rate} is not an Opus rate")
    elif audio_in.codec in ("g711a", "g711u") and audio_in.sample_rate != 8000:
        problems.append("input_audio.sample_rate must be 8000 for g711")
    if audio_in.channel not in (None, 1):
        problems.append("input_audio.channel must be 1")
    audio_out = config.output_audio or OutputAudio()
    if audio_out.codec not in _CODECS:
        problems.append(f"output_audio.codec must be one of {', '.join(_CODECS)}, got {audio_out.codec!r}")
    pcm_rate = audio_out.pcm_config.sample_rate if audio_out.pcm_config else None
    if pcm_rate is not None and pcm_rate not in _INPUT_RATES_HZ:
        problems.append(f"output_audio.pcm_config.sample_rate {pcm_rate} is not supported")
    for name in ("speech_rate", "loudness_rate"):
        value = getattr(audio_out, name)
        if value is not None and not -50 <= value <= 100:
            problems.append(f"output_audio.{name} must be in [-50, 100]")
    turn = config.turn_detection or TurnDetection()
    if turn.type not in _TURN_TYPES:
        problems.append(f"turn_detection.type must be one of {', '.join(_TURN_TYPES)}, got {turn.type!r}")
    return problems


def new_numeric_id() -> str:
    """A 19-digit id like the real server's chat / message / conversation ids."""
    return str(7_500_000_000_000_000_000 + next(_id_counter) * 7919 % 10**17)


@dataclass
class _Outgoing:
    frame: str | bytes
    ready_at_s: float
    counts: bool = True
    event_type: str | None = None


class Downlink:
    """Every server frame goes through here, in order, from one sender task.

    Frames are queued (bounded: the bot waits when the client reads slowly, like a TCP send buffer),
    delayed by the latency faults, and counted; the counting faults (drop after N frames, periodic
    malformed / unknown frames, an injected error) fire here. Call :meth:`run` as a task.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue(_DOWNLINK_QUEUE_FRAMES)
        self._last_ready_s = 0.0
        self.frames_sent = 0
        #: Audio deltas sent since the current reply started (the mid-reply drop fault counts these).
        self.reply_audio_deltas = 0
        self._unsent = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._error_injected = False

    def stamp(self, event: EventBase) -> str:
        """The frame of ``event``; ``id`` and ``detail`` (logid, respond_at) filled like the real server."""
        if event.id is None:
            event.id = new_event_id()
        detail = event.detail or Detail()
        detail.logid = self._session.logid
        detail.respond_at = str(int(time.time() * 1000))
        event.detail = detail
        return event.to_frame()

    async def send(self, event: EventBase) -> None:
        """Queue an event, unless ``event_subscriptions`` filters it out (errors always pass)."""
        subscriptions = self._session.config.event_subscriptions or []
        event_type = getattr(event, "event_type", "")
        if subscriptions and event_type not in subscriptions and event_type != "error":
            return
        await self.send_raw(self.stamp(event), event_type=event_type)

    async def drained(self, timeout_s: float) -> None:
        """Return once every queued frame is on the wire (or after ``timeout_s``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._drained.wait()

    async def send_raw(self, frame: str | bytes, counts: bool = True, event_type: str | None = None) -> None:
        """Queue a frame as is (tests inject garbage with this)."""
        delay_s = self._session.plan.downlink_delay_s(self._session.faults)
        # TCP keeps order: a frame is never released before the one queued ahead of it.
        ready_at_s = max(time.monotonic() + delay_s, self._last_ready_s)
        self._last_ready_s = ready_at_s
        self._unsent += 1
        self._drained.clear()
        await self._queue.put(_Outgoing(frame, ready_at_s, counts, event_type))

    async def run(self) -> None:
        """Send queued frames until the connection closes."""
        ws = self._session.ws
        try:
            while True:
                item = await self._queue.get()
                wait_s = item.ready_at_s - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                await ws.send(item.frame)
                if item.event_type is not None:
                    self._session.sent_event_types[item.event_type] += 1
                if item.event_type == "conversation.audio.delta":
                    self.reply_audio_deltas += 1
                self._unsent -= 1
                if self._unsent == 0:
                    self._drained.set()
                if item.counts:
                    self.frames_sent += 1
                    await self._after_frame()
        except ConnectionClosed:
            self._session.closed.set()
            # Nothing queued will ever be sent: release anyone waiting for the queue to drain.
            self._drained.set()

    async def _after_frame(self) -> None:
        session, faults, count = self._session, self._session.faults, self.frames_sent
        if faults.malformed_every_frames and count % faults.malformed_every_frames == 0:
            await session.ws.send(session.plan.malformed_frame())
        if faults.unknown_every_frames and count % faults.unknown_every_frames == 0:
            await session.ws.send(session.plan.unknown_frame(session.logid))
        base = session.settings.faults
        if base.error_code is not None and not self._error_injected and count >= base.error_after_frames:
            self._error_injected = True
            # Sent from here, not queued: this task is the queue's only consumer.
            code = base.error_code
            error = Error(data=ErrorData(code=code, msg=f"injected error {code} (emulator fault)"))
            await session.ws.send(self.stamp(error))
            session.sent_event_types["error"] += 1
            if base.closes_after_error():
                session.close_soon(code, f"error {code}")
        if faults.drop_after_frames is not None and count >= faults.drop_after_frames:
            session.abort_connection(f"fault: drop after {count} frames")
        drop_after = faults.drop_after_audio_deltas
        if drop_after is not None and self.reply_audio_deltas >= drop_after:
            session.abort_connection(f"fault: drop mid-reply after {self.reply_audio_deltas} audio deltas")


@dataclass
class _ToolWait:
    chat_id: str
    call_ids: list[str]
    outputs: asyncio.Future[dict[str, str]]


class Session:
    """The server side of one connection. Create it in the connection handler and await :meth:`run`."""

    def __init__(
        self,
        ws: ServerConnection,
        *,
        settings: EmulatorSettings,
        voice: Voice,
        index: int,
        bot_id: str,
        logid: str,
        record: Callable[[int, AnyClientEvent | UnknownEvent | MalformedEvent], None],
    ) -> None:
        self.ws = ws
        self.settings = settings
        self.voice = voice
        self.index = index
        self.bot_id = bot_id
        self.logid = logid
        self.plan = FaultPlan(settings.seed, index)
        self.config = default_config()
        self.conversation_id = new_numeric_id()
        self.section_id = self.conversation_id
        self.closed = asyncio.Event()
        #: How many events of each type were put on the wire (injected garbage is not counted).
        self.sent_event_types: Counter[str] = Counter()
        self._record = record
        self._turn_faults: FaultSettings | None = None
        self._cursor = TurnCursor(settings.scenario)
        self._downlink = Downlink(self)
        self._decoder = InputDecoder(self._input_config())
        self._segmenter: SpeechSegmenter | None = None
        self._buffered_ms = 0.0
        self._heard: Turn | None = None
        self._heard_words_sent = 0
        self._speaker: asyncio.Task[None] | None = None
        self._stale_source: Callable[[], AudioSender | None] = lambda: None
        self._tool_wait: _ToolWait | None = None
        self._prologue_played = False
        self._tg: asyncio.TaskGroup | None = None
        #: (role, text) of the conversation so far; ``role: assistant`` messages only add to it.
        self.history: list[tuple[str, str]] = []
        self._log = log.bind(connection=index, bot_id=bot_id, logid=logid)

    # --- what the bot sees (bot.ReplyHost) ---------------------------------------------------------

    @property
    def faults(self) -> FaultSettings:
        """The faults in force now: the connection's, overridden by the current turn's."""
        return merged_faults(self.settings.faults, self._turn_faults)

    async def send(self, event: EventBase) -> None:
        """Queue one server event."""
        await self._downlink.send(event)

    async def send_raw(self, frame: str | bytes) -> None:
        """Queue one raw frame (not counted by the fault counters)."""
        await self._downlink.send_raw(frame, counts=False)

    def new_numeric_id(self) -> str:
        """A fresh chat / message id."""
        return new_numeric_id()

    async def wait_tool_outputs(self, chat: Chat, calls: list[ToolCall]) -> dict[str, str] | None:
        """Wait for a valid ``submit_tool_outputs``; None after ``tool_timeout_s``."""
        future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._tool_wait = _ToolWait(chat.id, [c.id for c in calls], future)
        try:
            async with asyncio.timeout(self.settings.tool_timeout_s):
                return await future
        except TimeoutError:
            self._log.info("tool_outputs_timeout", chat_id=chat.id)
            return None
        finally:
            self._tool_wait = None

    def abort_connection(self, reason: str) -> None:
        """Drop the TCP connection with no close frame (what a network failure looks like)."""
        self._log.info("connection_dropped", reason=reason)
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self, refuse_auth: bool) -> None:
        """Serve the connection until it closes. ``refuse_auth``: send error 4100 and close."""
        if self.faults.ignore_pings:
            _suppress_pongs(self.ws)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            sender = tg.create_task(self._downlink.run())
            pinger = tg.create_task(self._ping_loop()) if self.settings.ping_interval_s > 0 else None
            try:
                if refuse_auth:
                    await self.send(Error(data=ErrorData(code=4100, msg="authentication is invalid")))
                    await self._close_after_flush(4100, "authentication is invalid")
                    return
                # chat.created is sent unprompted right after the upgrade (protocol.md §4, trace).
                await self.send(ChatCreated())
                await self._receive_loop()
            finally:
                await self._stop_speaking()
                sender.cancel()
                if pinger is not None:
                    pinger.cancel()

    async def _receive_loop(self) -> None:
        try:
            async for frame in self.ws:
                event = parse_client_frame(frame, self.settings.max_frame_bytes)
                self._record(self.index, event)
                await self._dispatch(event, frame)
                if self.closed.is_set():
                    return
        except ConnectionClosed:
            return

    async def _close_after_flush(self, code: int, reason: str) -> None:
        # Give the sender a moment to put the last frames on the wire before the close frame.
        await self._downlink.drained(timeout_s=2.0)
        await self.ws.close(1000 if code < 4000 else 1008, reason[:120])
        self.closed.set()

    async def _ping_loop(self) -> None:
        # The real server pings every 15 s and closes after 4 unanswered pings (protocol.md §1).
        unanswered: list[Awaitable[float]] = []
        interval_s = self.settings.ping_interval_s
        while True:
            await asyncio.sleep(interval_s)
            unanswered = [w for w in unanswered if not (isinstance(w, asyncio.Future) and w.done())]
            if len(unanswered) >= self.settings.ping_max_unanswered:
                self._log.info("ping_timeout", unanswered=len(unanswered))
                await self.ws.close(1011, "keepalive ping timeout")
                return
            try:
                unanswered.append(await self.ws.ping())
            except ConnectionClosed:
                return

    async def inject_error(self, faults: FaultSettings) -> None:
        """Send the injected ``error`` event and, for 4027/4028 or when asked, close."""
        code = faults.error_code or INVALID_PARAMETER
        await self.send(Error(data=ErrorData(code=code, msg=f"injected error {code} (emulator fault)")))
        if faults.closes_after_error():
            self.close_soon(code, f"error {code}")

    def close_soon(self, code: int, reason: str) -> None:
        """Close the connection once the frames queued so far are sent."""
        if self._tg is not None:
            self._tg.create_task(self._close_after_flush(code, reason))

    # --- client events -------------------------------------------------------------------------------

    async def _error(
        self, msg: str, origin: str | bytes | None = None, code: int = INVALID_PARAMETER
    ) -> None:
        detail = None
        if origin is not None:
            text = origin if isinstance(origin, str) else repr(origin[:100])
            detail = Detail(origin_message=text[:_ORIGIN_EXCERPT_CHARS])
        self._log.info("client_error", code=code, msg=msg)
        await self.send(Error(data=ErrorData(code=code, msg=msg), detail=detail))

    async def _dispatch(
        self, event: AnyClientEvent | UnknownEvent | MalformedEvent, frame: str | bytes
    ) -> None:
        match event:
            case MalformedEvent():
                self._log.info("malformed_client_frame", reason=event.reason)
                await self._error(f"invalid frame: {event.reason}", frame)
                if self.settings.close_on_malformed:
                    await self._close_after_flush(INVALID_PARAMETER, "malformed frame")
            case UnknownEvent():
                await self._error(f"unsupported event_type {event.event_type!r}", frame)
            case ChatUpdate():
                await self._on_update(event, frame)
            case InputAudioBufferAppend():
                await self._on_append(event, frame)
            case InputAudioBufferComplete():
                await self.send(InputAudioBufferCompleted())
                if self._turn_type() != "server_vad":
                    await self._on_complete()
            case InputAudioBufferClear():
                await self.send(InputAudioBufferCleared())
                if self._turn_type() != "server_vad":
                    self._reset_buffer()
            case ConversationMessageCreate():
                await self._on_message(event, frame)
            case ConversationClear():
                # A new context section; a reply in progress is not interrupted (that is cancel's job).
                self.history.clear()
                self.section_id = new_numeric_id()
                await self.send(ConversationCleared())
            case ConversationChatSubmitToolOutputs():
                await self._on_tool_outputs(event, frame)
            case ConversationChatCancel():
                await self._cancel(CANCELED_BY_CLIENT)
            case InputTextGenerateAudio():
                await self._on_generate_audio(event, frame)

    def _turn_type(self) -> str:
        return (self.config.turn_detection.type if self.config.turn_detection else None) or "client_interrupt"

    def _input_config(self) -> InputAudio:
        return self.config.input_audio or InputAudio()

    def _output_config(self) -> OutputAudio:
        return self.config.output_audio or OutputAudio()

    async def _on_update(self, event: ChatUpdate, frame: str | bytes) -> None:
        try:
            merged = merge_config(self.config, event.data)
        except (ValueError, ValidationError) as exc:
            await self._error(f"invalid chat.update: {exc}", frame)
            return
        self.config = merged
        if merged.chat_config and merged.chat_config.conversation_id:
            # A reconnecting client passes its conversation_id to keep the context (protocol.md §3.1).
            self.conversation_id = merged.chat_config.conversation_id
        else:
            self.config = merged.model_copy(
                update={
                    "chat_config": (merged.chat_config or ChatConfig()).model_copy(
                        update={"conversation_id": self.conversation_id}
                    )
                }
            )
        self._decoder = InputDecoder(self._input_config())
        self._reset_buffer()
        self._segmenter = None
        self._heard = None
        if self._turn_type() == "server_vad":
            turn = self.config.turn_detection or TurnDetection()
            self._segmenter = SpeechSegmenter(turn.prefix_padding_ms or 600, turn.silence_duration_ms or 500)
        self._log.info("config_updated", input=self._decoder.codec, turn=self._turn_type())
        await self.send(ChatUpdated(data=self.config))
        if self.config.need_play_prologue and not self._prologue_played:
            self._prologue_played = True
            await self._play_prologue(self.config.prologue_content or self.settings.scenario.prologue)

    async def _play_prologue(self, text: str) -> None:
        """The bot's opening line, once per connection, in the configured shape [guess, protocol.md §3.1a]."""
        shape = self.settings.prologue_shape
        self._log.info("prologue", shape=shape, chars=len(text))
        if shape == "chat":
            # A chat whose answer is the prologue, audio included, without a user message.
            await self._start_reply(prologue_turn(text), "", 0)
        elif shape == "audio_only":
            output = self._output_config()
            sender = generated_speech_sender(self, output, output.speech_rate or 0)
            self._stale_source = lambda: sender
            self._speaker = self._spawn(self._run_speech(lambda: generate_audio(self, sender, text)))

    def _reset_buffer(self) -> None:
        self._buffered_ms = 0.0
        self._decoder.start_turn()

    async def _on_append(self, event: InputAudioBufferAppend, frame: str | bytes) -> None:
        try:
            payload = base64.b64decode(event.data.delta, validate=True)
        except (binascii.Error, ValueError):
            await self._error("invalid input_audio_buffer.append: delta is not valid base64", frame)
            return
        try:
            pcm16k = self._decoder.decode(payload)
        except AudioRejectedError as exc:
            await self._error(str(exc), frame)
            return
        self._buffered_ms += len(pcm16k) / 32.0
        if self._segmenter is None:
            return
        for boundary in self._segmenter.feed(pcm16k):
            if boundary == "speech_started":
                # The "ASR" decides now what it is hearing, so interim transcripts can stream.
                self._heard = self._cursor.for_audio()
                self._heard_words_sent = 0
                await self.send(InputAudioBufferSpeechStarted())
                if self._speaker is not None:
                    await self._cancel(CANCELED_BY_SPEECH)
            else:
                utterance = self._segmenter.last_utterance
                audio_ms = utterance.audio_ms if utterance else int(self._buffered_ms)
                turn = self._heard or self._cursor.for_audio()
                self._heard = None
                self._reset_buffer()
                await self._finish_audio_turn(turn, audio_ms, stopped_event=True)
        if self._heard is not None and self._segmenter.speaking:
            await self._send_transcript_updates(self._heard, self._segmenter.speech_ms, final=False)

    async def _on_complete(self) -> None:
        audio_ms = int(self._buffered_ms)
        self._reset_buffer()
        if audio_ms == 0:
            policy = self.settings.scenario.on_empty_audio
            if policy == "ignore":
                return
            if policy == "error":
                await self._error("input_audio_buffer.complete with an empty audio buffer")
                return
        await self._start_audio_turn(audio_ms, stopped_event=False)

    async def _start_audio_turn(self, audio_ms: int, *, stopped_event: bool) -> None:
        self._heard_words_sent = 0
        await self._finish_audio_turn(self._cursor.for_audio(), audio_ms, stopped_event=stopped_event)

    async def _send_transcript_updates(self, turn: Turn, audio_ms: int, *, final: bool) -> str:
        """Send the interim transcripts due after ``audio_ms`` of speech; returns the text so far."""
        transcript = render_template(turn.transcript or "", {"audio_ms": audio_ms, "user_text": ""})
        words = transcript.split()
        due = len(words) - 1 if final else min(len(words) - 1, audio_ms // _INTERIM_WORD_MS)
        while self._heard_words_sent < due:
            self._heard_words_sent += 1
            # Each update is the whole interim text so far, not a delta (protocol.md §4).
            interim = " ".join(words[: self._heard_words_sent])
            await self.send(ConversationAudioTranscriptUpdate(data=TranscriptData(content=interim)))
        return transcript

    async def _finish_audio_turn(self, turn: Turn, audio_ms: int, *, stopped_event: bool) -> None:
        transcript = await self._send_transcript_updates(turn, audio_ms, final=True)
        if stopped_event:
            await self.send(InputAudioBufferSpeechStopped())
        await self.send(ConversationAudioTranscriptCompleted(data=TranscriptData(content=transcript)))
        await self._start_reply(turn, transcript, audio_ms)

    async def _on_message(self, event: ConversationMessageCreate, frame: str | bytes) -> None:
        role, text = event.data.role, event.data.content
        if role == "assistant":
            # Context only: no reply (protocol.md §3).
            self.history.append((role, text))
            return
        if role != "user":
            await self._error(
                f"conversation.message.create: role must be user or assistant, got {role!r}", frame
            )
            return
        if self._speaker is not None:
            await self._cancel(CANCELED_BY_NEW_MESSAGE)
        self.history.append((role, text))
        await self._start_reply(self._cursor.for_text(text), text, 0)

    async def _start_reply(self, turn: Turn, user_text: str, audio_ms: int) -> None:
        if self._speaker is not None:
            # A new user turn while the bot still talks: the user interrupted it.
            await self._cancel(CANCELED_BY_SPEECH)
        if turn.faults is not None and turn.faults.error_code is not None:
            await self.inject_error(merged_faults(self.settings.faults, turn.faults))
            return
        output = self._output_config()
        runner = ReplyRunner(
            self,
            turn,
            user_text=user_text,
            audio_ms=audio_ms,
            output=output,
            speech_rate=output.speech_rate or 0,
        )
        self._turn_faults = turn.faults
        self._downlink.reply_audio_deltas = 0
        self._stale_source = lambda: runner.audio
        self._speaker = self._spawn(self._run_speech(runner.run))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # A group that is shutting down refuses new tasks; close the coroutine so it is not leaked.
        if self._tg is None:
            coro.close()
            raise RuntimeError("session is not running")
        try:
            return self._tg.create_task(coro)
        except RuntimeError:
            coro.close()
            raise

    async def _stop_speaking(self) -> bool:
        """Cancel the reply / generated speech in progress; True when there was one."""
        task = self._speaker
        if task is None:
            return False
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # The reply task was cancelled by us; only re-raise when *we* are being cancelled.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        self._speaker = None
        return True

    async def _cancel(self, code: int) -> None:
        stale_sender = self._stale_source()
        stale_count = self.faults.stale_deltas_after_cancel
        was_active = await self._stop_speaking()
        self._log.info("chat_canceled", code=code, active=was_active)
        await self.send(ConversationChatCanceled(data=CanceledData(code=code, msg=_CANCELED_MSG[code])))
        if was_active and stale_count and stale_sender is not None and stale_sender.current is not None:
            for payload in stale_sender.current.upcoming(stale_count):
                await self.send(audio_delta(stale_sender.message, payload))
        self._stale_source = lambda: None

    async def _on_tool_outputs(self, event: ConversationChatSubmitToolOutputs, frame: str | bytes) -> None:
        wait = self._tool_wait
        data = event.data
        if wait is None:
            await self._error(f"chat {data.chat_id} is not waiting for tool outputs", frame)
            return
        if data.chat_id != wait.chat_id:
            await self._error(
                f"submit_tool_outputs.chat_id {data.chat_id!r} does not match the chat waiting for tool "
                f"outputs ({wait.chat_id})",
                frame,
            )
            return
        outputs = {o.tool_call_id: o.output for o in data.tool_outputs}
        missing = [call_id for call_id in wait.call_ids if call_id not in outputs]
        unknown = [call_id for call_id in outputs if call_id not in wait.call_ids]
        if missing or unknown:
            await self._error(
                f"submit_tool_outputs must answer every tool call of chat {wait.chat_id} exactly: "
                f"missing {missing}, unknown {unknown}",
                frame,
            )
            return
        if not wait.outputs.done():
            wait.outputs.set_result(outputs)

    async def _on_generate_audio(self, event: InputTextGenerateAudio, frame: str | bytes) -> None:
        text = event.data.text or ""
        if event.data.mode != "text" or not text.strip():
            await self._error("input_text.generate_audio needs mode 'text' and a non-empty text", frame)
            return
        if len(text.encode("utf-8")) > _GENERATE_AUDIO_MAX_BYTES:
            await self._error(
                f"input_text.generate_audio text must be at most {_GENERATE_AUDIO_MAX_BYTES} bytes", frame
            )
            return
        if self._speaker is not None:
            # Generated speech interrupts the bot's own output (Coze docs for input_text.generate_audio).
            await self._cancel(CANCELED_BY_CLIENT)
        output = self._output_config()
        sender = generated_speech_sender(self, output, output.speech_rate or 0)
        self._stale_source = lambda: sender
        self._speaker = self._spawn(self._run_speech(lambda: generate_audio(self, sender, text)))

    async def _run_speech(self, speech: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # Take a factory, not a coroutine: a task cancelled before its first step would otherwise
        # leave the coroutine it was given never awaited.
        try:
            await speech()
        finally:
            if self._speaker is asyncio.current_task():
                self._speaker = None
                self._turn_faults = None


def _suppress_pongs(ws: ServerConnection) -> None:
    """Fault ``ignore_pings``: the server stops answering pings (websockets answers them by itself)."""
    protocol = ws.protocol
    original = protocol.send_frame

    def send_frame(frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            return
        original(frame)

    protocol.send_frame = send_frame  # type: ignore[method-assign]


def summarize(config: SessionConfig) -> str:
    """One-line summary of a config for logs."""
    return json.dumps(config.to_wire(), separators=(",", ":"))[:300]
