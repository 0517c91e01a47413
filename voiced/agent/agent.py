"""The asyncio shell around the conversation core: it executes the core's actions and owns the tasks.

:class:`Agent` holds the :class:`~voiced.conversation.core.Conversation` (every decision), the
codecs, the uplink queue, the playout pump's handle and the plugin runner. The daemon feeds it
microphone frames (:meth:`Agent.on_mic_frame`), button presses and ticks, and runs
:meth:`Agent.serve_connection` on each WebSocket it opens. Everything runs on one asyncio loop;
nothing here blocks, and every send has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voiced.audio.codec import Decoder, PacketEncoder, PcmDecoder, make_decoder, make_packet_encoder
from voiced.audio.frames import FRAME_MS, MIC_FRAME_BYTES, MIC_RATE_HZ
from voiced.config import VoicedConfig
from voiced.conversation.core import (
    Action,
    CancelTools,
    Conversation,
    Counters,
    EndTurn,
    Flush,
    Play,
    Playback,
    PlayCue,
    PlayoutComplete,
    Reconnect,
    SendAudio,
    SendControl,
    StartTools,
    StateChanged,
    Stop,
    TurnEnded,
    error_outputs,
)
from voiced.conversation.cues import CuePlayer, is_cue_id
from voiced.conversation.notices import Notice, NoticeKind, NoticeLimiter
from voiced.conversation.playout import Playout
from voiced.conversation.settings import CueKind
from voiced.conversation.states import TurnState
from voiced.conversation.timeline import LatencyStats, TurnTimeline
from voiced.conversation.uplink import AudioItem, EndOfTurnItem, UplinkQueue
from voiced.devices.base import MicFrame, PlaybackTap
from voiced.errors import FatalError
from voiced.log import get_logger
from voiced.mic.stages import MicPath
from voiced.mic.turn import TurnDetectorStage
from voiced.plugins import CallResult, ToolRunner
from voiced.protocol.models import ToolCall
from voiced.protocol.session import ClientSession, ReceiveResult, SessionStateError

#: Control frames waiting for the socket (chat.update, cancel, tool outputs): far more than a
#: conversation produces while a socket stalls; past it the newest is refused and counted.
MAX_CONTROL_FRAMES = 64
#: Chats whose underrun count at first audio is remembered for their turn summary.
_MAX_UNDERRUN_MARKS = 64
#: What the speaker does while no reply plays.
_SILENT = Playback()


def mic_stage_names(config: VoicedConfig) -> list[str]:
    """The configured stages in front of the turn detector, in the order they run."""
    names: list[str] = []
    echo = getattr(config.audio, "echo", None)
    if echo is not None and getattr(echo, "mode", "off") == "webrtc":
        names.append("echo_cancel")
    if echo is not None and getattr(echo, "noise_suppression", False):
        names.append("noise_suppression")
    names.extend(config.audio.stages)
    if config.listen.mode == "wake_word":
        names.append("wake_word")
    return names


class Agent:
    """One device's conversation with a Coze bot, across any number of connections.

    Create it with an open playout (its sink open), then: call :meth:`on_mic_frame` for every mic
    frame, keep the playout running, call :meth:`tick` a few times a second, and run
    :meth:`serve_connection` on every new WebSocket. Observe it through :attr:`state`,
    :attr:`counters`, :attr:`latency`, :attr:`timelines` and the ``on_*`` callbacks.
    """

    def __init__(
        self,
        config: VoicedConfig,
        playout: Playout,
        runner: ToolRunner | None = None,
        clock: Callable[[], float] = time.monotonic,
        cue_player: CuePlayer | None = None,
    ) -> None:
        self.config = config
        self.playout = playout
        self.runner = runner
        self.clock = clock
        self.cue_player = cue_player
        self.log = get_logger("agent")
        self.session = ClientSession(config.session_config(), max_frame_bytes=config.coze.max_frame_bytes)
        self.counters = Counters()
        self.latency = LatencyStats()
        self.mic_path = MicPath.from_config(config, mic_stage_names(config))
        self.conversation = Conversation(
            config,
            self.session,
            self.mic_path,
            TurnDetectorStage(config.audio.vad),
            counters=self.counters,
            latency=self.latency,
        )
        self.encoder: PacketEncoder = make_packet_encoder(
            config.session.input_codec, MIC_RATE_HZ, FRAME_MS, config.audio.opus
        )
        self.decoder: Decoder = make_decoder(config.session.output_codec, config.session.output_rate_hz)
        self.timelines: deque[TurnTimeline] = deque(maxlen=50)
        self.on_turn_summary: Callable[[TurnTimeline], None] | None = None
        self.on_ready: Callable[[], None] | None = None
        self.on_state: Callable[[TurnState, TurnState], None] | None = None
        # Observers for the control API and metrics: called inline, they must return at once.
        #: Every frame's session results, before the core acts on them (transcripts, reply text).
        self.on_received: Callable[[list[ReceiveResult]], None] | None = None
        #: Every action of the core, after it was carried out (turn summaries, interrupts, tools).
        self.on_action: Callable[[Action], None] | None = None
        #: A chat's tool calls answered by the plugin host, with their success flags.
        self.on_tool_results: Callable[[str, list[CallResult]], None] | None = None
        self.volume_pct = config.agent.volume_pct
        self.last_mic_frame_s: float | None = None
        #: After the server asked to reconnect: do not open a new connection before this.
        self.retry_after_s: float | None = None
        self._limiter = NoticeLimiter()
        self._uplink = UplinkQueue(max(5, config.agent.uplink_queue_ms // FRAME_MS))
        self._control: deque[str] = deque()
        self._wake = asyncio.Event()
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._ws: ClientConnection | None = None
        self._connected = False
        self._decoding_chat_id: str | None = None
        self._underruns_at_first_audio: dict[str, int] = {}

    # --- observation --------------------------------------------------------------------------------

    @property
    def state(self) -> TurnState:
        """The conversation's turn state."""
        return self.conversation.state

    @property
    def connected(self) -> bool:
        """True while a socket is open and configured (``chat.updated`` seen)."""
        return self._connected and self.session.ready

    @property
    def playing_chat_id(self) -> str | None:
        """The chat whose audio is playing (or about to), if any."""
        return self.playout.jitter.playing_chat_id

    @property
    def playback_taps(self) -> list[PlaybackTap]:
        """Stages that must see what the speaker plays (an echo canceller): attach to every sink."""
        return [
            tap for stage in self.mic_path.stages if (tap := getattr(stage, "playback_tap", None)) is not None
        ]

    def playback(self) -> Playback:
        """What the speaker does now, for the core."""
        playout = self.playout
        chat_id = playout.jitter.playing_chat_id
        if is_cue_id(chat_id):
            # A feedback sound is not a reply: nothing to interrupt (the mic is muted while it plays).
            return _SILENT
        if not playout.speaking:
            # Most frames: nothing plays. One shared (frozen) value instead of one per frame.
            return _SILENT if chat_id is None else Playback(False, None, chat_id)
        return Playback(True, playout.level_dbfs, chat_id)

    @property
    def mic_idle(self) -> bool:
        """Nothing waits for the next mic frame (see `Conversation.mic_idle`) and nothing plays."""
        return self.conversation.mic_idle and not self.playout.speaking

    def healthy(self, now_s: float, stale_after_s: float) -> bool:
        """Mic frames flow (one within ``stale_after_s``); the watchdog is fed only then."""
        return self.last_mic_frame_s is not None and now_s - self.last_mic_frame_s < stale_after_s

    # --- the volume (the set_volume / get_volume plugins) ------------------------------------------

    def get_volume_pct(self) -> int:
        """voiced's own playback volume, 0-100."""
        return self.volume_pct

    def set_volume_pct(self, volume_pct: int) -> int:
        """Set the playback volume (clamped to 0-100); applies from the next audio chunk received."""
        self.volume_pct = max(0, min(100, int(volume_pct)))
        self.log.info("volume set", volume_pct=self.volume_pct)
        return self.volume_pct

    # --- inputs -------------------------------------------------------------------------------------

    def on_mic_frame(self, frame: MicFrame) -> None:
        """One 20 ms 16 kHz frame from the microphone. Constant work; never blocks."""
        self.last_mic_frame_s = frame.captured_at_s
        actions = self.conversation.mic_frame(frame, self.playback(), self.clock())
        if actions:
            self._execute(actions)

    def push_to_talk(self, pressed: bool) -> None:
        """A press interrupts the reply and opens a turn that takes every mic frame; the release ends it."""
        now = self.clock()
        if pressed:
            self._execute(self.conversation.press(self.playback(), now))
        else:
            self._execute(self.conversation.release(now))

    def interrupt(self, reason: str, *, send_cancel: bool) -> None:
        """Stop the reply now: fade the output out, drop its audio, cancel its tool calls."""
        self._execute(
            self.conversation.interrupt(
                reason, send_cancel=send_cancel, playback=self.playback(), now_s=self.clock()
            )
        )

    def set_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone (nothing is analysed or sent while muted)."""
        self._execute(self.conversation.set_muted(muted, self.clock()))

    def send_text(self, text: str) -> None:
        """Ask the bot with a typed message (``conversation.message.create``). Raises SessionStateError."""
        self._queue_control(self.session.send_text(text))

    def announce(self, text: str) -> None:
        """Speak ``text`` without an LLM turn (``input_text.generate_audio``). Raises SessionStateError."""
        self._queue_control(self.session.generate_audio(text))

    def resend_config(self) -> None:
        """Send the session's (changed) config now, if connected; audio pauses until ``chat.updated``."""
        if self._connected:
            with contextlib.suppress(SessionStateError):
                self._queue_control(self.session.update())

    def reconfigure(self, config: VoicedConfig) -> None:
        """Apply a reloaded config: turn detection, listening, volume; the session config is resent."""
        old = self.config
        self.config = config
        self.conversation.config = config
        if config.audio.vad != old.audio.vad:
            self.conversation.detector = TurnDetectorStage(config.audio.vad)
        if config.agent.volume_pct != old.agent.volume_pct:
            self.set_volume_pct(config.agent.volume_pct)
        session_config = config.session_config()
        if session_config != self.session.config:
            self.session.config = session_config
            self.resend_config()

    def devices_reopened(self, playout: Playout) -> None:
        """New devices: a fresh pump over the same jitter buffer; stages start over on the new audio."""
        self.playout = playout
        self.mic_path.reset()
        self.conversation.detector.reset()

    def tick(self) -> None:
        """Housekeeping a few times a second: deadlines, replies played out, turn summaries."""
        self._execute(self.conversation.tick(self.playback(), self.clock()))

    # --- executing the core's actions ---------------------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SendAudio():
                    self._send_audio(action)
                case EndTurn():
                    if self._connected:
                        # The turn's last partial packet (40/60 ms Opus packets) goes before its end.
                        self._queue_packets(self.encoder.flush(), action.speech_end_s)
                        self._uplink.push_marker(EndOfTurnItem(action.speech_end_s, action.turn))
                        self._wake.set()
                case SendControl():
                    self._queue_control(action.frame, first=action.first)
                case Play():
                    self._play(action)
                case PlayoutComplete():
                    self.playout.complete(action.chat_id)
                case Flush():
                    played_ms = self.playout.interrupt(action.chat_id, action.fade_ms)
                    if action.turn is not None:
                        action.turn.played_ms = played_ms
                    self._wake.set()
                case StartTools():
                    self._start_tools(action.chat_id, action.calls)
                case CancelTools():
                    task = self._tool_tasks.pop(action.chat_id, None)
                    if task is not None and not task.done():
                        task.cancel()
                case StateChanged():
                    self._notice(
                        NoticeKind.STATE, "state", {"from": action.old.value, "to": action.new.value}
                    )
                    if self.on_state is not None:
                        self.on_state(action.old, action.new)
                case TurnEnded():
                    self._turn_ended(action.turn)
                case PlayCue():
                    self._play_cue(action.kind)
                case Notice():
                    self._notice(action.kind, action.message, action.fields)
                case Reconnect():
                    self._reconnect(action)
                case Stop():
                    raise action.error
            if self.on_action is not None:
                self.on_action(action)

    def _send_audio(self, action: SendAudio) -> None:
        if not self._connected:
            # Offline: a new connection starts from an empty input buffer anyway; save the CPU.
            return
        pcm = action.pcm
        for start in range(0, len(pcm) - MIC_FRAME_BYTES + 1, MIC_FRAME_BYTES):
            try:
                packets = self.encoder.push(pcm[start : start + MIC_FRAME_BYTES])
            except ValueError as exc:
                self._notice(
                    NoticeKind.INTERNAL_ERROR,
                    "encoder rejected a mic frame; dropping it",
                    {"error": str(exc)},
                )
                continue
            self._queue_packets(packets, action.captured_at_s, live=action.live)
        self._wake.set()

    def _queue_packets(self, packets: list[bytes], captured_at_s: float, *, live: bool = True) -> None:
        for payload in packets:
            if not self._uplink.push_audio(AudioItem(payload, captured_at_s, live)):
                self.counters.uplink_dropped_frames += 1
                self._notice(
                    NoticeKind.UPLINK_DROPPED,
                    "the socket is too slow: oldest microphone audio dropped",
                    {"dropped_frames": self.counters.uplink_dropped_frames},
                )

    def _queue_control(self, frame: str, *, first: bool = False) -> None:
        if len(self._control) >= MAX_CONTROL_FRAMES:
            self._notice(
                NoticeKind.INTERNAL_ERROR, "control queue full; frame refused", {"queued": len(self._control)}
            )
            return
        if first:
            self._control.appendleft(frame)
        else:
            self._control.append(frame)
        self._wake.set()

    def _play(self, action: Play) -> None:
        chat_id = action.chat_id
        if chat_id != self._decoding_chat_id:
            if isinstance(self.decoder, PcmDecoder):
                # A stray odd byte of the previous reply must not shift this one's samples.
                self.decoder.reset()
            self._decoding_chat_id = chat_id
            marks = self._underruns_at_first_audio
            if chat_id not in marks:
                marks[chat_id] = self._underruns()
                while len(marks) > _MAX_UNDERRUN_MARKS:
                    del marks[next(iter(marks))]
        errors = self.decoder.errors
        pcm = pcm_scale(self.decoder.decode(action.payload), self.volume_pct / 100.0)
        if self.decoder.errors > errors:
            # The decoder conceals a corrupt packet rather than fail; the problem must still be seen.
            self.counters.invalid_frames += 1
            self._notice(
                NoticeKind.INVALID_AUDIO,
                "corrupt audio delta concealed",
                {"chat_id": chat_id, "codec": self.decoder.codec},
            )
        if pcm:
            self.playout.push(chat_id, pcm, self.clock())

    def _play_cue(self, kind: CueKind) -> None:
        if self.cue_player is None:
            return
        duration_s = self.cue_player.play(kind)
        if duration_s > 0 and not self.config.listen.listen_during_cue:
            self.conversation.mute_mic_until(self.clock() + duration_s)

    def _turn_ended(self, turn: TurnTimeline) -> None:
        chat_id = turn.chat_id
        if chat_id is not None:
            if turn.first_sample_s is None:
                turn.first_sample_s = self.playout.first_sample_at(chat_id)
            if not turn.interrupted:
                turn.played_ms = self.playout.played_ms(chat_id)
            start = self._underruns_at_first_audio.pop(chat_id, None)
            turn.underruns = max(0, self._underruns() - start) if start is not None else 0
        self.latency.add("first_delta_to_first_sample", turn.first_delta_s, turn.first_sample_s)
        self.timelines.append(turn)
        self._notice(NoticeKind.TURN, "turn", {"logid": self.session.last_logid, **turn.summary()})
        if self.on_turn_summary is not None:
            self.on_turn_summary(turn)

    def _notice(self, kind: NoticeKind, message: str, fields: dict[str, object]) -> None:
        occurrences = self._limiter.admit(kind, self.clock())
        if occurrences is None:
            return
        if occurrences > 1:
            fields = {**fields, "occurrences": occurrences}
        getattr(self.log, kind.level)(message, **fields)

    def _reconnect(self, action: Reconnect) -> None:
        self.retry_after_s = action.retry_after_s
        self._notice(
            NoticeKind.SERVER_ERROR,
            "reconnecting",
            {"reason": action.reason, "retry_after_s": action.retry_after_s},
        )
        ws = self._ws
        if ws is not None and self._group is not None:
            self._group.create_task(ws.close(code=1000, reason="reconnecting"), name="close")

    # --- tools --------------------------------------------------------------------------------------

    def _start_tools(self, chat_id: str, calls: list[ToolCall]) -> None:
        group = self._group
        if group is None:
            return
        self._tool_tasks[chat_id] = group.create_task(
            self._run_tools(chat_id, calls), name=f"tools:{chat_id}"
        )

    async def _run_tools(self, chat_id: str, calls: list[ToolCall]) -> None:
        try:
            if self.runner is not None:
                results = await self.runner.run_detailed(chat_id, calls)
                outputs = [result.output for result in results]
                if self.on_tool_results is not None:
                    self.on_tool_results(chat_id, results)
            else:
                outputs = error_outputs(calls, "plugins are disabled on this device")
        except Exception:
            # The bot must get an answer even when the plugin host itself fails.
            self.log.exception("the plugin host failed; answering with errors", chat_id=chat_id)
            outputs = error_outputs(calls, "the device failed to run this tool")
        finally:
            self._tool_tasks.pop(chat_id, None)
        self._execute(self.conversation.tools_finished(chat_id, outputs, self.clock()))

    # --- the connection -----------------------------------------------------------------------------

    async def serve_connection(self, ws: ClientConnection) -> None:
        """Run one connection until it closes: downlink, uplink sender and tool calls.

        Returns when the socket closes (the caller reconnects, after :attr:`retry_after_s` if set);
        raises :class:`~voiced.errors.FatalError` when the server says retrying cannot help. The
        session is told about the loss before returning.
        """
        self._connected = True
        self._ws = ws
        self.retry_after_s = None
        self.encoder.reset()
        self._uplink.clear()
        self._control.clear()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                sender = group.create_task(self._sender(ws), name="uplink")
                deadline = group.create_task(self._config_deadline(ws), name="config-deadline")
                await self._downlink(ws)
                # The socket is gone: nothing of this connection may outlive it.
                sender.cancel()
                deadline.cancel()
                for task in list(self._tool_tasks.values()):
                    task.cancel()
        finally:
            self._group = None
            self._ws = None
            self._connected = False
            self._tool_tasks.clear()
            self._execute(self.conversation.connection_lost(self.clock()))

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

    async def _downlink(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                self.receive_frame(frame)

    def receive_frame(self, frame: str | bytes) -> None:
        """Handle one frame from the server, as the downlink does.

        Never raises but :class:`~voiced.errors.FatalError` (the server says retrying cannot help);
        a bug in handling one event is logged and survived.
        """
        was_ready = self.session.ready
        results = self.session.receive(frame)
        try:
            if self.on_received is not None:
                self.on_received(results)
            self._execute(self.conversation.received(results, self.playback(), self.clock()))
        except FatalError:
            raise
        except Exception:
            self.counters.internal_errors += 1
            self.log.exception(
                "internal error while handling a server event; continuing", logid=self.session.last_logid
            )
        if self.session.ready and not was_ready:
            self._wake.set()
            if self.on_ready is not None:
                self.on_ready()

    async def _sender(self, ws: ClientConnection) -> None:
        # A send on a socket that just died ends the sender quietly; the downlink sees the close.
        with contextlib.suppress(ConnectionClosed):
            await self._send_loop(ws)

    async def _send(self, ws: ClientConnection, frame: str) -> None:
        """Send with a deadline: a socket that cannot take a frame in time is closed and reopened."""
        if ws.transport.get_write_buffer_size() == 0:
            # Nothing waits in the socket's buffer: the frame goes straight to the kernel and the send
            # cannot block, so it needs no deadline. A timer per frame is most of a send's cost (it
            # also lingers in the loop's timer heap for send_timeout_s once cancelled).
            await ws.send(frame)
            return
        try:
            async with asyncio.timeout(self.config.agent.send_timeout_s):
                await ws.send(frame)
        except TimeoutError:
            self.log.warning(
                "the socket did not take a frame in time; reconnecting",
                timeout_s=self.config.agent.send_timeout_s,
            )
            ws.transport.abort()
            raise ConnectionClosed(None, None) from None

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._control:
                await self._send(ws, self._control.popleft())
            while self.session.ready and not self._control:
                item = self._uplink.pop()
                if item is None:
                    break
                if isinstance(item, EndOfTurnItem):
                    await self._send(ws, self.session.complete())
                    sent_s = self.clock()
                    self.latency.add("speech_end_to_complete", item.speech_end_s, sent_s)
                    if item.turn is not None and item.turn.complete_sent_s is None:
                        item.turn.complete_sent_s = sent_s
                    continue
                frame = self.session.append_audio(item.payload)
                await self._send(ws, frame)
                self.counters.appends_sent += 1
                self.counters.uplink_bytes += len(frame)
                if item.live:
                    self.latency.add("mic_to_wire", item.captured_at_s, self.clock())
            if self._control:
                self._wake.set()

    def _underruns(self) -> int:
        return int(self.playout.jitter.stats().underruns)


def pcm_scale(pcm: bytes, gain: float) -> bytes:
    """``pcm`` (s16le) multiplied by ``gain`` with saturation."""
    if gain >= 0.999:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) * gain
    scaled: bytes = np.clip(samples, -32768, 32767).astype(np.int16).tobytes()
    return scaled
