"""Codecs behind one interface: PCM (s16le), Opus (VOIP) and G.711 A-law / µ-law.

`make_encoder` / `make_decoder` are the only constructors callers need. An encoder takes exactly one
frame of s16le mono PCM and returns one packet. A decoder turns one payload into s16le mono PCM and
never raises on bad input: a bad packet is counted in `errors` and replaced by concealment, so a
corrupt packet from the network cannot tear the pipeline down.

libopus is loaded lazily (opuslib raises a bare `Exception` at import when libopus0 is missing), so the
PCM and G.711 paths work on a machine without it; asking for Opus there raises `CodecUnavailable`.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from voiced.audio.frames import Int16Array, as_int16
from voiced.audio.settings import OpusSettings

CodecName = Literal["pcm", "opus", "g711a", "g711u"]
OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
# libopus can decode at most 120 ms per packet.
_OPUS_MAX_PACKET_MS = 120


class CodecUnavailable(Exception):  # noqa: N818  (name fixed by the daemon API)
    """A codec's system library is missing. The message names the package to install."""


@runtime_checkable
class Encoder(Protocol):
    """Encodes exactly one frame of s16le mono PCM (`frame_samples` samples) into one packet."""

    codec: str
    sample_rate_hz: int
    frame_samples: int

    def encode(self, pcm: bytes) -> bytes:
        """Encode one frame; raise ValueError when `pcm` is not exactly `frame_samples * 2` bytes."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Decodes payloads into s16le mono PCM; `errors` counts payloads that could not be decoded."""

    codec: str
    sample_rate_hz: int
    errors: int

    def decode(self, payload: bytes) -> bytes:
        """Decode one payload. Never raises: a bad payload is counted and concealed."""
        ...

    def conceal(self, n_samples: int) -> bytes:
        """Return `n_samples` of concealment for a missing packet (Opus PLC; silence for the others)."""
        ...


def _check_frame(codec: str, pcm: bytes, frame_samples: int) -> None:
    if len(pcm) != frame_samples * 2:
        raise ValueError(
            f"{codec} encoder takes exactly one frame of {frame_samples} samples "
            f"({frame_samples * 2} bytes of s16le), got {len(pcm)} bytes"
        )


# -- PCM ------------------------------------------------------------------------------------------
class PcmEncoder:
    """Pass-through encoder that still checks the frame length."""

    codec = "pcm"

    def __init__(self, sample_rate_hz: int, frame_ms: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = sample_rate_hz * frame_ms // 1000

    def encode(self, pcm: bytes) -> bytes:
        """Return `pcm` unchanged after checking it is exactly one frame."""
        _check_frame(self.codec, pcm, self.frame_samples)
        return bytes(pcm)


class PcmDecoder:
    """s16le pass-through that tolerates odd-length payloads.

    Policy for an odd length: the stray last byte is kept and prepended to the next payload, so a
    sender that splits samples across deltas still decodes bit-exactly. `reset()` drops it (call it
    at the start of each new reply); `carry_bytes` tells whether one is pending.
    """

    codec = "pcm"

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.errors = 0
        self._carry = b""

    @property
    def carry_bytes(self) -> int:
        """1 when half a sample is waiting for the next payload, else 0."""
        return len(self._carry)

    def reset(self) -> None:
        """Drop a pending half sample (start of a new stream)."""
        self._carry = b""

    def decode(self, payload: bytes) -> bytes:
        """Return the whole samples of carry + payload; keep a trailing odd byte for the next call."""
        data = self._carry + payload
        if len(data) % 2:
            self._carry = data[-1:]
            data = data[:-1]
        else:
            self._carry = b""
        return data

    def conceal(self, n_samples: int) -> bytes:
        """Silence."""
        return b"\x00\x00" * max(0, n_samples)


# -- G.711 ----------------------------------------------------------------------------------------
_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _ulaw_encode_one(x: int) -> int:
    sign = 0x80 if x < 0 else 0
    mag = min(-x if x < 0 else x, _ULAW_CLIP) + _ULAW_BIAS
    exponent = max(0, mag.bit_length() - 8)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_one(b: int) -> int:
    b = ~b & 0xFF
    exponent = (b >> 4) & 0x07
    mantissa = b & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -mag if b & 0x80 else mag


def _alaw_encode_one(x: int) -> int:
    v = x >> 3  # G.711 A-law works on 13-bit samples
    if v >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        v = -v - 1
    seg = next((i for i, end in enumerate(_ALAW_SEG_END) if v <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (v >> 1) & 0x0F if seg < 2 else (v >> seg) & 0x0F
    return aval ^ mask


def _alaw_decode_one(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


@functools.cache
def _g711_tables(law: str) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], Int16Array]:
    """(encode table indexed by uint16 view of the sample, decode table indexed by byte)."""
    enc_one: Callable[[int], int] = _alaw_encode_one if law == "a" else _ulaw_encode_one
    dec_one: Callable[[int], int] = _alaw_decode_one if law == "a" else _ulaw_decode_one
    samples = np.arange(65536, dtype=np.uint16).view(np.int16)
    enc = np.fromiter((enc_one(int(s)) for s in samples), dtype=np.uint8, count=65536)
    dec = np.fromiter((dec_one(b) for b in range(256)), dtype=np.int16, count=256)
    return enc, dec


class G711Encoder:
    """G.711 A-law (`g711a`) or µ-law (`g711u`): one byte per sample."""

    def __init__(self, law: Literal["a", "u"], sample_rate_hz: int, frame_ms: int) -> None:
        self.codec = "g711a" if law == "a" else "g711u"
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        self._enc, _ = _g711_tables(law)

    def encode(self, pcm: bytes) -> bytes:
        """Compand one frame to one byte per sample."""
        _check_frame(self.codec, pcm, self.frame_samples)
        x = as_int16(pcm)
        return self._enc[x.view(np.uint16)].tobytes()


class G711Decoder:
    """Expands G.711 bytes to s16le. Every byte is valid, so `errors` stays 0."""

    def __init__(self, law: Literal["a", "u"], sample_rate_hz: int) -> None:
        self.codec = "g711a" if law == "a" else "g711u"
        self.sample_rate_hz = sample_rate_hz
        self.errors = 0
        _, self._dec = _g711_tables(law)

    def decode(self, payload: bytes) -> bytes:
        """Expand each byte to one s16le sample."""
        return self._dec[np.frombuffer(payload, dtype=np.uint8)].astype("<i2").tobytes()

    def conceal(self, n_samples: int) -> bytes:
        """Silence."""
        return b"\x00\x00" * max(0, n_samples)


# -- Opus -----------------------------------------------------------------------------------------
def _load_opuslib() -> Any:
    try:
        import opuslib  # noqa: PLC0415  (lazy: the import itself fails without libopus0)
        import opuslib.api.ctl  # noqa: PLC0415
        import opuslib.api.decoder  # noqa: PLC0415
        import opuslib.api.encoder  # noqa: PLC0415
    except Exception as exc:  # opuslib raises a bare Exception when libopus is missing
        raise CodecUnavailable(
            "Opus needs the system library libopus: install it with `sudo apt-get install libopus0` "
            f"(or choose codec 'pcm'). Loader said: {exc}"
        ) from exc
    return opuslib


def _check_opus_rate(sample_rate_hz: int) -> None:
    if sample_rate_hz not in OPUS_RATES_HZ:
        raise ValueError(f"Opus supports sample rates {OPUS_RATES_HZ} Hz, got {sample_rate_hz}")


class OpusEncoder:
    """Opus, VOIP application, with bitrate/complexity/FEC from `OpusSettings`."""

    codec = "opus"

    def __init__(self, sample_rate_hz: int, settings: OpusSettings) -> None:
        _check_opus_rate(sample_rate_hz)
        opuslib = _load_opuslib()
        self.sample_rate_hz = sample_rate_hz
        self.frame_samples = sample_rate_hz * settings.frame_ms // 1000
        self.settings = settings
        self._enc = opuslib.Encoder(sample_rate_hz, 1, "voip")
        self._enc.bitrate = settings.bitrate_bps
        self._enc.complexity = settings.complexity
        # opuslib's `inband_fec` setter drops its argument, so call the encoder ctl directly.
        ctl = opuslib.api.ctl
        opuslib.api.encoder.encoder_ctl(self._enc.encoder_state, ctl.set_inband_fec, int(settings.fec))
        opuslib.api.encoder.encoder_ctl(
            self._enc.encoder_state, ctl.set_packet_loss_perc, settings.expected_loss_pct
        )

    @property
    def fec_enabled(self) -> bool:
        """What libopus reports for in-band FEC (read back from the encoder)."""
        opuslib = _load_opuslib()
        return bool(opuslib.api.encoder.encoder_ctl(self._enc.encoder_state, opuslib.api.ctl.get_inband_fec))

    def encode(self, pcm: bytes) -> bytes:
        """Encode one frame. The length is checked here: opuslib would read past a short buffer."""
        _check_frame(self.codec, pcm, self.frame_samples)
        return bytes(self._enc.encode(bytes(pcm), self.frame_samples))


class OpusDecoder:
    """Opus decoder with counted errors, packet-loss concealment and FEC recovery."""

    codec = "opus"

    def __init__(self, sample_rate_hz: int) -> None:
        _check_opus_rate(sample_rate_hz)
        opuslib = _load_opuslib()
        self.sample_rate_hz = sample_rate_hz
        self.errors = 0
        self._max_samples = sample_rate_hz * _OPUS_MAX_PACKET_MS // 1000
        self._last_samples = sample_rate_hz * 20 // 1000
        self._dec = opuslib.Decoder(sample_rate_hz, 1)
        # One output buffer for every packet: opuslib's own decode allocates a fresh one and ties it
        # to a pointer in a reference cycle, so 50 buffers/s piled up (MBs) until a full collection.
        self._opus_decode = opuslib.api.decoder.libopus_decode
        self._pcm = (ctypes.c_int16 * self._max_samples)()

    def _decode_into(self, payload: bytes, n_samples: int, fec: bool) -> bytes:
        n = self._opus_decode(self._dec.decoder_state, payload, len(payload), self._pcm, n_samples, int(fec))
        if n < 0:
            raise ValueError(f"libopus decode error {n}")
        return ctypes.string_at(self._pcm, n * 2)

    def decode(self, payload: bytes) -> bytes:
        """Decode one packet; on a corrupt/empty packet count an error and return concealment."""
        if not payload:
            self.errors += 1
            return self.conceal(self._last_samples)
        try:
            out = self._decode_into(bytes(payload), self._max_samples, fec=False)
        except Exception:  # OpusError and ctypes errors alike: never out of the pipeline
            self.errors += 1
            return self.conceal(self._last_samples)
        self._last_samples = len(out) // 2
        return out

    def recover(self, next_payload: bytes, n_samples: int) -> bytes:
        """Rebuild a lost packet of `n_samples` from the FEC data carried in the packet after it.

        Call this when packet k is missing and k+1 has arrived, then decode k+1 normally. Falls back
        to PLC when the next packet carries no usable FEC.
        """
        try:
            return self._decode_into(bytes(next_payload), min(n_samples, self._max_samples), fec=True)
        except Exception:
            self.errors += 1
            return self.conceal(n_samples)

    def conceal(self, n_samples: int) -> bytes:
        """Opus packet-loss concealment, extrapolated from the last decoded audio."""
        out = bytearray()
        # PLC works in multiples of 2.5 ms; produce whole last-frame steps and cut to length.
        step = max(self._last_samples, self.sample_rate_hz // 400)
        while len(out) < n_samples * 2:
            try:
                out += self._decode_into(b"", step, fec=False)
            except Exception:
                out += b"\x00\x00" * step
        return bytes(out[: n_samples * 2])


def make_encoder(
    codec: CodecName, sample_rate_hz: int, frame_ms: int, opus: OpusSettings | None = None
) -> Encoder:
    """Build the encoder for `codec`. For Opus, `frame_ms` overrides `opus.frame_ms`.

    Raises CodecUnavailable when libopus is missing, ValueError for an unsupported rate or codec.
    """
    if codec == "pcm":
        return PcmEncoder(sample_rate_hz, frame_ms)
    if codec == "opus":
        settings = (opus or OpusSettings()).model_copy(update={"frame_ms": frame_ms})
        return OpusEncoder(sample_rate_hz, settings)
    if codec == "g711a":
        return G711Encoder("a", sample_rate_hz, frame_ms)
    if codec == "g711u":
        return G711Encoder("u", sample_rate_hz, frame_ms)
    raise ValueError(f"unknown codec {codec!r}; expected one of pcm, opus, g711a, g711u")


class PacketEncoder:
    """Turns the mic's fixed frames into packets of `packet_ms` (Opus `frame_ms`: 10, 20, 40 or 60).

    The mic path delivers `frame_ms` frames; a 40 or 60 ms Opus packet needs 2 or 3 of them, so
    `push` collects frames and returns the packets completed by this one (usually none or one; two
    for 10 ms packets from a 20 ms frame). Longer packets mean fewer appends (less JSON, base64 and
    socket work per second) for 20-40 ms more latency on the first word. At the end of a turn call
    `flush()` before committing, so the last partial packet (padded with silence) is sent too.
    """

    def __init__(self, encoder: Encoder, frame_samples: int) -> None:
        self.encoder = encoder
        self.frame_samples = frame_samples
        self.packet_samples = encoder.frame_samples
        self._pending = bytearray()

    @property
    def pending_ms(self) -> float:
        """Audio waiting for the rest of its packet, in ms."""
        return len(self._pending) / 2 * 1000.0 / self.encoder.sample_rate_hz

    def push(self, frame: bytes) -> list[bytes]:
        """Add one mic frame; return the packets it completes. ValueError for a wrong frame length."""
        if len(frame) != self.frame_samples * 2:
            raise ValueError(
                f"PacketEncoder takes frames of {self.frame_samples} samples "
                f"({self.frame_samples * 2} bytes of s16le), got {len(frame)} bytes"
            )
        packet_bytes = self.packet_samples * 2
        if not self._pending and len(frame) == packet_bytes:
            return [self.encoder.encode(frame)]  # the common case: one frame, one packet, no copy
        self._pending += frame
        packets: list[bytes] = []
        while len(self._pending) >= packet_bytes:
            packets.append(self.encoder.encode(bytes(self._pending[:packet_bytes])))
            del self._pending[:packet_bytes]
        return packets

    def flush(self) -> list[bytes]:
        """The partial packet padded with silence (or nothing); the encoder keeps its state."""
        if not self._pending:
            return []
        padded = bytes(self._pending) + bytes(self.packet_samples * 2 - len(self._pending))
        self._pending.clear()
        return [self.encoder.encode(padded)]

    def reset(self) -> None:
        """Drop a partial packet (e.g. after an interrupt cleared the input buffer)."""
        self._pending.clear()


def make_packet_encoder(
    codec: CodecName, sample_rate_hz: int, frame_ms: int, opus: OpusSettings | None = None
) -> PacketEncoder:
    """The uplink encoder for mic frames of `frame_ms`: Opus packets honour `opus.frame_ms`, the
    other codecs send one packet per frame. Raises like `make_encoder`."""
    if codec == "opus":
        settings = opus or OpusSettings()
        encoder = make_encoder("opus", sample_rate_hz, settings.frame_ms, settings)
    else:
        encoder = make_encoder(codec, sample_rate_hz, frame_ms, opus)
    return PacketEncoder(encoder, sample_rate_hz * frame_ms // 1000)


def make_decoder(codec: CodecName, sample_rate_hz: int) -> Decoder:
    """Build the decoder for `codec`. Raises CodecUnavailable when libopus is missing."""
    if codec == "pcm":
        return PcmDecoder(sample_rate_hz)
    if codec == "opus":
        return OpusDecoder(sample_rate_hz)
    if codec == "g711a":
        return G711Decoder("a", sample_rate_hz)
    if codec == "g711u":
        return G711Decoder("u", sample_rate_hz)
    raise ValueError(f"unknown codec {codec!r}; expected one of pcm, opus, g711a, g711u")
