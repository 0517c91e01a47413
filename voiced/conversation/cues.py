"""Feedback sounds: a chime when woken, another when going back to sleep, and two error sounds.

The sounds are small WAVs bundled in ``voiced/assets/cues`` (made by ``scripts/make_cues.py``),
replaceable one by one with ``listen.cue_files``. They play through the same path as reply audio:
:class:`CuePlayer` pushes a sound into a :class:`CueOutput` (the :class:`~voiced.conversation.playout.
Playout` of the open speaker satisfies it) under a chat id of its own, :data:`CUE_CHAT_PREFIX` +
kind + a counter. So a sound is faded and cut like a reply, counts as the device talking (the
mic path knows its own voice is in the room) and ``playout.interrupt(None)`` silences it.

The owner sets :attr:`CuePlayer.output` whenever it opens a speaker (None while there is none) and
calls :meth:`CuePlayer.play`; code that reads reply ids (``playing_chat_id``, latency figures) skips
ids for which :func:`is_cue_id` is true.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Protocol, get_args

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.audio.resample import resample
from voiced.conversation.settings import CueKind, ListenSettings
from voiced.devices.base import DeviceError
from voiced.devices.wav import read_wav_mono
from voiced.errors import ConfigError

#: Reply ids starting with this are feedback sounds, not the bot's replies.
CUE_CHAT_PREFIX = "voiced-cue:"
CUE_KINDS: tuple[CueKind, ...] = get_args(CueKind)
#: A replacement longer than this is cut: a cue is a cue, and it is held in memory at the output rate.
MAX_CUE_S = 5.0


class CueOutput(Protocol):
    """Where sounds go: reply-audio style ``push`` of s16le at the player's rate, then ``complete``."""

    def push(self, chat_id: str, pcm: bytes, now_s: float) -> None: ...

    def complete(self, chat_id: str) -> None: ...


def is_cue_id(chat_id: str | None) -> bool:
    """Whether a playout chat id belongs to a feedback sound."""
    return chat_id is not None and chat_id.startswith(CUE_CHAT_PREFIX)


def bundled_cue_path(kind: CueKind) -> Path:
    """The bundled WAV for ``kind``."""
    return Path(str(resources.files("voiced") / "assets" / "cues" / f"{kind}.wav"))


def load_cue(path: Path, sample_rate_hz: int, volume_pct: int) -> Int16Array:
    """The sound at ``path`` as int16 mono at ``sample_rate_hz``, scaled by ``volume_pct``.

    Raises ConfigError (naming ``listen.cue_files``) for a missing or unreadable file.
    """
    try:
        pcm, rate = read_wav_mono(path)
    except DeviceError as exc:
        raise ConfigError(f"listen.cue_files: {exc}") from None
    pcm = pcm[: int(MAX_CUE_S * rate)]
    if rate != sample_rate_hz:
        pcm = resample(pcm, rate, sample_rate_hz)
    scaled = np.round(pcm.astype(np.float32) * (volume_pct / 100.0))
    out: Int16Array = np.clip(scaled, -32768, 32767).astype(np.int16)
    return out


class CuePlayer:
    """Plays the four feedback sounds into :attr:`output`. Runs on the event loop.

    Build it once from ``[listen]`` (the files are read and resampled to ``sample_rate_hz``, the
    rate of the playout, here; a bad replacement file is a ConfigError now, not a silent device
    later). Set ``output`` when a speaker is open.
    """

    def __init__(
        self,
        settings: ListenSettings,
        sample_rate_hz: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.enabled = settings.cues and settings.cue_volume_pct > 0
        self.clock = clock
        self.output: CueOutput | None = None
        self.played: dict[CueKind, int] = dict.fromkeys(CUE_KINDS, 0)
        self._counter = itertools.count(1)
        self._sounds: dict[CueKind, bytes] = {}
        if self.enabled:
            for kind in CUE_KINDS:
                path = settings.cue_files.get(kind) or bundled_cue_path(kind)
                pcm = load_cue(Path(path).expanduser(), sample_rate_hz, settings.cue_volume_pct)
                self._sounds[kind] = pcm.tobytes()

    def duration_s(self, kind: CueKind) -> float:
        """Length of ``kind`` in seconds (0 when sounds are off)."""
        return len(self._sounds.get(kind, b"")) / 2 / self.sample_rate_hz

    def play(self, kind: CueKind) -> float:
        """Start ``kind`` now; returns how long it sounds in seconds (0: nothing played: sounds off or
        no speaker). The caller mutes the mic that long when the mic must not hear it."""
        sound = self._sounds.get(kind)
        output = self.output
        if not sound or output is None:
            return 0.0
        chat_id = f"{CUE_CHAT_PREFIX}{kind}:{next(self._counter)}"
        output.push(chat_id, sound, self.clock())
        output.complete(chat_id)
        self.played[kind] += 1
        return self.duration_s(kind)
