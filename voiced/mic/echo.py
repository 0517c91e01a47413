"""In-process acoustic echo cancellation: WebRTC AEC3 as the ``echo_cancel`` mic-path stage.

Two halves meet here:

- :class:`EchoReference` is the speaker's :class:`~voiced.devices.base.PlaybackTap`. On the device
  thread it only copies each block, with the time it will be heard, into a bounded ring. On the
  loop it resamples what was played to 16 kHz and keeps the last seconds of it on a timeline, so
  that the reference for a mic frame is exactly what the speaker played when the frame was
  captured (device clocks on both sides, plus ``audio.echo.delay_offset_ms``); AEC3 finds the
  acoustic rest.
- :class:`EchoCancelStage` runs every 20 ms frame through AEC3 as two 10 ms frames and marks the
  result ``echo_cancelled`` while it can vouch for it: the canceller has heard
  ``converge_s`` of the device's voice since the reference last jumped (a speaker underrun or
  restart, or the two clocks apart by more than tens of ms), it removes most of the echo (median
  over the device's recent voice), the reference covers the frame, and it keeps up.
  Otherwise the frame goes on as captured with ``echo_cancelled=False``, and the turn detector
  falls back to its level margin (or the core to half duplex): a fault never makes the device
  interrupt itself. Each kind of fault is logged once, then rate-limited.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from voiced.audio.frames import Int16Array
from voiced.audio.resample import StreamResampler
from voiced.log import get_logger
from voiced.mic.linear_echo import LinearEchoFilter
from voiced.mic.settings import EchoSettings
from voiced.mic.stages import StageFrame, register_stage

if TYPE_CHECKING:
    from voiced.config import VoicedConfig

log = get_logger("echo")

RATE_HZ = 16000
FRAME_SAMPLES = 320  # 20 ms at 16 kHz
AEC_BLOCK_SAMPLES = 160  # AEC3 works on 10 ms frames
#: Far-end blocks above this level count as the device talking (for convergence).
_ACTIVE_DBFS = -50.0
#: A block whose time disagrees with the running timeline by more than this starts a new stream
#: (the device restarted, ran dry or was reopened), not jitter.
_RESYNC_S = 0.05
#: The read position advances by the samples it hands out and follows the clocks only when their
#: average disagreement (smoothed by ``_ALIGN_GAIN`` per frame, about a second) exceeds this. Every
#: jump makes AEC3 and the linear filter re-find the delay (seconds of leaking echo), while a sound
#: server's capture timestamps wander and step by 10-25 ms under CPU load with no change in the
#: echo's real delay; AEC3 follows smaller changes and clock drift by itself.
_REALIGN_S = 0.06
_ALIGN_GAIN = 0.05
#: A single frame whose time disagrees by more than this is a real jump (mic frames lost, a device
#: restarted): realign at once.
_REALIGN_NOW_S = 0.12
#: How fast the timeline follows each block's timestamp (averages out callback jitter).
_TIMELINE_GAIN = 0.02
_LOG_INTERVAL_S = 30.0
#: How long what the speaker played can still be heard: the acoustic delay the device clocks do not
#: see plus the room's reverb (400 ms).
_ECHO_SPAN_FRAMES = 20
#: The noise floor follows quieter frames at once and louder ones by this much per frame (2.5 dB/s).
_FLOOR_RISE_DB = 0.05
#: The linear filter's residual says "the user talks" only once it removes this much of the echo
#: while the device talks alone (it needs a few seconds of the device's voice, AEC3 less).
_LINEAR_TRUST_DB = 8.0
#: ... and only when AEC3 let at least this much through (dB below the loudest reference): a frame
#: AEC3 silenced completely is echo its suppressor recognised, whatever the linear filter says.
_DUCKED_FLOOR_DB = 40.0
#: The canceller is trusted only while it actually removes the echo: the median of how much it
#: lowered the loud frames of the last 2 s of the device's voice must reach this. Seconds of a user
#: talking over the device do not move a 2 s median before barge-in (3 frames); a canceller that
#: lost the echo's delay (it removes 5-24 dB then, 35-40 dB when it works) does.
_TRUST_REDUCTION_DB = 25.0
_TRUST_WINDOW_FRAMES = 100
_TRUST_MIN_FRAMES = 10


class Canceller(Protocol):
    """What the stage needs of an echo canceller: ``process(near, far)`` on 10 ms int16 frames."""

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array: ...

    def reset(self) -> None: ...


def webrtc_canceller() -> Canceller:
    """A WebRTC AEC3 instance at 16 kHz mono (pywebrtc-audio)."""
    from pywebrtc_audio import EchoCanceller  # noqa: PLC0415  (a native library: load only when used)

    canceller: Canceller = EchoCanceller(sample_rate=RATE_HZ, num_channels=1, stream_delay_ms=0)
    return canceller


class EchoReference:
    """What the speaker played, on the mic's timeline: the far-end reference of the canceller.

    Give it to every sink as ``sink.tap``; the sink calls :meth:`played` from its device thread.
    On the loop, :meth:`take` returns the 16 kHz reference for one mic frame. ``keep_s`` bounds the
    history (the mic frame may be at most that much older than the newest block); ``slots`` bounds
    the blocks waiting between the device thread and the loop.
    """

    def __init__(
        self,
        *,
        delay_offset_s: float = 0.02,
        keep_s: float = 2.0,
        slots: int = 64,
        max_block_samples: int = 8192,
    ) -> None:
        self.delay_offset_s = delay_offset_s
        # Device-thread side: preallocated slots, a single producer and a single consumer; the
        # counters are plain ints whose assignment is atomic.
        self._slots = [np.zeros(max_block_samples, dtype=np.int16) for _ in range(slots)]
        self._meta: list[tuple[int, int, float]] = [(0, 0, 0.0)] * slots
        self._pushed = 0
        self._pulled = 0
        self.dropped_blocks = 0  # the loop did not collect in time (counted, never blocks)
        self.truncated_blocks = 0  # a block longer than a slot (never happens at 20 ms blocks)
        # Loop side: a 16 kHz timeline, absolute sample index -> loop time.
        self._keep = int(keep_s * RATE_HZ)
        self._ring = np.zeros(self._keep, dtype=np.int16)
        self._written = 0  # absolute index one past the newest reference sample
        self._base_s: float | None = None  # loop time of absolute index 0
        self._stream_rate_hz = 0
        self._stream_start = 0  # absolute index where the current continuous stream began
        self._stream_in = 0  # device-rate samples of the current stream so far
        self._resampler: StreamResampler | None = None
        self._read: int | None = None  # absolute index of the next mic sample's reference
        self._align_error = 0.0  # smoothed (clock-derived position - read position), samples
        self.last_block_at_s: float | None = None  # loop time when the newest block was collected
        self.resyncs = 0
        self.realignments = 0

    # -- device thread --------------------------------------------------------------------------
    def played(self, block: Int16Array, sample_rate_hz: int, output_time_s: float) -> None:
        """PlaybackTap: copy ``block`` (constant time, never blocks or raises)."""
        pushed = self._pushed
        if pushed - self._pulled >= len(self._slots):
            self.dropped_blocks += 1
            return
        slot = pushed % len(self._slots)
        buffer = self._slots[slot]
        n = min(int(block.size), buffer.size)
        if n < block.size:
            self.truncated_blocks += 1
        buffer[:n] = block[:n]
        self._meta[slot] = (n, sample_rate_hz, output_time_s)
        self._pushed = pushed + 1

    # -- loop -----------------------------------------------------------------------------------
    def collect(self, now_s: float) -> int:
        """Move the blocks the device thread copied onto the 16 kHz timeline; returns how many."""
        count = 0
        while self._pulled < self._pushed:
            slot = self._pulled % len(self._slots)
            n, rate_hz, at_s = self._meta[slot]
            self._append(self._slots[slot][:n], rate_hz, at_s)
            self._pulled += 1
            count += 1
        if count:
            self.last_block_at_s = now_s
        return count

    def _append(self, block: Int16Array, rate_hz: int, at_s: float) -> None:
        if rate_hz != self._stream_rate_hz or self._resampler is None or self._base_s is None:
            self._new_stream(rate_hz, at_s)
        assert self._base_s is not None and self._resampler is not None
        position = self._stream_start + self._stream_in * RATE_HZ / rate_hz
        error_s = at_s - (self._base_s + position / RATE_HZ)
        if abs(error_s) > _RESYNC_S:
            if error_s > 0:
                # The device went quiet (ran dry, restarted): what it played meanwhile was silence.
                self._write(np.zeros(min(round(error_s * RATE_HZ), self._keep), dtype=np.int16))
            self.resyncs += 1
            self._new_stream(rate_hz, at_s)
            # The timeline was rebuilt from the new stream's clock: read where it points now (the
            # stage starts over; AEC3 does not follow such a jump in the echo's delay by itself).
            self._read = None
        else:
            self._base_s += _TIMELINE_GAIN * error_s
        self._stream_in += int(block.size)
        self._write(self._resampler.process(block))

    def _new_stream(self, rate_hz: int, at_s: float) -> None:
        self._stream_rate_hz = rate_hz
        # Quick quality: steady output per block (HQ releases it in bursts, up to a block late, so the
        # reference for the newest mic frame would be missing on a low-latency speaker).
        self._resampler = StreamResampler(rate_hz, RATE_HZ, quality="QQ")
        self._stream_start = self._written
        self._stream_in = 0
        self._base_s = at_s - self._written / RATE_HZ

    def _write(self, samples: Int16Array) -> None:
        n = int(samples.size)
        if n > self._keep:
            self._written += n - self._keep
            samples, n = samples[-self._keep :], self._keep
        start = self._written % self._keep
        first = min(n, self._keep - start)
        self._ring[start : start + first] = samples[:first]
        self._ring[: n - first] = samples[first:]
        self._written += n

    def take(self, captured_at_s: float, n: int = FRAME_SAMPLES) -> Int16Array | None:
        """The ``n`` reference samples for the mic frame captured at ``captured_at_s``.

        None when the reference does not cover the frame (nothing played yet, or the speaker's
        blocks stopped coming): the caller must not claim the echo was cancelled.
        """
        if self._base_s is None:
            return None
        wanted = (captured_at_s - self.delay_offset_s - self._base_s) * RATE_HZ
        if self._read is None:
            self._read, self._align_error = round(wanted), 0.0
        else:
            error = wanted - self._read
            self._align_error += _ALIGN_GAIN * (error - self._align_error)
            if abs(error) > _REALIGN_NOW_S * RATE_HZ:
                self._read, self._align_error = round(wanted), 0.0
                self.realignments += 1
            elif abs(self._align_error) > _REALIGN_S * RATE_HZ:
                # To where the clocks point on average, not to this frame's jittered timestamp.
                self._read, self._align_error = self._read + round(self._align_error), 0.0
                self.realignments += 1
        start = self._read
        if start < 0 <= start + n <= self._written:
            # Before the speaker's first block: it was silent then.
            self._read = start + n
            return np.concatenate([np.zeros(-start, dtype=np.int16), self._ring[: start + n]])
        if start + n > self._written or start < self._written - self._keep or start < 0:
            return None
        self._read = start + n
        first = start % self._keep
        if first + n <= self._keep:
            return self._ring[first : first + n].copy()
        return np.concatenate([self._ring[first:], self._ring[: first + n - self._keep]])

    def reset(self) -> None:
        """Forget the timeline (the speaker was reopened); blocks already copied are dropped."""
        self._pulled = self._pushed
        self._written = 0
        self._base_s = None
        self._resampler = None
        self._stream_rate_hz = 0
        self._read = None
        self._align_error = 0.0
        self.last_block_at_s = None


def _level_dbfs(pcm: Int16Array | npt.NDArray[np.float64]) -> float:
    power = float(np.mean(pcm.astype(np.float64) ** 2)) if pcm.size else 0.0
    return 10.0 * np.log10(power / 32768.0**2) if power > 0 else -120.0


class EchoCancelStage:
    """The ``echo_cancel`` mic-path stage (see the module docstring).

    Attach :attr:`playback_tap` to every sink (``sink.tap = stage.playback_tap``) before it starts;
    feed every mic frame through :meth:`process`, in every state, so the canceller keeps converging.
    ``clock`` is the loop's clock (``time.monotonic``); ``canceller_factory`` builds the canceller.
    """

    name = "echo_cancel"

    def __init__(
        self,
        settings: EchoSettings,
        *,
        canceller_factory: Callable[[], Canceller] = webrtc_canceller,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.reference = EchoReference(delay_offset_s=settings.delay_offset_ms / 1000.0)
        self._factory = canceller_factory
        self._canceller = canceller_factory()
        self._clock = clock
        self._heard_s = 0.0  # far-end speech the canceller has adapted on since it last lost track
        self._bypass_until_s = 0.0
        self._slow_ms = 0.0  # smoothed processing time per frame
        self._last_logged_s: dict[str, float] = {}
        self._zeros = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self.frames = 0
        self.cancelled_frames = 0
        self.gated_frames = 0
        self._reference_dbfs: deque[float] = deque([-120.0], maxlen=_ECHO_SPAN_FRAMES)
        self._floor_dbfs = -60.0  # the quietest recent level of what the canceller let through
        self.faults: dict[str, int] = {}
        self.process_s = 0.0  # CPU time spent in the canceller
        self._linear = LinearEchoFilter() if settings.double_talk_margin_db > 0 else None
        self.double_talk_frames = 0  # frames let through because the linear residual heard the user
        self._jumps_seen = 0  # realignments + resyncs of the reference already acted on
        self._reduction_db: deque[float] = deque(maxlen=_TRUST_WINDOW_FRAMES)
        self.distrusted_frames = 0  # converged, but the canceller removed too little of the echo

    @property
    def playback_tap(self) -> EchoReference:
        """The PlaybackTap to set on every sink."""
        return self.reference

    @property
    def converged(self) -> bool:
        """Whether the canceller has heard enough of the device's voice to be trusted."""
        return self._heard_s >= self.settings.converge_s

    def _lose_track(self) -> None:
        self._heard_s = 0.0
        self._reduction_db.clear()

    @property
    def echo_reduction_db(self) -> float | None:
        """Median echo reduction of the canceller over the device's recent loud frames (None: too few)."""
        if len(self._reduction_db) < _TRUST_MIN_FRAMES:
            return None
        return float(np.median(np.fromiter(self._reduction_db, dtype=np.float64)))

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        """Cancel the echo in ``frame``; ``echo_cancelled`` says whether the result can be trusted."""
        self.frames += 1
        now_s = self._clock()
        self.reference.collect(now_s)
        if now_s < self._bypass_until_s:
            return frame
        far = self.reference.take(frame.captured_at_s)
        stalled = far is None or self._stalled(now_s)
        jumps = self.reference.realignments + self.reference.resyncs
        if jumps != self._jumps_seen:
            self._jumps_seen = jumps
            # A stalled reference has already fallen back (and said so): one log line, not two; and
            # before the device has talked (opening the devices) there was nothing to lose.
            self._lost_track(now_s, log_it=not stalled and self._heard_s > 0)
        if far is None:
            far = self._zeros  # keep the canceller's render and capture streams paired
        near = np.frombuffer(frame.pcm, dtype=np.int16)
        # CPU time of this thread: the canceller's own cost, not the time other processes held the CPU.
        started = time.thread_time()
        try:
            cleaned = np.concatenate(
                [
                    self._canceller.process(near[:AEC_BLOCK_SAMPLES], far[:AEC_BLOCK_SAMPLES]),
                    self._canceller.process(near[AEC_BLOCK_SAMPLES:], far[AEC_BLOCK_SAMPLES:]),
                ]
            ).astype(np.int16, copy=False)
            residual = (
                None
                if self._linear is None
                else self._linear.process(near.astype(np.float64), far.astype(np.float64))
            )
        except Exception as exc:  # a native library: any failure means "not cancelled", never a crash
            self._fault("failed", now_s, f"echo canceller failed ({type(exc).__name__}: {str(exc)[:120]})")
            self._bypass(now_s)
            return frame
        elapsed_ms = (time.thread_time() - started) * 1000.0
        self.process_s += elapsed_ms / 1000.0
        self._slow_ms += 0.1 * (elapsed_ms - self._slow_ms)
        if self._slow_ms > self.settings.max_process_ms:
            self._fault(
                "slow",
                now_s,
                f"echo canceller cannot keep up ({self._slow_ms:.1f} ms per 20 ms frame)",
            )
            self._bypass(now_s)
            return frame
        if stalled:
            if frame.playback_active:
                self._fault("stalled", now_s, "no playback reference while the device talks")
            # AEC3 heard the echo against a silent reference meanwhile: judge it afresh.
            self._lose_track()
            return frame
        far_dbfs = _level_dbfs(far)
        self._reference_dbfs.append(far_dbfs)
        cleaned_dbfs = _level_dbfs(cleaned)
        if far_dbfs > _ACTIVE_DBFS:
            self._heard_s += FRAME_SAMPLES / RATE_HZ
            near_dbfs = _level_dbfs(near)
            if near_dbfs > _ACTIVE_DBFS:
                self._reduction_db.append(near_dbfs - cleaned_dbfs)
        if not self.converged:
            return dataclasses.replace(frame, pcm=cleaned.tobytes())
        reduction_db = self.echo_reduction_db
        if reduction_db is not None and reduction_db < _TRUST_REDUCTION_DB:
            self.distrusted_frames += 1
            self._fault(
                "diverged",
                now_s,
                f"the echo canceller removes only {reduction_db:.0f} dB of the echo (lost its delay)",
            )
            return dataclasses.replace(frame, pcm=cleaned.tobytes())
        loudest_dbfs = max(self._reference_dbfs)
        user_talking = False
        if residual is not None and self._linear is not None:
            # AEC3's suppressor ducks the first syllables of a user talking over the device; the
            # linear residual keeps them, a dozen dB above the echo it leaves.
            user_talking = (
                self._linear.erle_db >= _LINEAR_TRUST_DB
                and _level_dbfs(residual) > loudest_dbfs - self.settings.double_talk_margin_db
                and cleaned_dbfs > loudest_dbfs - _DUCKED_FLOOR_DB
            )
            if not user_talking and far_dbfs > _ACTIVE_DBFS:
                self._linear.learn_erle(near.astype(np.float64), residual)
            self.double_talk_frames += user_talking
        # What could still be echo: the loudest reference of the echo's span, the gate's depth below.
        # Judged by the reference, not by how much the canceller took away: a user talking over the
        # device keeps a frame the canceller also lowered a lot (its suppressor ducks double talk).
        if cleaned_dbfs < loudest_dbfs - self.settings.residual_gate_db and not user_talking:
            # The canceller's residual and the room's reverb: tens of dB down but still speech to
            # webrtcvad, which does not look at levels. Bring it down to the room's noise floor (not
            # below: the turn detector measures speech against that floor).
            if cleaned_dbfs > self._floor_dbfs:
                gain = 10.0 ** ((self._floor_dbfs - cleaned_dbfs) / 20.0)
                cleaned = np.round(cleaned * gain).astype(np.int16)
            self.gated_frames += 1
        else:
            self._track_floor(cleaned_dbfs)
        self.cancelled_frames += 1
        return dataclasses.replace(frame, pcm=cleaned.tobytes(), echo_cancelled=True)

    def _lost_track(self, now_s: float, *, log_it: bool) -> None:
        # The reference moved under the canceller (the read position realigned, or the speaker's
        # stream jumped: an underrun, a restart): until it has found the echo's delay again its
        # residual leaks the device's voice (and the linear filter's taps point at the wrong delay),
        # so the frames are not vouched for (the core listens half duplex) until it has re-converged.
        self._lose_track()
        if self._linear is not None:
            self._linear.reset()
        if log_it:
            self._fault(
                "jumped",
                now_s,
                "the reference jumped (speaker underrun or restart, clocks apart): re-converging",
            )

    def _track_floor(self, level_dbfs: float) -> None:
        self._floor_dbfs = min(level_dbfs, self._floor_dbfs + _FLOOR_RISE_DB)

    def _stalled(self, now_s: float) -> bool:
        last = self.reference.last_block_at_s
        return last is None or now_s - last > self.settings.stall_ms / 1000.0

    def _bypass(self, now_s: float) -> None:
        # Stop spending CPU for a while, then start over with a fresh canceller.
        self._bypass_until_s = now_s + 5.0
        self._slow_ms = 0.0
        self._lose_track()
        self._canceller = self._factory()

    def _fault(self, kind: str, now_s: float, message: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1
        last = self._last_logged_s.get(kind)
        if last is not None and now_s - last < _LOG_INTERVAL_S:
            return
        self._last_logged_s[kind] = now_s
        log.warning(
            "echo_cancel_fallback",
            reason=kind,
            detail=message,
            occurrences=self.faults[kind],
            fallback="level margin / half duplex until the canceller recovers",
        )

    def reset(self) -> None:
        """Start over (the devices were reopened): new canceller, empty reference, not converged."""
        self.reference.reset()
        self._canceller.reset()
        self._lose_track()
        self._bypass_until_s = 0.0
        self._slow_ms = 0.0
        self._reference_dbfs.clear()
        self._reference_dbfs.append(-120.0)
        self._reduction_db.clear()
        if self._linear is not None:
            self._linear.reset()


@register_stage("echo_cancel")
def echo_cancel_stage(config: VoicedConfig) -> EchoCancelStage:
    """Factory for ``audio.echo.mode = "webrtc"``: the stage from ``config.audio.echo``."""
    return EchoCancelStage(config.audio.echo)


def _sound_server_default_source() -> str | None:
    """The sound server's default source name (``pactl get-default-source``), None if none answers."""
    try:
        done = subprocess.run(
            ["pactl", "get-default-source"], capture_output=True, text=True, timeout=2.0, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def echo_status(config: VoicedConfig) -> tuple[str, str]:
    """Which echo cancellation is in effect, for ``voiced check``.

    Returns ``(mode, detail)`` with mode ``"none"``, ``"in-process"`` or ``"sound server"``; the
    detail says what to do when something is missing.
    """
    settings = config.audio.echo
    devices = config.audio.devices
    if settings.mode == "webrtc":
        try:
            webrtc_canceller()
        except Exception as exc:  # the native library is missing or does not load on this machine
            return (
                "none",
                f"audio.echo.mode = webrtc but AEC3 does not load ({str(exc)[:120]}): reinstall voiced",
            )
        extra = " + noise suppression" if settings.noise_suppression else ""
        return "in-process", f"WebRTC AEC3{extra}, offset {settings.delay_offset_ms:g} ms"
    if settings.mode == "system":
        default_source = _sound_server_default_source()
        if default_source is None:
            return (
                "none",
                "audio.echo.mode = system but no sound server answers (pactl): start PipeWire or PulseAudio",
            )
        if "echo" not in default_source.lower() and not any(
            "echo" in str(d).lower() for d in (devices.input_device, devices.output_device) if d is not None
        ):
            return (
                "none",
                f"audio.echo.mode = system but the default source is {default_source[:80]!r}, not an "
                "echo-cancel source: follow README, Echo cancellation",
            )
        return "sound server", f"echo-cancel source {default_source[:80]!r}"
    barge = "half duplex" if config.agent.half_duplex else "level-margin barge-in"
    return "none", f"audio.echo.mode = off: {barge}; set mode = webrtc on a speaker that hears itself"
