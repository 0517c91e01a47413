"""A simulated smart-speaker room: what the microphone hears when the device talks at full volume.

    played (what the speaker was handed) -> soft-clipping speaker -> delay -> room impulse response
        -> (optional clock drift) -> + the user's speech + a little noise -> microphone

Used two ways: whole signals in memory (:func:`simulate`, fast stage-level tests and the benchmark)
and streaming, block by block (:class:`EchoPath`, for the headless PulseAudio harness: what the
virtual speaker plays comes back on the virtual microphone, see :func:`attach_echo_path`).
All randomness is seeded: the same arguments give the same room.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from tests.support.pulse import PulseServer
from tests.support.timing import patience_s
from voiced.agent.daemon import Daemon
from voiced.audio.frames import level_dbfs
from voiced.audio.resample import StreamResampler, resample
from voiced.audio.settings import VadSettings
from voiced.audio.vad import SpeechStarted
from voiced.config import load_config
from voiced.conversation.states import TurnState
from voiced.devices.base import AudioSink, AudioSource, MicFrame
from voiced.devices.memory import MemorySink, MemorySource
from voiced.emulator import Emulator, EmulatorSettings, load_scenario, serve_emulator
from voiced.mic.echo import EchoCancelStage
from voiced.mic.settings import EchoSettings
from voiced.mic.stages import StageFrame
from voiced.mic.turn import TurnDetectorStage

RATE_HZ = 16000
ROOT = Path(__file__).resolve().parents[2]
#: Two different espeak-ng utterances: the device's reply and the user's voice.
REPLY_WAV = ROOT / "tests" / "fixtures" / "audio" / "lights_16k.wav"
USER_WAV = ROOT / "voiced" / "assets" / "utterance_16k.wav"

Float = npt.NDArray[np.float64]
Int16 = npt.NDArray[np.int16]


def load_wav(path: Path) -> Int16:
    """A 16 kHz mono s16le WAV as int16."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE_HZ and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def speech_only(pcm: Int16, *, threshold: float = 200.0) -> Int16:
    """The utterance without the fixture's leading and trailing noise."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


def full_volume(pcm: Int16, peak_dbfs: float = -1.0) -> Int16:
    """Scale so the loudest sample sits at ``peak_dbfs``: a reply at full volume."""
    peak = float(np.max(np.abs(pcm.astype(np.float64)))) or 1.0
    gain = 32767.0 * 10 ** (peak_dbfs / 20) / peak
    return np.clip(np.round(pcm * gain), -32768, 32767).astype(np.int16)


def reply_speech() -> Int16:
    """The device's reply: one espeak-ng sentence at full volume (about 2.4 s)."""
    return full_volume(speech_only(load_wav(REPLY_WAV)))


def user_speech() -> Int16:
    """The user's utterance (about 1.9 s), a different sentence from the reply."""
    return speech_only(load_wav(USER_WAV))


def dbfs(x: npt.NDArray[np.generic]) -> float:
    """RMS level in dBFS (-120 for silence)."""
    power = float(np.mean(np.asarray(x, dtype=np.float64) ** 2)) if x.size else 0.0
    return 10 * np.log10(power / 32768.0**2) if power > 0 else -120.0


@dataclass(frozen=True)
class Room:
    """The acoustic path from the device's speaker to its own microphone.

    ``echo_gain_db``: level of the echo relative to what was played (a mic centimetres from the
    speaker hears it almost as loud). ``drift_ppm``: the speaker's clock runs this much faster than
    the mic's.
    """

    delay_ms: float = 80.0
    rt60_ms: float = 250.0
    ir_ms: float = 120.0
    echo_gain_db: float = -3.0
    clip_drive: float = 2.0
    noise_dbfs: float = -60.0
    drift_ppm: float = 0.0
    seed: int = 1

    def impulse_response(self) -> Float:
        """Direct path, a few early reflections and an exponentially decaying diffuse tail."""
        rng = np.random.default_rng(self.seed)
        n = int(self.ir_ms * RATE_HZ / 1000)
        t = np.arange(n) / RATE_HZ
        decay = np.exp(-6.91 * t / (self.rt60_ms / 1000))  # -60 dB at rt60
        # A mic centimetres from the speaker: the direct sound dominates (about +8 dB over the reverb).
        ir = 0.03 * rng.standard_normal(n) * decay
        ir[0] = 1.0
        for k, g in (
            (int(0.004 * RATE_HZ), 0.5),
            (int(0.011 * RATE_HZ), -0.35),
            (int(0.019 * RATE_HZ), 0.25),
        ):
            if k < n:
                ir[k] += g
        result: Float = ir / np.sqrt(np.sum(ir**2)) * 10 ** (self.echo_gain_db / 20)
        return result

    def speaker(self, played: Float) -> Float:
        """A small loudspeaker driven hard: smooth (tanh) compression of the peaks."""
        x = played / 32768.0
        out: Float = np.tanh(self.clip_drive * x) / np.tanh(self.clip_drive) * 32768.0
        return out


def _fft_convolve(x: Float, h: Float) -> Float:
    n = x.size + h.size - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.size]
    return np.asarray(y, dtype=np.float64)


def echo_of(played: Int16, room: Room) -> Float:
    """The echo alone (float, 16 kHz) that the microphone picks up from ``played`` (16 kHz)."""
    driven = room.speaker(played.astype(np.float64))
    delay = round(room.delay_ms * RATE_HZ / 1000)
    delayed = np.concatenate([np.zeros(delay), driven])[: played.size]
    echo = _fft_convolve(delayed, room.impulse_response())
    if room.drift_ppm:
        # The speaker's clock runs fast: the same audio arrives in fewer mic samples.
        stretched = soxr.resample(echo, RATE_HZ * (1 + room.drift_ppm * 1e-6), RATE_HZ, quality="VHQ")
        echo = np.resize(np.asarray(stretched, dtype=np.float64), played.size)
    return echo


def noise(n: int, level_dbfs: float, seed: int) -> Float:
    """White noise at ``level_dbfs`` RMS."""
    out: Float = np.random.default_rng(seed).standard_normal(n) * 32768.0 * 10 ** (level_dbfs / 20)
    return out


def to_int16(x: Float) -> Int16:
    """Round and clip a float signal to int16."""
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@dataclass
class Scene:
    """What one simulated take consists of, sample-aligned at 16 kHz."""

    played: Int16  # what the device handed its speaker
    echo: Float  # the echo alone at the mic
    user: Float  # the user's voice alone at the mic
    mic: Int16  # everything the mic heard


def simulate(played: Int16, room: Room, user: Float | None = None, *, seed: int = 7) -> Scene:
    """Mix the echo of ``played``, the user's voice (same length, zeros = silent) and noise."""
    echo = echo_of(played, room)
    voice = np.zeros(played.size) if user is None else user
    mic = to_int16(echo + voice + noise(played.size, room.noise_dbfs, seed))
    return Scene(played=played, echo=echo, user=voice, mic=mic)


def place(signal: Int16, length: int, at: int, gain_db: float = 0.0) -> Float:
    """``signal`` placed at sample ``at`` of a silent track of ``length`` samples, scaled by ``gain_db``."""
    track = np.zeros(length)
    end = min(length, at + signal.size)
    track[at:end] = signal[: end - at] * 10 ** (gain_db / 20)
    return track


class EchoPath:
    """The room applied block by block: feed what the speaker played, take what the mic hears.

    :meth:`played` takes speaker audio at ``speaker_rate_hz`` as it comes (any block size);
    :meth:`mic_block` returns the next ``n`` mic samples at 16 kHz: the echo, the user's speech
    queued with :meth:`say`, and noise. Thread-safe: the speaker side and the mic side run on
    different threads. Give it to the headless PulseAudio harness with :func:`attach_echo_path`.
    The room's ``drift_ppm`` is not modelled here (both virtual devices run on the system clock).

    Like a real room, the delay is a fixed time, not a queue: a speaker sample played at ``t`` is
    heard by the mic sample of time ``t + delay``, whenever the harness's threads get the CPU. The
    speaker's samples are timed by their count from when its stream (re)started, the mic's by their
    count from its first block, so a drain thread that reads the pipe late (a loaded machine) does
    not delay the echo. And the mic waits (up to ``_WAIT_S``) for the speaker audio its block must
    echo, as a room would never skip it: on a loaded machine the drain thread can read the pipe later
    than the room's delay. Echo that still comes too late for its mic sample is dropped and counted
    (:attr:`late_echo_samples`).
    """

    #: The speaker's samples come later than their count says by more than this (the sound server
    #: stopped rendering, or skipped), or earlier at all: its stream restarted; time it anew.
    _RESTART_LATE_S = 0.3
    _RESTART_EARLY_S = 0.02
    _WAIT_S = 0.3

    def __init__(self, room: Room, speaker_rate_hz: int) -> None:
        self.room = room
        self._ir = room.impulse_response()
        self._resampler = StreamResampler(speaker_rate_hz, RATE_HZ)
        self._tail = np.zeros(self._ir.size - 1)
        self._delay_s = room.delay_ms / 1000.0
        self._stream_start_s: float | None = None  # monotonic time of speaker sample 0 (16 kHz)
        self._stream_out = 0  # 16 kHz speaker samples since then
        self._mic_start_s: float | None = None  # monotonic time of mic sample 0
        self._mic_base = 0  # mic sample index of self._echo[0]
        self._echo = np.zeros(0)  # the echo waiting to be heard, from mic sample _mic_base on
        self._user = np.zeros(0)
        self._rng = np.random.default_rng(room.seed)
        self._lock = threading.Condition()
        self._heard_until_s: float | None = None  # echo is known up to this time (speaker time + delay)
        self._speaker_gone = False  # a wait for the speaker timed out: do not wait again until it plays
        self.echo_heard = np.zeros(0)  # every echo sample handed to the mic (for ERLE), bounded below
        self._max_kept = 120 * RATE_HZ
        self.late_echo_samples = 0
        self.mic_waits = 0
        self.speaker_restarts = 0

    def played(self, block: Int16) -> None:
        """Speaker audio just played (at ``speaker_rate_hz``)."""
        now_s = time.monotonic()
        x = self._resampler.process(np.ascontiguousarray(block, dtype=np.int16)).astype(np.float64)
        if not x.size:
            return
        # Overlap-add: the convolution of this block plus what the earlier blocks still ring with.
        full = np.convolve(self.room.speaker(x), self._ir)
        full[: self._tail.size] += self._tail
        out, self._tail = full[: x.size], full[x.size :]
        start_s = self._stream_start_s
        if start_s is not None:
            # The block has just finished playing: its last sample's time by the count.
            late_s = now_s - (start_s + (self._stream_out + x.size) / RATE_HZ)
            if late_s > self._RESTART_LATE_S or late_s < -self._RESTART_EARLY_S:
                start_s = None
                self.speaker_restarts += 1
            elif late_s < 0:
                # A block is read late, never early: the stream started earlier than first seen.
                start_s += late_s
                self._stream_start_s = start_s
        if start_s is None:
            start_s = now_s - x.size / RATE_HZ
            self._stream_start_s, self._stream_out = start_s, 0
        heard_s = start_s + self._stream_out / RATE_HZ + self._delay_s
        self._stream_out += x.size
        with self._lock:
            self._heard_until_s = heard_s + out.size / RATE_HZ
            self._speaker_gone = False
            self._lock.notify_all()
            if self._mic_start_s is None:
                return  # nobody listens yet
            at = round((heard_s - self._mic_start_s) * RATE_HZ) - self._mic_base
            if at < 0:
                self.late_echo_samples += min(-at, out.size)
                out, at = out[-at:], 0
            end = at + out.size
            if end > self._echo.size:
                self._echo = np.concatenate([self._echo, np.zeros(end - self._echo.size)])
            self._echo[at:end] += out

    def say(self, speech: Int16, gain_db: float = 0.0) -> None:
        """Mix ``speech`` (16 kHz) into the mic from now on."""
        with self._lock:
            self._user = np.concatenate([self._user, speech.astype(np.float64) * 10 ** (gain_db / 20)])

    def mic_block(self, n: int) -> Int16:
        """The next ``n`` samples the mic hears (16 kHz)."""
        with self._lock:
            # The feeder writes each block on its schedule or late, never early: the earliest time a
            # block was asked for says when the mic's sample 0 was heard.
            started_s = time.monotonic() - self._mic_base / RATE_HZ
            if self._mic_start_s is None or started_s < self._mic_start_s:
                self._mic_start_s = started_s
            needed_s = self._mic_start_s + (self._mic_base + n) / RATE_HZ
            if not self._speaker_gone and self._heard_until_s is not None and self._heard_until_s < needed_s:
                self.mic_waits += 1
                if not self._lock.wait_for(
                    lambda: self._heard_until_s is not None and self._heard_until_s >= needed_s, self._WAIT_S
                ):
                    self._speaker_gone = True
            self._mic_base += n
            echo = np.zeros(n)
            k = min(n, self._echo.size)
            echo[:k] = self._echo[:k]
            self._echo = self._echo[k:]
            user = np.zeros(n)
            k = min(n, self._user.size)
            user[:k] = self._user[:k]
            self._user = self._user[k:]
            self.echo_heard = np.concatenate([self.echo_heard, echo])[-self._max_kept :]
        hiss = self._rng.standard_normal(n) * 32768.0 * 10 ** (self.room.noise_dbfs / 20)
        return to_int16(echo + user + hiss)

    def echo_dbfs(self, last_s: float = 5.0) -> float:
        """RMS level of the echo alone over the loud part (above -50 dBFS) of the last ``last_s``."""
        with self._lock:
            heard = self.echo_heard[-int(last_s * RATE_HZ) :]
        frames = heard[: heard.size // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
        loud = [f for f in frames if dbfs(f) > -50.0]
        return dbfs(np.concatenate(loud)) if loud else -120.0


def attach_echo_path(pulse: PulseServer, room: Room) -> EchoPath:
    """Carry the harness's virtual speaker to its virtual mic through ``room`` from now on."""
    path = EchoPath(room, pulse.speaker_rate_hz)
    pulse.echo_path = path
    return path


def resample_16k(pcm: Int16, rate_hz: int) -> Int16:
    """``pcm`` at ``rate_hz`` resampled to 16 kHz."""
    return resample(pcm, rate_hz, RATE_HZ)


# -- driving the mic path with a simulated room ------------------------------------------------------

Mode = Literal["aec", "heuristic", "half_duplex"]
MODES: tuple[Mode, ...] = ("aec", "heuristic", "half_duplex")
FRAME_SAMPLES = 320
FRAME_S = 0.02


@dataclass
class PathRun:
    """What the mic path made of one simulated take."""

    out: Int16  # the audio the turn detector saw (cleaned with AEC), 16 kHz
    cancelled: npt.NDArray[np.bool_]  # per frame: echo_cancelled
    started_at_s: list[float]  # capture time of each frame on which a SpeechStarted was reported
    stage_cpu_s: float  # time spent in the echo stage


def playing_mask(played: Int16, hangover_frames: int = 5) -> npt.NDArray[np.bool_]:
    """Per 20 ms frame: whether the device is "speaking" (what the playout pump reports)."""
    frames = played.size // FRAME_SAMPLES
    loud = np.array(
        [np.any(played[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] != 0) for k in range(frames)], dtype=bool
    )
    active = loud.copy()
    for lag in range(1, hangover_frames + 1):
        active[lag:] |= loud[:-lag]
    return active


def run_mic_path(
    played: Int16,
    mic: Int16,
    mode: Mode,
    *,
    settings: EchoSettings | None = None,
    vad: VadSettings | None = None,
    drift_ppm: float = 0.0,
    speaker_rate_hz: int = 24000,
    lead_s: float = 0.04,
    jitter_s: float = 0.001,
    seed: int = 3,
) -> PathRun:
    """Run ``mic`` through the mic path as the core would while the device plays ``played``.

    ``aec``: the echo_cancel stage, fed through its playback tap with ``played`` at
    ``speaker_rate_hz`` in 20 ms blocks, handed over ``lead_s`` before they are heard with
    timestamps that jitter by ``jitter_s`` and a speaker clock ``drift_ppm`` fast; then the turn
    detector. ``heuristic``: the turn detector's level margin against the playback level.
    ``half_duplex``: the turn detector is not fed while the device speaks.
    """
    settings = settings or EchoSettings(mode="webrtc")
    vad = vad or VadSettings()
    now = [0.0]
    stage = EchoCancelStage(settings, clock=lambda: now[0]) if mode == "aec" else None
    detector = TurnDetectorStage(vad)
    rng = np.random.default_rng(seed)
    speaker = resample(played, RATE_HZ, speaker_rate_hz)
    block = speaker_rate_hz // 50
    block_period_s = FRAME_S / (1 + drift_ppm * 1e-6)
    next_block = 0
    active = playing_mask(played)
    levels = np.array(
        [level_dbfs(played[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]) for k in range(active.size)]
    )
    frames = min(active.size, mic.size // FRAME_SAMPLES)
    out = np.zeros(frames * FRAME_SAMPLES, dtype=np.int16)
    cancelled = np.zeros(frames, dtype=bool)
    started: list[float] = []
    cpu_s = 0.0
    for k in range(frames):
        t = k * FRAME_S
        now[0] = t + FRAME_S  # the frame is read once it has been captured
        if stage is not None:
            while next_block * block < speaker.size and next_block * block_period_s <= now[0] + lead_s:
                chunk = speaker[next_block * block : (next_block + 1) * block]
                at = next_block * block_period_s + float(rng.uniform(-jitter_s, jitter_s))
                stage.playback_tap.played(chunk, speaker_rate_hz, at)
                next_block += 1
        recent = levels[max(0, k - 4) : k + 1]
        frame = StageFrame(
            mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes(),
            captured_at_s=t,
            playback_active=bool(active[k]),
            playback_level_dbfs=float(np.max(recent)) if active[k] else None,
        )
        if stage is not None:
            began = time.perf_counter()
            frame = stage.process(frame, [])
            cpu_s += time.perf_counter() - began
        out[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] = np.frombuffer(frame.pcm, dtype=np.int16)
        cancelled[k] = frame.echo_cancelled
        if mode == "half_duplex" and active[k]:
            continue
        events: list[object] = []
        detector.process(frame, events)
        started.extend(t for e in events if isinstance(e, SpeechStarted))
    return PathRun(out=out, cancelled=cancelled, started_at_s=started, stage_cpu_s=cpu_s)


def erle_db(mic: Int16, out: Int16, played: Int16, *, from_s: float = 1.0) -> float:
    """Echo return loss enhancement over the frames where the device talks, after ``from_s``."""
    active = playing_mask(played, hangover_frames=0)
    start = int(from_s / FRAME_S)
    frames = [k for k in range(start, min(active.size, out.size // FRAME_SAMPLES)) if active[k]]
    idx = np.concatenate([np.arange(k * FRAME_SAMPLES, (k + 1) * FRAME_SAMPLES) for k in frames])
    echo = float(np.sum(mic[idx].astype(np.float64) ** 2))
    residual = float(np.sum(out[idx].astype(np.float64) ** 2)) + 1.0
    return 10 * float(np.log10(echo / residual))


def replies(count: int, *, gap_s: float = 0.6, reply: Int16 | None = None) -> Int16:
    """``count`` replies at full volume with ``gap_s`` of silence after each."""
    one = reply if reply is not None else reply_speech()
    gap = np.zeros(int(gap_s * RATE_HZ), dtype=np.int16)
    return np.concatenate([np.concatenate([one, gap]) for _ in range(count)])


@dataclass
class DoubleTalk:
    """One barge-in trial: the user starts talking mid-reply."""

    detected_after_s: float | None  # from the first sample of the user's voice to SpeechStarted
    kept_db: float  # level of the user's voice in the output relative to the voice alone


def double_talk_trial(
    mode: Mode,
    *,
    room: Room,
    seed: int,
    below_echo_db: float = 6.0,
    replies_before: int = 2,
    settings: EchoSettings | None = None,
) -> DoubleTalk:
    """Play replies back to back; the user starts at a random moment of a later reply, ``below_echo_db``
    quieter than the echo (RMS over speech)."""
    reply = reply_speech()
    played = replies(replies_before + 2, gap_s=0.1, reply=reply)
    echo = echo_of(played, room)
    active = playing_mask(played, hangover_frames=0)
    echo_rms_db = dbfs(
        np.concatenate([echo[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] for k in np.flatnonzero(active)])
    )
    voice = user_speech()
    gain_db = echo_rms_db - below_echo_db - dbfs(voice)
    rng = np.random.default_rng(seed)
    period = reply.size + int(0.1 * RATE_HZ)
    at = replies_before * period + int(rng.uniform(0.1, 0.6) * reply.size)
    user = place(voice, played.size, at, gain_db)
    scene = simulate(played, room, user, seed=seed)
    run = run_mic_path(played, scene.mic, mode, settings=settings, drift_ppm=room.drift_ppm)
    onset_s = at / RATE_HZ
    late = [s - onset_s for s in run.started_at_s if s >= onset_s - 0.1]
    detected = late[0] if late else None
    span = slice(at, min(at + voice.size, run.out.size))
    kept_db = dbfs(run.out[span]) - dbfs(user[span])
    return DoubleTalk(detected_after_s=detected, kept_db=kept_db)


# -- a closed loop: the daemon's own speaker heard by its own microphone --------------------------------


class RoomLoop:
    """A speaker and a microphone in one simulated room, on the event loop's clock.

    Every block the speaker plays reaches the microphone through ``room`` (soft clip, delay, impulse
    response, clock drift) as it is played: block ``at_s`` is heard from ``at_s + room.delay_ms``
    on. The microphone adds the user's speech queued with :meth:`say` and the room's noise.
    ``speaker(rate_hz)`` and ``microphone()`` are the two devices; give them to the daemon's device
    factories. ``echo_dbfs`` is the level of the echo alone over the last second it was heard.
    """

    def __init__(self, room: Room) -> None:
        self.room = room
        self._ir = room.impulse_response()
        self._t0_s: float | None = None  # loop time of mic sample 0
        self._base = 0  # mic sample index of self._pending[0]
        self._pending = np.zeros(0)  # echo waiting to be captured, from self._base on
        self._user = np.zeros(0)
        self._rng = np.random.default_rng(room.seed)
        self._stream: tuple[soxr.ResampleStream, int, float] | None = None  # (resampler, rate, start_s)
        self._stream_out = 0  # 16 kHz samples the current speaker stream has produced
        self._stream_in = 0  # speaker-rate samples handed to it
        self.speaker_restarts = 0  # new speaker streams after the first (a gap in its blocks)
        self._tail = np.zeros(self._ir.size - 1)
        self._echo_levels: list[float] = []
        self.user_started_at_s: float | None = None

    # -- speaker side ---------------------------------------------------------------------------
    def heard(self, block: Int16, rate_hz: int, at_s: float) -> None:
        """The speaker played ``block`` at loop time ``at_s``: it reaches the mic after the delay."""
        if self._t0_s is None:
            return  # nobody listens yet
        stream = self._stream
        if stream is not None:
            # By the samples handed in, not those out of the resampler: with the drift's odd ratio
            # soxr releases its output in bursts of about 50 ms, which is no restart.
            expected_s = stream[2] + self._stream_in / rate_hz
            if stream[1] != rate_hz or abs(at_s - expected_s) > 0.05:
                stream = None  # the speaker restarted: a new stream, as a sound card would
                self.speaker_restarts += 1
        if stream is None:
            # The speaker's clock runs drift_ppm fast: its samples last that much less at the mic.
            resampler = soxr.ResampleStream(rate_hz * (1 + self.room.drift_ppm * 1e-6), RATE_HZ, 1, "float64")
            stream = (resampler, rate_hz, at_s)
            self._stream, self._stream_out, self._stream_in = stream, 0, 0
            self._tail = np.zeros(self._ir.size - 1)
        self._stream_in += block.size
        x = np.asarray(stream[0].resample_chunk(block.astype(np.float64)), dtype=np.float64)
        start_s = stream[2] + self._stream_out / RATE_HZ
        self._stream_out += x.size
        if not x.size:
            return
        full = np.convolve(self.room.speaker(x), self._ir)
        full[: self._tail.size] += self._tail
        out, self._tail = full[: x.size], full[x.size :].copy()
        at = round((start_s + self.room.delay_ms / 1000.0 - self._t0_s) * RATE_HZ) - self._base
        if at < 0:  # the loop ran late: what is already captured cannot hear it any more
            out, at = out[-at:], 0
        end = at + out.size
        if end > self._pending.size:
            self._pending = np.concatenate([self._pending, np.zeros(end - self._pending.size)])
        self._pending[at:end] += out

    def speaker(self, rate_hz: int) -> RoomSpeaker:
        """A speaker (a :class:`MemorySink`) whose output the room carries to the microphone."""
        return RoomSpeaker(rate_hz, self)

    # -- microphone side ------------------------------------------------------------------------
    def say(self, speech: Int16, gain_db: float = 0.0) -> None:
        """The user speaks ``speech`` (16 kHz) from the next captured frame on."""
        self._user = np.concatenate([self._user, speech.astype(np.float64) * 10 ** (gain_db / 20)])
        self.user_started_at_s = None

    def capture(self, captured_at_s: float, n: int) -> Int16:
        """The ``n`` samples the microphone heard from ``captured_at_s`` (called in order)."""
        if self._t0_s is None:
            self._t0_s = captured_at_s
        echo = np.zeros(n)
        k = min(n, self._pending.size)
        echo[:k] = self._pending[:k]
        self._pending = self._pending[k:]
        self._base += n
        if dbfs(echo) > -50.0:
            self._echo_levels = [*self._echo_levels[-49:], dbfs(echo)]
        user = np.zeros(n)
        k = min(n, self._user.size)
        if k and self.user_started_at_s is None:
            self.user_started_at_s = captured_at_s
        user[:k] = self._user[:k]
        self._user = self._user[k:]
        hiss = self._rng.standard_normal(n) * 32768.0 * 10 ** (self.room.noise_dbfs / 20)
        return to_int16(echo + user + hiss)

    def microphone(self) -> RoomMicrophone:
        """The microphone: 20 ms frames paced in real time."""
        return RoomMicrophone(self)

    @property
    def echo_dbfs(self) -> float:
        """RMS level of the echo over the last second in which it was heard (-120 before any)."""
        if not self._echo_levels:
            return -120.0
        return 10 * float(np.log10(np.mean(10 ** (np.array(self._echo_levels) / 10))))


class RoomSpeaker(MemorySink):
    """A MemorySink whose blocks are also carried through the room to the microphone."""

    def __init__(self, rate_hz: int, room: RoomLoop) -> None:
        super().__init__(rate_hz)
        self.room = room

    def _emit(self, block: Int16, at_s: float) -> None:
        super()._emit(block, at_s)
        self.room.heard(block, self.sample_rate_hz, at_s)


class RoomMicrophone(MemorySource):
    """A MemorySource whose frames are what the room's microphone hears, paced in real time."""

    def __init__(self, room: RoomLoop) -> None:
        super().__init__(np.zeros(0, dtype=np.int16), paced=True, after_end="silence")
        self.room = room

    async def read_frames(self, max_frames: int) -> list[MicFrame]:
        """The next frames (capture times on the loop's clock, like a sound card's ADC time)."""
        frames = await super().read_frames(max_frames)
        return [
            MicFrame(self.room.capture(f.captured_at_s, self.frame_samples).tobytes(), f.captured_at_s)
            for f in frames
        ]


#: A bot that answers everything with one sentence of about two seconds.
SPEAKER_SCENARIO = (
    'description = "Answers everything with one sentence."\n'
    '[fallback]\ntranscript = "Hello there."\n'
    'reply = ["The kitchen lights are on and the oven is warming up."]\n'
)
#: What each mode means in the daemon's config.
MODE_OVERRIDES: dict[Mode, dict[str, object]] = {
    "aec": {"audio.echo.mode": "webrtc"},
    "heuristic": {"audio.echo.mode": "off", "agent.half_duplex": False},
    "half_duplex": {"audio.echo.mode": "off", "agent.half_duplex": True},
}


@dataclass
class Replies:
    """What happened while the daemon talked in the room."""

    played: int  # replies that started playing
    interrupts: int
    interrupts_by_reason: dict[str, int]


@contextlib.asynccontextmanager
async def daemon_in_room(
    room: RoomLoop, mode: Mode, *, overrides: dict[str, object] | None = None
) -> AsyncIterator[tuple[Daemon, Emulator]]:
    """The real daemon against the emulator over loopback, its speaker and mic in ``room``."""
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "speaker.toml"
        scenario.write_text(SPEAKER_SCENARIO)
        settings = EmulatorSettings(port=0, scenario=load_scenario(scenario), time_scale=0.2)
        async with serve_emulator(settings) as emu:
            config = load_config(
                None,
                environ={},
                overrides={
                    "coze.base_url": emu.url,
                    "coze.bot_id": "7000000000000000001",
                    "coze.token": "pat_room_test_token_0123456789",
                    "session.input_codec": "pcm",
                    **MODE_OVERRIDES[mode],
                    **(overrides or {}),
                },
            )
            mic = room.microphone()

            async def source_factory() -> AudioSource:
                await mic.start()
                return mic

            async def sink_factory(rate_hz: int) -> AudioSink:
                sink = room.speaker(rate_hz)
                await sink.start()
                return sink

            daemon = Daemon(config, source_factory, sink_factory, install_signal_handlers=False)
            task = asyncio.create_task(daemon.run())
            try:
                async with asyncio.timeout(patience_s(15.0)):
                    await daemon.ready.wait()
                yield daemon, emu
            finally:
                daemon.request_stop()
                await asyncio.wait_for(task, patience_s(10.0))


async def wait_state(daemon: Daemon, states: set[TurnState], timeout_s: float) -> TurnState:
    """Wait until the conversation is in one of ``states``; returns it (TimeoutError after ``timeout_s``)."""
    async with asyncio.timeout(patience_s(timeout_s)):
        while True:
            agent = daemon.agent
            if agent is not None and agent.state in states:
                return agent.state
            await asyncio.sleep(0.01)


async def talk(daemon: Daemon, count: int) -> Replies:
    """Ask for ``count`` replies, one after the other, each played to its end (or interrupted)."""
    played = 0
    for _ in range(count):
        await wait_state(daemon, {TurnState.IDLE}, 30.0)
        agent = daemon.agent
        assert agent is not None
        agent.send_text("Tell me something.")
        await wait_state(daemon, {TurnState.SPEAKING, TurnState.GATED}, 15.0)
        played += 1
        await wait_state(daemon, {TurnState.IDLE}, 30.0)
    await asyncio.sleep(0.5)  # the room's tail after the last reply
    agent = daemon.agent
    assert agent is not None
    counters = agent.counters
    return Replies(
        played=played,
        interrupts=counters.interrupts,
        interrupts_by_reason=dict(counters.interrupts_by_reason),
    )
