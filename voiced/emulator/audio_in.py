"""What the emulator does with the user's audio: check it against ``input_audio``, decode it, and run the
server's VAD over it.

The checks are the real server's (protocol.md §3.1–3.2): the default input format is ``wav``, so a client
that streams headerless PCM or raw Opus without first sending ``chat.update`` gets error 4000; Opus
arrives as exactly one raw packet per append. Decoded audio is resampled to 16 kHz because webrtcvad
rejects 24 kHz.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import soxr
import webrtcvad

from voiced.audio.codec import CodecUnavailable, Decoder, make_decoder
from voiced.protocol.models import InputAudio

VAD_RATE_HZ = 16000
VAD_FRAME_MS = 20
_VAD_FRAME_BYTES = VAD_RATE_HZ * VAD_FRAME_MS // 1000 * 2
#: webrtcvad flags the first 80–150 ms of a stream as speech (design.md): ignore a short warm-up.
_VAD_WARMUP_MS = 100
#: Voiced frames (of 20 ms) within the last `_START_WINDOW` needed to declare speech.
_START_FRAMES = 4
_START_WINDOW = 6


class AudioRejectedError(ValueError):
    """The append does not match ``input_audio``; the message is the ``error`` 4000 text to send."""


def describe_input(config: InputAudio) -> str:
    """``format: wav, codec: pcm, sample_rate: 24000`` — used in error messages."""
    return f"format: {config.format}, codec: {config.codec}, sample_rate: {config.sample_rate}"


class InputDecoder:
    """Decodes appended audio per the effective ``input_audio``. Rebuild it after every ``chat.update``."""

    def __init__(self, config: InputAudio) -> None:
        self.config = config
        self.format = config.format or "wav"
        self.codec = config.codec or "pcm"
        self.sample_rate_hz = config.sample_rate or 24000
        self._decoder: Decoder | None = None
        self._wav_rate_hz: int | None = None
        self._resampler: soxr.ResampleStream | None = None
        self._resampler_rate_hz = 0

    def start_turn(self) -> None:
        """A new user turn begins: a WAV stream must start again with its RIFF header."""
        self._wav_rate_hz = None

    def decode(self, payload: bytes) -> bytes:
        """Decode one append to s16le mono PCM at 16 kHz. Raises :class:`AudioRejectedError`."""
        if self.format == "wav":
            pcm, rate = self._decode_wav(payload)
        elif self.format == "pcm":
            pcm, rate = self._decode_raw(payload), self.sample_rate_hz
        else:
            raise AudioRejectedError(
                f"input audio format {self.format!r} is not supported by the voiced emulator; "
                "use format pcm (with codec pcm, opus, g711a or g711u) or wav"
            )
        return self._to_vad_rate(pcm, rate)

    def _decode_wav(self, payload: bytes) -> tuple[bytes, int]:
        if self._wav_rate_hz is None:
            if not payload.startswith(b"RIFF") or payload[8:12] != b"WAVE":
                # Wording of the real server's reply to headerless audio in the default format (§3.1).
                raise AudioRejectedError(
                    "invalid audio: the input audio should follow the format: wav "
                    f"({describe_input(self.config)}); "
                    'the data has no RIFF/WAVE header. Send chat.update with input_audio.format "pcm" '
                    "to stream raw PCM or Opus"
                )
            rate, body = _parse_wav(payload)
            self._wav_rate_hz = rate
            return body, rate
        return payload[: len(payload) // 2 * 2], self._wav_rate_hz

    def _decode_raw(self, payload: bytes) -> bytes:
        if self._decoder is None:
            try:
                codec = cast(Literal["pcm", "opus", "g711a", "g711u"], self.codec)
                self._decoder = make_decoder(codec, self.sample_rate_hz)
            except (ValueError, CodecUnavailable) as exc:
                raise AudioRejectedError(
                    f"invalid input_audio ({describe_input(self.config)}): {exc}"
                ) from exc
        errors_before = self._decoder.errors
        pcm = self._decoder.decode(payload)
        if self._decoder.errors != errors_before:
            raise AudioRejectedError(
                f"invalid {self.codec} audio: the packet of {len(payload)} bytes cannot be decoded "
                "(send exactly one raw packet per input_audio_buffer.append)"
            )
        return pcm

    def _to_vad_rate(self, pcm: bytes, rate_hz: int) -> bytes:
        if rate_hz == VAD_RATE_HZ or not pcm:
            return pcm
        if self._resampler is None or self._resampler_rate_hz != rate_hz:
            self._resampler = soxr.ResampleStream(rate_hz, VAD_RATE_HZ, 1, dtype="int16", quality="HQ")
            self._resampler_rate_hz = rate_hz
        out = self._resampler.resample_chunk(np.frombuffer(pcm, dtype=np.int16))
        return np.asarray(out, dtype=np.int16).tobytes()


def _parse_wav(data: bytes) -> tuple[int, bytes]:
    """(sample rate, samples) of a mono 16-bit WAV whose first chunk(s) arrived in ``data``."""
    offset = 12
    rate = 0
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt " and body + 16 <= len(data):
            _fmt, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
            if channels != 1 or bits != 16:
                raise AudioRejectedError(
                    f"invalid wav audio: need mono 16-bit, got {channels} channel(s), {bits} bit"
                )
        elif chunk_id == b"data":
            if not rate:
                raise AudioRejectedError("invalid wav audio: data chunk before fmt chunk")
            samples = data[body:]
            return rate, samples[: len(samples) // 2 * 2]
        offset = body + size + (size & 1)
    raise AudioRejectedError(
        "invalid wav audio: the first append must hold the whole RIFF header up to 'data'"
    )


SegmentEvent = Literal["speech_started", "speech_stopped"]


@dataclass
class Utterance:
    """Speech found by the segmenter; ``audio_ms`` includes the prefix padding."""

    audio_ms: int


class SpeechSegmenter:
    """The server VAD of ``turn_detection: server_vad``: webrtcvad on 20 ms frames at 16 kHz.

    Speech starts after ``_START_FRAMES`` voiced frames within ``_START_WINDOW``; the utterance then
    includes up to ``prefix_padding_ms`` of audio before the start. It stops after
    ``silence_duration_ms`` of continuous non-speech. Feed every decoded append to :meth:`feed`.
    """

    def __init__(self, prefix_padding_ms: int, silence_duration_ms: int, aggressiveness: int = 2) -> None:
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self._vad = webrtcvad.Vad(aggressiveness)
        self._pending = b""
        self._seen_ms = 0
        self._window: list[bool] = []
        self._speaking = False
        self._silence_ms = 0
        self._speech_ms = 0
        self._before_ms = 0
        self.last_utterance: Utterance | None = None

    @property
    def speaking(self) -> bool:
        """True between ``speech_started`` and ``speech_stopped``."""
        return self._speaking

    @property
    def speech_ms(self) -> int:
        """Length of the utterance in progress so far (0 when not speaking)."""
        return self._speech_ms if self._speaking else 0

    def feed(self, pcm16k: bytes) -> list[SegmentEvent]:
        """Advance over ``pcm16k``; returns the boundaries crossed, in order."""
        events: list[SegmentEvent] = []
        data = self._pending + pcm16k
        whole = len(data) // _VAD_FRAME_BYTES * _VAD_FRAME_BYTES
        self._pending = data[whole:]
        for offset in range(0, whole, _VAD_FRAME_BYTES):
            frame = data[offset : offset + _VAD_FRAME_BYTES]
            self._seen_ms += VAD_FRAME_MS
            voiced = self._seen_ms > _VAD_WARMUP_MS and self._vad.is_speech(frame, VAD_RATE_HZ)
            event = self._step(voiced)
            if event is not None:
                events.append(event)
        return events

    def _step(self, voiced: bool) -> SegmentEvent | None:
        if not self._speaking:
            self._window = [*self._window[-(_START_WINDOW - 1) :], voiced]
            self._before_ms += VAD_FRAME_MS
            if sum(self._window) >= _START_FRAMES:
                self._speaking = True
                self._silence_ms = 0
                window_ms = len(self._window) * VAD_FRAME_MS
                self._speech_ms = window_ms + min(self.prefix_padding_ms, max(0, self._before_ms - window_ms))
                self._window = []
                return "speech_started"
            return None
        self._speech_ms += VAD_FRAME_MS
        self._silence_ms = 0 if voiced else self._silence_ms + VAD_FRAME_MS
        if self._silence_ms >= self.silence_duration_ms:
            self._speaking = False
            self._before_ms = 0
            self.last_utterance = Utterance(audio_ms=self._speech_ms - self._silence_ms)
            return "speech_stopped"
        return None
