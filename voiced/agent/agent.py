"""The conversation: microphone to uplink, downlink to speaker, interrupts and tool calls.

:class:`Agent` owns the protocol session, the turn detector, the codecs, the playout and the plugin
runner. The daemon (``voiced.agent.daemon``) feeds it microphone frames (:meth:`Agent.on_mic_frame`)
and runs :meth:`Agent.serve_connection` for each WebSocket it opens. Everything runs on one asyncio
loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voiced.audio.codec import Decoder, Encoder, PcmDecoder, make_decoder, make_encoder
from voiced.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted, TurnDetector
from voiced.config import VoicedConfig
from voiced.conversation.playout import Playout
from voiced.conversation.timeline import LatencyStats, TurnTimeline
from voiced.errors import EXIT_CONFIG, FatalError, server_code_error
from voiced.log import get_logger
from voiced.plugins import ToolRunner
from voiced.protocol import events as ev
from voiced.protocol.models import ToolCall, ToolOutput
from voiced.protocol.session import (
    AudioChunk,
    ChatCancelled,
    ClientSession,
    ConnectionState,
    InvalidAudio,
    OutOfOrder,
    SessionStateError,
    StaleAudio,
    ToolCallsRequested,
)

MIC_RATE_HZ = 16000
MIC_FRAME_MS = 20
MIC_FRAME_BYTES = MIC_RATE_HZ * MIC_FRAME_MS // 1000 * 2

_COMPLETE = object()
#: Turns kept while their chat is in flight; older ones are summarised and forgotten.
MAX_TRACKED_CHATS = 64


@dataclass(slots=True)
class AgentCounters:
    """What happened since start; read by ``voiced check``, the benchmarks and the tests."""

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
    internal_errors: int = 0


class _RateLimitedWarning:
    """Logs the first few occurrences of a kind of problem, then one line per interval with a count."""

    def __init__(self, interval_s: float = 10.0, burst: int = 3) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self._seen: dict[str, tuple[int, float, int]] = {}

    def should_log(self, kind: str, now_s: float) -> int | None:
        """None to stay quiet, else the number of occurrences folded into this line."""
        count, last_s, suppressed = self._seen.get(kind, (0, -1e9, 0))
        count += 1
        if count <= self.burst or now_s - last_s >= self.interval_s:
            self._seen[kind] = (count, now_s, 0)
            return suppressed + 1
        self._seen[kind] = (count, last_s, suppressed + 1)
        return None


class Agent:
    """One device's conversation with a Coze bot, across any number of connections.

    Create it with open devices (the playout's sink open, the source started), then: call
    :meth:`on_mic_frame` for every 20 ms microphone frame, keep :meth:`playout` running, and run
    :meth:`serve_connection` on every new WebSocket. Read :attr:`counters`, :attr:`latency` and
    :attr:`timelines` to observe it.
    """

    def __init__(
        self,
        config: VoicedConfig,
        playout: Playout,
        runner: ToolRunner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.playout = playout
        self.runner = runner
        self.clock = clock
        self.log = get_logger("agent")
        self.session = ClientSession(config.session_config(), max_frame_bytes=config.coze.max_frame_bytes)
        self.detector = TurnDetector(config.audio.vad, MIC_RATE_HZ, MIC_FRAME_MS)
        self.encoder: Encoder = make_encoder(
            config.session.input_codec, MIC_RATE_HZ, MIC_FRAME_MS, config.audio.opus
        )
        self.decoder: Decoder = make_decoder(config.session.output_codec, self.output_rate_hz)
        self._decoding_chat_id: str | None = None
        self.counters = AgentCounters()
        self.latency = LatencyStats()
        self.timelines: deque[TurnTimeline] = deque(maxlen=50)
        self.on_turn_summary: Callable[[TurnTimeline], None] | None = None
        self.on_ready: Callable[[], None] | None = None
        self._warn = _RateLimitedWarning()
        uplink_frames = max(5, config.agent.uplink_queue_ms // MIC_FRAME_MS)
        # (captured_at_s, payload) or (speech_end_s, _COMPLETE); oldest dropped when the socket is slow.
        self._uplink: deque[tuple[float, object]] = deque(maxlen=uplink_frames)
        self._control: deque[str] = deque()
        self._wake = asyncio.Event()
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._turn: TurnTimeline | None = None
        self._by_chat: dict[str, TurnTimeline] = {}
        self._ended: list[TurnTimeline] = []
        self._in_user_turn = False
        self._push_to_talk = False
        self._gated = False
        self._connected = False
        self._barge_in_onset_s: float | None = None
        self._server_speech_s: float | None = None
        self.last_mic_frame_s: float | None = None
        self.volume_pct = config.agent.volume_pct

    # --- VolumeControl (the set_volume / get_volume plugins) ---------------------------------------

    def get_volume_pct(self) -> int:
        """voiced's own playback volume, 0-100."""
        return self.volume_pct

    def set_volume_pct(self, volume_pct: int) -> int:
        """Set the playback volume (clamped to 0-100); applies from the next audio chunk received."""
        self.volume_pct = max(0, min(100, int(volume_pct)))
        self.log.info("volume set", volume_pct=self.volume_pct)
        return self.volume_pct

    # --- derived settings ---------------------------------------------------------------------------

    @property
    def output_rate_hz(self) -> int:
        """The rate the server sends audio at (8 kHz for G.711)."""
        if self.config.session.output_codec in ("g711a", "g711u"):
            return 8000
        return int(self.config.session.output_sample_rate_hz)

    @property
    def server_vad(self) -> bool:
        return self.config.session.turn_detection == "server_vad"

    @property
    def connected(self) -> bool:
        """True while a socket is open and configured (``chat.updated`` seen)."""
        return self._connected and self.session.ready

    @property
    def playing_chat_id(self) -> str | None:
        """The chat whose audio is playing (or about to), if any."""
        return self.playout.jitter.playing_chat_id

    def reply_active(self) -> bool:
        """Whether the bot is replying: audio is playing or a chat is in progress."""
        return self.playout.speaking or self.session.current_chat_id is not None

    # --- microphone side ----------------------------------------------------------------------------

    def on_mic_frame(self, frame: bytes, captured_at_s: float) -> None:
        """Handle one 20 ms 16 kHz s16le microphone frame. Constant work; never blocks."""
        self.counters.mic_frames += 1
        self.last_mic_frame_s = captured_at_s
        speaking = self.playout.speaking
        agent_cfg = self.config.agent
        if speaking and (agent_cfg.half_duplex or not agent_cfg.barge_in):
            # Half duplex: the mic is deaf while the device talks (no echo canceller on the device).
            if not self._gated:
                self._gated = True
                self.detector.reset()
            return
        if self._gated:
            self._gated = False
            self.detector.reset()
        if self._push_to_talk and not self.server_vad:
            # Held push-to-talk: every frame is the user's, whatever the detector thinks.
            self._enqueue_audio(frame, captured_at_s)
            return
        level = self.playout.level_dbfs if speaking else None
        for event in self.detector.feed(frame, captured_at_s, level):
            match event:
                case SpeechStarted():
                    self._speech_started(event, captured_at_s)
                case SpeechAudio():
                    if not self.server_vad and self._in_user_turn:
                        self._enqueue_audio(event.audio, captured_at_s)
                case SpeechEnded():
                    self._speech_ended(event, captured_at_s)
        if self.server_vad:
            # The cloud decides the turns: stream everything, unsegmented.
            self._enqueue_audio(frame, captured_at_s)

    def _speech_started(self, event: SpeechStarted, now_s: float) -> None:
        if self.reply_active() and self.config.agent.barge_in:
            self._barge_in_onset_s = event.timestamp_s
            self.interrupt("barge-in", send_cancel=True)
        self._turn = TurnTimeline(speech_start_s=event.timestamp_s, underruns_at_start=self._underruns())
        if self.server_vad:
            return
        self._in_user_turn = True
        self._enqueue_audio(event.audio, now_s)

    def _speech_ended(self, event: SpeechEnded, now_s: float) -> None:
        if self._turn is not None:
            self._turn.speech_end_s = event.timestamp_s
        if self.server_vad or not self._in_user_turn:
            return
        self._in_user_turn = False
        self._uplink_append((event.timestamp_s, _COMPLETE))

    def push_to_talk(self, pressed: bool) -> None:
        """A press interrupts the reply and opens a turn that takes every mic frame; the release ends it.

        In ``server_vad`` mode the cloud still decides the turns; a press only interrupts.
        """
        now = self.clock()
        if pressed:
            if self.reply_active():
                self._barge_in_onset_s = now
                self.interrupt("push-to-talk", send_cancel=True)
            if not self.server_vad and not self._push_to_talk:
                self._push_to_talk = True
                self._in_user_turn = True
                self.detector.reset()
                self._turn = TurnTimeline(speech_start_s=now, underruns_at_start=self._underruns())
            return
        self._push_to_talk = False
        if self._in_user_turn and not self.server_vad:
            self._in_user_turn = False
            self.detector.reset()
            if self._turn is not None:
                self._turn.speech_end_s = now
            self._uplink_append((now, _COMPLETE))

    def _enqueue_audio(self, pcm: bytes, captured_at_s: float) -> None:
        if not self._connected:
            # Offline: a new connection starts from an empty input buffer anyway; save the CPU.
            return
        for start in range(0, len(pcm) - MIC_FRAME_BYTES + 1, MIC_FRAME_BYTES):
            try:
                payload = self.encoder.encode(pcm[start : start + MIC_FRAME_BYTES])
            except ValueError as exc:
                self.log.error("encoder rejected a mic frame; dropping it", error=str(exc))
                continue
            self._uplink_append((captured_at_s, payload))

    def _uplink_append(self, item: tuple[float, object]) -> None:
        if len(self._uplink) == self._uplink.maxlen:
            self.counters.uplink_dropped_frames += 1
        self._uplink.append(item)
        self._wake.set()

    # --- interrupts ----------------------------------------------------------------------------------

    def interrupt(self, reason: str, *, send_cancel: bool) -> None:
        """Stop the reply now: fade the output out, drop its audio, cancel its tool calls.

        ``send_cancel`` sends ``conversation.chat.cancel`` (when this device decided to interrupt).
        Both the chat being heard and the one in progress (they differ when a finished reply is
        still playing while the next one runs its tools) are dropped.
        """
        now = self.clock()
        targets = list(dict.fromkeys(c for c in (self.playing_chat_id, self.session.current_chat_id) if c))
        if send_cancel and self._connected and self.session.current_chat_id is not None:
            with contextlib.suppress(SessionStateError):
                self._control.append(self.session.cancel())
        played_ms = 0.0
        if targets:
            played_ms = max(self._drop_chat(chat_id, now) for chat_id in targets)
        else:
            self.playout.interrupt(None, self.config.agent.interrupt_fade_ms)
        self._cancel_tools_of_cancelled_chats()
        self.counters.interrupts += 1
        self._wake.set()
        self.log.info(
            "reply interrupted",
            reason=reason,
            chat_ids=targets,
            played_ms=round(played_ms, 1),
            logid=self.session.last_logid,
        )
        if reason in ("barge-in", "push-to-talk"):
            self.latency.add("barge_in_to_silent", self._barge_in_onset_s, now)
        elif reason == "server speech_started":
            self.latency.add("server_speech_started_to_silent", self._server_speech_s, now)

    def _drop_chat(self, chat_id: str, now_s: float) -> float:
        """Silence and forget one chat: queued and later audio, tool calls, its turn. Returns ms played."""
        played_ms = self.playout.interrupt(chat_id, self.config.agent.interrupt_fade_ms)
        self.session.mark_cancelled(chat_id)
        self._cancel_tools(chat_id)
        turn = self._by_chat.get(chat_id)
        if turn is not None:
            turn.interrupted = True
            turn.interrupted_s = now_s
            turn.played_ms = played_ms
            self._end_turn(turn)
        return played_ms

    def _cancel_tools_of_cancelled_chats(self) -> None:
        for chat_id in list(self._tool_tasks):
            if self.session.is_cancelled(chat_id):
                self._cancel_tools(chat_id)

    def resend_config(self) -> None:
        """Send the session's (changed) config now, if connected; audio pauses until ``chat.updated``."""
        if self._connected:
            self._control.append(self.session.update())
            self._wake.set()

    def _cancel_tools(self, chat_id: str) -> None:
        task = self._tool_tasks.pop(chat_id, None)
        if task is not None and not task.done():
            task.cancel()
            self.log.info("tool calls cancelled with their chat", chat_id=chat_id)

    # --- connection side -----------------------------------------------------------------------------

    async def serve_connection(self, ws: ClientConnection) -> None:
        """Run one connection until it closes: downlink, uplink sender and tool calls.

        Returns when the socket closes (the caller reconnects); raises :class:`FatalError` when the
        server says retrying cannot help. The session is told about the loss before returning.
        """
        self._connected = True
        self._uplink.clear()
        self._control.clear()
        try:
            async with asyncio.TaskGroup() as group:
                sender = group.create_task(self._sender(ws), name="uplink")
                deadline = group.create_task(self._config_deadline(ws), name="config-deadline")
                await self._downlink(ws, group)
                # The socket is gone: nothing of this connection may outlive it.
                sender.cancel()
                deadline.cancel()
                for chat_id in list(self._tool_tasks):
                    self._cancel_tools(chat_id)
        finally:
            self._connected = False
            self._connection_ended()

    def _connection_ended(self) -> None:
        for chat_id in list(self._tool_tasks):
            self._cancel_tools(chat_id)
        self._in_user_turn = False
        self._push_to_talk = False
        abandoned = self.session.connection_lost()
        if abandoned:
            self.log.info("tool calls abandoned with the connection", chat_ids=abandoned)
        # What already arrived plays out; nothing more will come for these chats.
        now = self.clock()
        for turn in list(self._by_chat.values()):
            if turn.chat_id is not None:
                self.playout.complete(turn.chat_id)
            if turn not in self._ended:
                turn.chat_done_s = now
                self._ended.append(turn)
        self.session.reconnected()

    async def _config_deadline(self, ws: ClientConnection) -> None:
        """Close a connection that never reaches ``chat.updated``: the caller reconnects."""
        await asyncio.sleep(self.config.coze.open_timeout_s)
        if not self.session.ready:
            self.log.warning(
                "no chat.updated in time; reconnecting",
                timeout_s=self.config.coze.open_timeout_s,
                logid=self.session.last_logid,
            )
            await ws.close(code=1000, reason="no chat.updated")

    async def _downlink(self, ws: ClientConnection, group: asyncio.TaskGroup) -> None:
        try:
            async for frame in ws:
                self._on_frame(frame, group)
        except ConnectionClosed:
            pass

    def _on_frame(self, frame: str | bytes, group: asyncio.TaskGroup) -> None:
        results = self.session.receive(frame)
        # An event the session found out of order changed nothing there: do not act on it here.
        ignored = any(isinstance(r, OutOfOrder) for r in results)
        for result in results:
            if ignored and isinstance(result, ev.EventBase):
                continue
            try:
                self._dispatch(result, group)
            except FatalError:
                raise
            except Exception:
                # A bug in handling one event must not end the conversation: log it and go on.
                self.counters.internal_errors += 1
                self.log.exception(
                    "internal error while handling a server event; continuing",
                    event_type=type(result).__name__,
                    logid=self.session.last_logid,
                )

    def _dispatch(self, result: object, group: asyncio.TaskGroup) -> None:
        now = self.clock()
        match result:
            case AudioChunk():
                self._on_audio(result, now)
            case StaleAudio():
                self.counters.stale_chunks += 1
            case ev.ChatCreated():
                self._control.appendleft(self.session.update())
                self._wake.set()
            case ev.ChatUpdated():
                self.log.info(
                    "session configured",
                    conversation_id=self.session.conversation_id,
                    logid=self.session.last_logid,
                )
                self._wake.set()
                if self.on_ready is not None:
                    self.on_ready()
            case ToolCallsRequested():
                self._start_tools(result, group)
            case ev.ConversationChatCreated():
                self._on_chat_created(result.data.id, now)
            case ev.ConversationAudioCompleted():
                chat_id = result.data.chat_id if result.data is not None else None
                if chat_id and not self.session.is_cancelled(chat_id):
                    self.playout.complete(chat_id)
            case ev.ConversationChatCompleted() | ev.ConversationChatFailed():
                self._on_chat_done(result, now)
            case ChatCancelled():
                # The session already counts the chat as cancelled; drop what was queued of it,
                # whether or not it had started to play.
                if result.chat_id in self._by_chat or result.chat_id in self._tool_tasks:
                    self._drop_chat(result.chat_id, now)
                    self.log.info(
                        "reply cancelled by the server",
                        chat_id=result.chat_id,
                        reason=result.reason,
                        logid=self.session.last_logid,
                    )
            case ev.InputAudioBufferSpeechStarted():
                self._server_speech_s = now
                if self.playout.speaking or self.playing_chat_id is not None:
                    self.interrupt("server speech_started", send_cancel=False)
                self._turn = TurnTimeline(speech_start_s=now, underruns_at_start=self._underruns())
            case ev.InputAudioBufferSpeechStopped():
                if self._turn is not None:
                    self._turn.speech_end_s = now
            case ev.ConversationAudioTranscriptCompleted():
                self.log.info("heard", text=result.data.content, logid=self.session.last_logid)
                if self._turn is not None:
                    self._turn.heard = result.data.content
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
                self._on_server_error(result)
            case OutOfOrder():
                self._warn_once(
                    "out_of_order", "server event out of order; ignored", event_type=result.event_type
                )
            case InvalidAudio():
                self.counters.invalid_frames += 1
                self._warn_once("invalid_audio", "undecodable audio delta dropped", reason=result.reason)
            case ev.MalformedEvent():
                self.counters.invalid_frames += 1
                self._warn_once(
                    "malformed",
                    "malformed server frame dropped",
                    reason=result.reason,
                    excerpt=result.excerpt,
                )
            case ev.UnknownEvent():
                self.counters.unknown_events += 1
                self._warn_once(
                    "unknown:" + result.event_type,
                    "unknown server event ignored",
                    event_type=result.event_type,
                )
            case _:
                pass

    def _warn_once(self, kind: str, message: str, **fields: object) -> None:
        count = self._warn.should_log(kind, self.clock())
        if count is not None:
            self.log.warning(message, occurrences=count, logid=self.session.last_logid, **fields)

    def _on_chat_created(self, chat_id: str, now_s: float) -> None:
        if isinstance(self.decoder, PcmDecoder):
            # A stray odd byte of the previous reply must not shift this one's samples.
            self.decoder.reset()
        turn = self._turn if self._turn is not None and self._turn.chat_id is None else None
        if turn is None:
            # A text turn or a prologue: no local speech preceded it.
            turn = TurnTimeline(underruns_at_start=self._underruns())
        turn.chat_id = chat_id
        self._by_chat[chat_id] = turn
        self._turn = None
        while len(self._by_chat) > MAX_TRACKED_CHATS:
            oldest = next(iter(self._by_chat.values()))
            self._end_turn(oldest)

    def _on_audio(self, chunk: AudioChunk, now_s: float) -> None:
        self.counters.audio_chunks += 1
        turn = self._by_chat.get(chunk.chat_id)
        if turn is not None and turn.first_delta_s is None:
            turn.first_delta_s = now_s
        if chunk.chat_id != self._decoding_chat_id and isinstance(self.decoder, PcmDecoder):
            # Speech from input_text.generate_audio has no chat.created: reset on any change of chat.
            self.decoder.reset()
        self._decoding_chat_id = chunk.chat_id
        errors = self.decoder.errors
        pcm = pcm_scale(self.decoder.decode(chunk.payload), self.volume_pct / 100.0)
        if self.decoder.errors > errors:
            # The decoder conceals a corrupt packet rather than fail; the problem must still be seen.
            self.counters.invalid_frames += 1
            self._warn_once(
                "corrupt_audio",
                "corrupt audio delta concealed",
                chat_id=chunk.chat_id,
                codec=self.decoder.codec,
            )
        if pcm:
            self.playout.push(chunk.chat_id, pcm, now_s)

    def _on_chat_done(
        self, event: ev.ConversationChatCompleted | ev.ConversationChatFailed, now_s: float
    ) -> None:
        chat = event.data
        turn = self._by_chat.get(chat.id)
        if isinstance(event, ev.ConversationChatFailed):
            error = chat.last_error
            self.log.warning(
                "the bot failed to answer",
                chat_id=chat.id,
                code=error.code if error else None,
                msg=error.msg if error else None,
                logid=self.session.last_logid,
            )
        # The server may skip audio.completed on failure; play what arrived.
        self.playout.complete(chat.id)
        if turn is not None and turn not in self._ended:
            turn.chat_done_s = now_s
            self._ended.append(turn)

    def _on_server_error(self, event: ev.Error) -> None:
        self.counters.server_errors += 1
        code = event.data.code
        logid = event.detail.logid if event.detail else None
        fatal = server_code_error(code, event.data.msg, logid)
        if fatal is not None:
            raise fatal
        if self.session.state is ConnectionState.CONFIGURING:
            # The answer to chat.update: the session config itself is wrong, and will be on every retry.
            raise FatalError(
                f"Coze rejected the session configuration with error {code} ({event.data.msg}): "
                f"fix the [session] settings (logid {logid})",
                EXIT_CONFIG,
            )
        self._warn_once(f"server_error:{code}", "server error", code=code, msg=event.data.msg)

    # --- tools ---------------------------------------------------------------------------------------

    def _start_tools(self, request: ToolCallsRequested, group: asyncio.TaskGroup) -> None:
        self.counters.tool_batches += 1
        turn = self._by_chat.get(request.chat_id)
        if turn is not None:
            turn.tool_calls.extend(call.function.name for call in request.tool_calls)
        task = group.create_task(
            self._run_tools(request.chat_id, request.tool_calls), name=f"tools:{request.chat_id}"
        )
        self._tool_tasks[request.chat_id] = task

    async def _run_tools(self, chat_id: str, calls: list[ToolCall]) -> None:
        try:
            if self.runner is not None:
                outputs = await self.runner.run(chat_id, calls)
            else:
                outputs = _error_outputs(calls, "plugins are disabled on this device")
        except Exception:
            # The bot must get an answer even when the plugin host itself fails.
            self.log.exception("the plugin host failed; answering with errors", chat_id=chat_id)
            outputs = _error_outputs(calls, "the device failed to run this tool")
        finally:
            self._tool_tasks.pop(chat_id, None)
        if self.session.is_cancelled(chat_id) or chat_id not in self.session.pending_tool_calls:
            return
        try:
            self._control.append(self.session.submit_tool_outputs(chat_id, outputs))
        except SessionStateError as exc:
            self.log.warning("tool outputs not submitted", chat_id=chat_id, error=str(exc))
            return
        self._wake.set()

    # --- sending -------------------------------------------------------------------------------------

    async def _sender(self, ws: ClientConnection) -> None:
        # A send on a socket that just died ends the sender quietly; the downlink sees the close.
        with contextlib.suppress(ConnectionClosed):
            await self._send_loop(ws)

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._control:
                await ws.send(self._control.popleft())
            while self._uplink and self.session.ready and not self._control:
                captured_at_s, item = self._uplink.popleft()
                if item is _COMPLETE:
                    frame = self.session.complete()
                    await ws.send(frame)
                    sent_s = self.clock()
                    self.latency.add("speech_end_to_complete", captured_at_s, sent_s)
                    turn = self._turn
                    if turn is not None and turn.complete_sent_s is None:
                        turn.complete_sent_s = sent_s
                    continue
                assert isinstance(item, bytes)
                frame = self.session.append_audio(item)
                await ws.send(frame)
                self.counters.appends_sent += 1
                self.counters.uplink_bytes += len(frame)
                self.latency.add("mic_to_wire", captured_at_s, self.clock())
            if self._control:
                self._wake.set()

    # --- housekeeping --------------------------------------------------------------------------------

    def _underruns(self) -> int:
        return int(self.playout.jitter.stats().underruns)

    def _end_turn(self, turn: TurnTimeline) -> None:
        if turn.chat_id is not None and self._by_chat.get(turn.chat_id) is turn:
            del self._by_chat[turn.chat_id]
        with contextlib.suppress(ValueError):
            self._ended.remove(turn)
        turn.first_sample_s = turn.first_sample_s or (
            self.playout.first_sample_at(turn.chat_id) if turn.chat_id else None
        )
        turn.underruns = max(0, self._underruns() - turn.underruns_at_start)
        self.counters.turns += 1
        self.latency.add("first_delta_to_first_sample", turn.first_delta_s, turn.first_sample_s)
        self.timelines.append(turn)
        self.log.info("turn", logid=self.session.last_logid, **turn.summary())
        if self.on_turn_summary is not None:
            self.on_turn_summary(turn)

    def tick(self) -> None:
        """Housekeeping, called a few times a second: log the summary of every reply that finished playing."""
        for turn in list(self._ended):
            chat_id = turn.chat_id
            if chat_id is None:
                continue
            if self.playout.speaking and self.playing_chat_id in (chat_id, None):
                continue
            turn.played_ms = self.playout.played_ms(chat_id)
            self._end_turn(turn)

    def healthy(self, now_s: float, stale_after_s: float) -> bool:
        """Mic frames flow (one within ``stale_after_s``); the watchdog is fed only then."""
        return self.last_mic_frame_s is not None and now_s - self.last_mic_frame_s < stale_after_s



def _error_outputs(calls: list[ToolCall], message: str) -> list[ToolOutput]:
    return [
        ToolOutput(tool_call_id=c.id, output=json.dumps({"error": message, "tool": c.function.name}))
        for c in calls
    ]


def pcm_scale(pcm: bytes, gain: float) -> bytes:
    """``pcm`` (s16le) multiplied by ``gain`` with saturation."""
    if gain >= 0.999:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) * gain
    scaled: bytes = np.clip(samples, -32768, 32767).astype(np.int16).tobytes()
    return scaled
