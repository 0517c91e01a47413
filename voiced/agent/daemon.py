"""Staying up: devices, reconnection with backoff, signals, config reload and systemd notification.

:class:`Daemon` opens the audio devices, builds the :class:`~voiced.agent.agent.Agent`, and runs four
owned tasks until told to stop: capture (mic → agent), playout (jitter buffer → speaker), the
connection loop (connect, serve, reconnect with exponential backoff and full jitter) and
housekeeping (turn summaries, systemd watchdog and status). A lost audio device is reopened with
backoff while the WebSocket stays up; a :class:`~voiced.errors.FatalError` ends the daemon
with its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.client import ClientConnection

from voiced.agent.agent import Agent
from voiced.agent.control import control_surface
from voiced.agent.notify import Notifier
from voiced.agent.status import DeviceState, Phase, StatusBoard
from voiced.agent.transport import open_connection
from voiced.audio.jitter import JitterBuffer
from voiced.config import VoicedConfig, load_config
from voiced.conversation.cues import CuePlayer
from voiced.conversation.playout import Playout
from voiced.conversation.settings import CueKind
from voiced.conversation.states import TurnState
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.base import (
    AudioSink,
    AudioSource,
    DeviceLost,
    DeviceNotFound,
    EndOfStream,
    off_loop,
)
from voiced.devices.memory import next_boundary_s
from voiced.devices.settings import DeviceSettings
from voiced.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    FatalError,
    TransientError,
    VoicedError,
    close_code_error,
    unwrap,
)
from voiced.log import WarningLimiter, get_logger, register_secret
from voiced.log import configure as configure_logging
from voiced.plugins import PluginRegistry, PluginSettings, ToolRunner

if TYPE_CHECKING:
    from voiced.agent.control import DaemonControl

SourceFactory = Callable[[], Awaitable[AudioSource]]
SinkFactory = Callable[[int], Awaitable[AudioSink]]

#: How long a graceful stop may take before the daemon gives up on closing politely.
SHUTDOWN_DEADLINE_S = 5.0
#: Mic frames older than this mean the capture path is stuck: the watchdog is not fed.
MIC_STALE_S = 3.0
#: Stopping a sound device must finish within this.
DEVICE_DEADLINE_S = 10.0
#: Devices that ran this long since their last reopen reset the reopen backoff.
DEVICE_STABLE_S = 10.0
# The grid housekeeping wakes on: the period of the audio devices' blocks.
_TICK_S = 0.02


class Backoff:
    """Exponential backoff with jitter: the n-th wait is uniform in [base/4, min(cap, base·2ⁿ)].

    Full jitter spreads a fleet's reconnects; the small floor keeps one device from spinning.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay_s(self) -> float:
        """The wait before the next attempt; each call doubles the ceiling up to ``max_s``."""
        ceiling = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(self.initial_s / 4, ceiling)

    def reset(self) -> None:
        """Start over from ``initial_s`` (after a connection stayed up long enough)."""
        self.attempt = 0


def build_runner(settings: PluginSettings, agent: Agent | None) -> ToolRunner:
    """The plugin runner for ``settings``; the agent provides the volume control."""
    registry = PluginRegistry.load(settings)
    return ToolRunner(registry, settings, volume=agent)


class Daemon:
    """The long-running voiced process. Build it, then ``exit_code = await daemon.run()``.

    ``source_factory`` / ``sink_factory`` open the devices (they are called again to reopen a lost
    device); the sink factory gets the playback rate in Hz. ``rescan_devices`` (PortAudio's
    re-initialisation) runs in a worker thread before every (re)open, with no stream open.
    ``config_path`` is re-read on SIGHUP. :attr:`status` is the device's one state.
    """

    def __init__(
        self,
        config: VoicedConfig,
        source_factory: SourceFactory,
        sink_factory: SinkFactory,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        install_signal_handlers: bool = True,
        on_turn: Callable[[TurnTimeline], None] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        rescan_devices: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cue_player: CuePlayer | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.source_factory = source_factory
        self.sink_factory = sink_factory
        self.notifier = notifier if notifier is not None else Notifier()
        self.install_signal_handlers = install_signal_handlers
        self.on_turn = on_turn
        self.rescan_devices = rescan_devices
        self.config_overrides = dict(config_overrides or {})
        self.clock = clock
        self.cue_player = cue_player
        self.log = get_logger("daemon")
        self.status = StatusBoard()
        self.status.subscribe(self._publish_status)
        self.agent: Agent | None = None
        self.source: AudioSource | None = None
        self.sink: AudioSink | None = None
        self.playout: Playout | None = None
        self.ws: ClientConnection | None = None
        self.connections_opened = 0
        self.device_reopens = 0
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._overdue: asyncio.TimerHandle | None = None
        self._sigint_count = 0
        self._last_connection_activity_s = clock()
        self._offline_cue_played = False
        # --- the control API's view (voiced.agent.control); observers must return at once ---
        #: ``(up, attempt, retry_in_s)`` when the server connection comes up or goes down.
        self.on_connection: Callable[[bool, int, float | None], None] | None = None
        #: ``(direction, present, detail)`` when the microphone ("input") or speaker is lost or back.
        self.on_device: Callable[[str, bool, str], None] | None = None
        #: Builds device factories for other ``[audio.devices]`` settings (:meth:`reopen_devices`);
        #: None when the devices cannot be switched (WAV files, test devices).
        self.device_factories_for: Callable[[DeviceSettings], tuple[SourceFactory, SinkFactory]] | None = None
        #: The control API, hooks and metrics while :meth:`run` runs (None when disabled).
        self.control: DaemonControl | None = None
        self._reopen = asyncio.Event()

    # --- control ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and the first SIGINT do).

        When the daemon owns the process (signal handlers installed), a shutdown that takes longer
        than SHUTDOWN_DEADLINE_S ends the process anyway: systemd must never wait on a hung close.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        if self.install_signal_handlers:
            self._overdue = asyncio.get_running_loop().call_later(SHUTDOWN_DEADLINE_S, self._shutdown_overdue)

    def _shutdown_overdue(self) -> None:
        self.log.error(f"shutdown took longer than {SHUTDOWN_DEADLINE_S:.0f} s; exiting now")
        os._exit(EXIT_FAILURE)

    def _on_sigint(self) -> None:
        self._sigint_count += 1
        if self._sigint_count > 1:
            self.log.warning("second interrupt: exiting now")
            os._exit(EXIT_INTERRUPTED)
        self.log.info("interrupt: shutting down (press Ctrl-C again to force)")
        self.request_stop()

    def push_to_talk(self, pressed: bool) -> None:
        """Press (True) or release (False) the talk button (SIGUSR1 / SIGUSR2, the control API)."""
        if self.agent is not None:
            self.agent.push_to_talk(pressed)

    def set_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone."""
        if self.agent is not None:
            self.agent.set_muted(muted)
        self.status.update(muted=muted)

    def reopen_devices(self, devices: DeviceSettings) -> None:
        """Close both audio devices and open them again with ``devices`` (the socket stays up).

        Raises :class:`ValueError` with one line when this daemon's devices cannot be switched
        (WAV files, or devices before they were first opened). The new devices must exist: a
        missing one is waited for, as at start.
        """
        if self.device_factories_for is None:
            raise ValueError("these audio devices are fixed (WAV files or test devices): restart to switch")
        if self.agent is None:
            raise ValueError("the audio devices are not open yet: try again once the device is running")
        self.source_factory, self.sink_factory = self.device_factories_for(devices)
        audio = self.config.audio.model_copy(update={"devices": devices})
        self.config = self.config.model_copy(update={"audio": audio})
        self._reopen.set()

    def reload(self) -> None:
        """Re-read the config file (SIGHUP). An invalid file is reported and the old config kept.

        Command-line overrides still apply. Session settings are sent to the server at once; turn
        detection, listening, volume and plugins change in place; codecs, rates, devices and the
        mic-path stages need a restart.
        """
        if self.config_path is None:
            self.log.info("reload requested but voiced runs without a config file; nothing to do")
            return
        warnings: list[str] = []
        try:
            new = load_config(self.config_path, overrides=self.config_overrides, warn=warnings)
            old = self.config
            kept = _restart_only_changes(old, new)
            if kept:
                self.log.warning(
                    "these settings change on restart only; keeping the running values", keys=kept
                )
                new = _keep_restart_only(old, new)
            new.session_config()
        except ConfigError as exc:
            self.log.error("config reload failed; keeping the running config", error=str(exc))
            return
        for line in warnings:
            self.log.warning(line)
        if new.coze.token is None:
            new.coze.token = old.coze.token
        if new.coze.token is not None:
            register_secret(new.coze.token.get_secret_value())
        # Everything is built: apply.
        self.config = new
        configure_logging(new.log.level, new.log.format)
        agent = self.agent
        if agent is not None:
            if new.plugins != old.plugins:
                agent.runner = build_runner(new.plugins, agent)
            agent.reconfigure(new)
        self.log.info("config reloaded", path=str(self.config_path))

    # --- run ----------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped or a fatal error; returns the process exit code.

        The control API, the hooks and the metrics (``[control]``, ``[hooks]``) run as long as this.
        """
        async with control_surface(self) as self.control:
            return await self._run()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.install_signal_handlers:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            loop.add_signal_handler(signal.SIGUSR1, self.push_to_talk, True)
            loop.add_signal_handler(signal.SIGUSR2, self.push_to_talk, False)
        try:
            if not await self._until_stopped(self._open_devices()):
                return EXIT_OK
            return await self._run_tasks()
        except (VoicedError, BaseExceptionGroup) as raised:
            # The one place where groups are unwrapped: whatever task raised it, and on any Python.
            error = unwrap(raised)
            if not isinstance(error, VoicedError):
                raise
            self.status.update(phase=Phase.FAILED, detail=str(error))
            self.log.error(str(error), exit_code=error.exit_code)
            await self._last_cue("fatal")
            return error.exit_code
        finally:
            if self.status.phase is not Phase.FAILED:
                self.status.update(phase=Phase.STOPPING)
            self.notifier.stopping()
            await self._close_devices()
            if self._overdue is not None:
                self._overdue.cancel()
            if self.install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                    loop.remove_signal_handler(sig)

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` unless a stop comes first (then cancel it); True when it finished.

        The work never outlives this call, and this call's own cancellation propagates.
        """
        job = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not job.done():
                job.cancel()
                # wait() does not raise the job's CancelledError, so ours (if any) still propagates.
                await asyncio.wait({job})
        if job.cancelled():
            return False
        job.result()
        return True

    async def _last_cue(self, kind: CueKind) -> None:
        """Play ``kind`` to its end on a pump of its own (the device's last word before it exits)."""
        playout, cues = self.playout, self.cue_player
        if playout is None or cues is None:
            return
        duration_s = cues.play(kind)
        if duration_s <= 0:
            return
        pump = asyncio.create_task(playout.run(), name="last-cue")
        try:
            await asyncio.wait({pump}, timeout=min(duration_s + 0.2, 3.0))
        finally:
            pump.cancel()
            await asyncio.wait({pump})

    def _offline_cue(self) -> None:
        """Say once per outage that the device is offline."""
        if self._offline_cue_played or self.cue_player is None:
            return
        self._offline_cue_played = True
        self.cue_player.play("offline")

    async def _open_devices(self) -> None:
        self.source, self.sink = await self._open_pair()
        jitter = JitterBuffer(self.config.session.output_rate_hz, self.config.audio.jitter)
        self.playout = Playout(self.sink, jitter, clock=self.clock)
        if self.cue_player is None:
            self.cue_player = CuePlayer(
                self.config.listen, self.config.session.output_rate_hz, clock=self.clock
            )
        self.cue_player.output = self.playout
        agent = Agent(self.config, self.playout, clock=self.clock, cue_player=self.cue_player)
        agent.runner = build_runner(self.config.plugins, agent)
        agent.on_ready = self._on_ready
        agent.on_turn_summary = self.on_turn
        agent.on_state = self._on_turn_state
        self.agent = agent
        self._attach_taps()

    def _attach_taps(self) -> None:
        if self.agent is not None and self.sink is not None:
            taps = self.agent.playback_taps
            self.sink.tap = taps[0] if taps else None

    async def _open_pair(self) -> tuple[AudioSource, AudioSink]:
        """Open microphone and speaker, retrying with backoff while either is missing.

        A missing or lost device is waited for (a USB microphone may be plugged in later); a setting
        that can never work (PortAudio absent, an unsupported rate) propagates as a DeviceError.
        """
        backoff = Backoff(self.config.reconnect.device_retry_s, 30.0)
        self.status.update(phase=Phase.WAITING_FOR_DEVICES, detail="opening audio devices")
        while True:
            if self.rescan_devices is not None:
                # PortAudio sees new devices only after a re-scan, which needs every stream closed.
                # It can hang with a sick sound server: off the loop, under a deadline.
                await off_loop(self.rescan_devices, "re-scanning the sound devices")
            source: AudioSource | None = None
            what = "microphone"
            try:
                source = await self.source_factory()
                what = "speaker"
                sink = await self.sink_factory(self.config.session.output_rate_hz)
                return source, sink
            except (DeviceLost, DeviceNotFound) as exc:
                if source is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(source.stop(), DEVICE_DEADLINE_S)
                delay = backoff.next_delay_s()
                self.log.warning(f"{what} unavailable; retrying", error=str(exc), retry_in_s=round(delay, 2))
                self.status.update(detail=f"waiting for the {what}")
                await asyncio.sleep(delay)

    async def _close_devices(self) -> None:
        for device in (self.source, self.sink):
            if device is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(device.stop(), timeout=DEVICE_DEADLINE_S)

    async def _run_tasks(self) -> int:
        async def stopper() -> None:
            await self._stop.wait()
            raise _StopRequestedError

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._devices(), name="devices")
                group.create_task(self._connections(), name="connections")
                group.create_task(self._housekeeping(), name="housekeeping")
                group.create_task(stopper(), name="stopper")
        except BaseExceptionGroup as group_error:
            if not isinstance(unwrap(group_error), _StopRequestedError):
                raise
            self.log.info("stopped")
        return EXIT_OK

    async def _devices(self) -> None:
        """Capture and playout; when either device is lost, both are reopened while the socket stays up.

        Devices that fail again soon after a reopen are reopened with growing backoff, never in a
        hot loop.
        """
        backoff = Backoff(self.config.reconnect.device_retry_s, 30.0)
        while True:
            started_s = self.clock()
            lost: str | None = None
            try:
                async with asyncio.TaskGroup() as group:
                    capture = group.create_task(self._capture(), name="capture")
                    group.create_task(self._playout(), name="playout")
                    group.create_task(self._reopen_requested(), name="reopen")
                return
            except BaseExceptionGroup as failed:
                error = unwrap(failed)
                if not isinstance(error, Exception):
                    raise
                if not isinstance(error, _ReopenRequestedError):
                    failed_capture = capture.done() and not capture.cancelled() and capture.exception()
                    lost = "input" if failed_capture else "output"
                    if self.on_device is not None:
                        self.on_device(lost, False, str(error)[:200])
                if isinstance(error, _ReopenRequestedError):
                    self.log.info("switching audio devices", devices=self.config.audio.devices.model_dump())
                elif isinstance(error, DeviceLost):
                    self.log.warning("audio device lost; reopening", error=str(error))
                else:
                    # Not a known device fault: a bug or a driver surprise. Reopen, but not in a hot loop.
                    self.log.error(
                        "audio path failed; reopening the devices", error=repr(error), exc_info=failed
                    )
            if self.clock() - started_s >= DEVICE_STABLE_S:
                backoff.reset()
            delay = backoff.next_delay_s() if lost is not None else 0.0
            self.status.update(phase=Phase.WAITING_FOR_DEVICES, detail="reopening audio devices")
            await self._close_devices()
            await asyncio.sleep(delay)
            self.source, self.sink = await self._open_pair()
            self.device_reopens += 1
            assert self.playout is not None and self.agent is not None
            # A fresh pump over the same jitter buffer: a reply goes on where it was.
            self.playout = Playout(self.sink, self.playout.jitter, clock=self.clock)
            self.agent.devices_reopened(self.playout)
            if self.cue_player is not None:
                self.cue_player.output = self.playout
            self._attach_taps()
            self.status.update(phase=Phase.RUNNING if self.agent.connected else Phase.CONNECTING)
            self.log.info("audio devices reopened", after_s=round(delay, 2))
            if lost is not None and self.on_device is not None:
                self.on_device(lost, True, "")

    async def _reopen_requested(self) -> None:
        await self._reopen.wait()
        self._reopen.clear()
        raise _ReopenRequestedError

    async def _capture(self) -> None:
        assert self.agent is not None and self.source is not None
        source = self.source
        agent = self.agent
        while True:
            # While nothing waits for the microphone it is read a few frames per wake-up; the moment
            # something does (a turn, a reply, streaming) every frame is acted on as it arrives.
            batch = self.config.audio.devices.idle_read_frames
            count = batch if batch > 1 and agent.mic_idle else 1
            try:
                frames = await source.read_frames(count)
            except EndOfStream:
                self.log.info("audio input ended; listening stops, replies still play")
                await self._stop.wait()
                return
            for frame in frames:
                try:
                    agent.on_mic_frame(frame)
                except Exception:
                    # One bad frame must not stop listening.
                    agent.counters.internal_errors += 1
                    self.log.exception("internal error on a microphone frame; continuing")

    async def _playout(self) -> None:
        assert self.playout is not None
        await self.playout.run()

    async def _connections(self) -> None:
        agent = self.agent
        assert agent is not None
        backoff = Backoff(self.config.reconnect.initial_backoff_s, self.config.reconnect.max_backoff_s)
        while True:
            self._last_connection_activity_s = self.clock()
            self.status.update(phase=Phase.CONNECTING, detail="")
            try:
                ws = await open_connection(self.config.coze)
            except TransientError as exc:
                delay = max(backoff.next_delay_s(), exc.retry_after_s or 0.0)
                self.log.warning("cannot connect; retrying", error=str(exc), retry_in_s=round(delay, 2))
                self._offline_cue()
                if self.on_connection is not None:
                    self.on_connection(False, backoff.attempt, delay)
                self.status.update(phase=Phase.OFFLINE, detail=f"retrying in {delay:.0f} s")
                await asyncio.sleep(delay)
                continue
            self.connections_opened += 1
            opened_s = self.clock()
            self.ws = ws
            try:
                await agent.serve_connection(ws)
            except (Exception, BaseExceptionGroup) as raised:
                error = unwrap(raised)
                if isinstance(error, FatalError) or not isinstance(error, Exception):
                    raise
                # A bug must cost one connection, not the daemon: reconnect.
                self.log.error(
                    "internal error on the connection; reconnecting", error=repr(error), exc_info=raised
                )
            finally:
                self.ws = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), timeout=self.config.coze.close_timeout_s)
            fatal = close_code_error(ws.close_code, ws.close_reason or "")
            if fatal is not None:
                raise fatal
            up_s = self.clock() - opened_s
            if up_s >= self.config.reconnect.stable_after_s:
                backoff.reset()
            delay = max(backoff.next_delay_s(), agent.retry_after_s or 0.0)
            # When this side gave up (a frame over coze.max_frame_bytes: 1009), close_code says only
            # 1006; what we sent is the reason.
            sent = ws.protocol.close_sent
            self.log.warning(
                "connection lost; reconnecting",
                up_s=round(up_s, 1),
                close_code=ws.close_code,
                close_reason=ws.close_reason or None,
                sent_close_code=sent.code if sent is not None else None,
                sent_close_reason=(sent.reason or None) if sent is not None else None,
                retry_in_s=round(delay, 2),
            )
            if self.on_connection is not None:
                self.on_connection(False, backoff.attempt, delay)
            self.status.update(phase=Phase.OFFLINE, detail=f"reconnecting in {delay:.0f} s")
            if up_s < self.config.reconnect.stable_after_s or agent.retry_after_s is not None:
                # A quick drop is an outage; a long-lived connection that ends is routine.
                self._offline_cue()
            self._last_connection_activity_s = self.clock()
            await asyncio.sleep(delay)

    def _on_ready(self) -> None:
        self._offline_cue_played = False
        agent = self.agent
        if self.on_connection is not None:
            self.on_connection(True, 0, None)
        self.status.update(phase=Phase.RUNNING, turn=agent.state if agent is not None else None, detail="")
        if not self.ready.is_set():
            self.ready.set()
            self.notifier.ready(self.status.text())
            self.log.info(f"ready: {self.status.state.value}")

    def _on_turn_state(self, old: TurnState, new: TurnState) -> None:
        self.status.update(turn=new)

    def _publish_status(self, state: DeviceState, detail: str) -> None:
        self.notifier.status(self.status.text())

    def connection_healthy(self, now_s: float) -> bool:
        """Connected, or the reconnect loop visibly making progress (so the watchdog catches a hang)."""
        if self.agent is not None and self.agent.connected:
            return True
        budget_s = self.config.reconnect.max_backoff_s + self.config.coze.open_timeout_s + 5.0
        return now_s - self._last_connection_activity_s < budget_s

    async def _housekeeping(self) -> None:
        agent = self.agent
        assert agent is not None
        interval_s = min(0.25, self.notifier.watchdog_interval_s() or 0.25)
        overflows_seen = 0
        overflow_lines = WarningLimiter[Literal["overflow"]](period_s=10.0, burst=3, clock=self.clock)
        loop = asyncio.get_running_loop()
        while True:
            # On a 20 ms boundary, at most `interval_s` away: the wake-up the audio devices (paced on
            # the same boundaries) make anyway, not one of its own.
            now_s = loop.time()
            await asyncio.sleep(next_boundary_s(now_s + interval_s - _TICK_S, _TICK_S) - now_s)
            agent = self.agent
            assert agent is not None
            try:
                agent.tick()
            except FatalError:
                raise
            except Exception:
                self.log.exception("internal error in housekeeping; continuing")
            jitter = self.playout.jitter.stats() if self.playout is not None else None
            if jitter is not None and jitter.overflows > overflows_seen:
                # Counted by the jitter buffer; said in the log too, at most a few lines per window.
                overflows_seen = jitter.overflows
                folded = overflow_lines.allow("overflow")
                if folded is not None:
                    self.log.warning(
                        "reply audio arrived faster than it plays: the oldest was dropped",
                        overflows=jitter.overflows,
                        dropped_ms=round(jitter.dropped_ms),
                        lines_suppressed=folded,
                    )
            now = self.clock()
            if agent.healthy(now, MIC_STALE_S) and self.connection_healthy(now):
                self.notifier.watchdog()


class _StopRequestedError(Exception):
    """Raised inside the task group to stop every task."""


class _ReopenRequestedError(Exception):
    """Raised inside the devices' task group to reopen them with new settings."""


#: Settings that shape open streams and codecs: a reload keeps the running values.
_RESTART_ONLY = (
    ("session", "input_codec"),
    ("session", "output_codec"),
    ("session", "output_sample_rate_hz"),
    ("session", "output_opus_frame_ms"),
    ("audio", "devices"),
    ("audio", "opus"),
    ("audio", "jitter"),
    ("coze", "base_url"),
    ("coze", "bot_id"),
)


def _restart_only_changes(old: VoicedConfig, new: VoicedConfig) -> list[str]:
    return [
        f"{section}.{key}"
        for section, key in _RESTART_ONLY
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)
    ]


def _keep_restart_only(old: VoicedConfig, new: VoicedConfig) -> VoicedConfig:
    updated = new.model_copy(deep=True)
    for section, key in _RESTART_ONLY:
        setattr(getattr(updated, section), key, getattr(getattr(old, section), key))
    return updated
