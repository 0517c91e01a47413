"""Codecs: real libopus round trips, FEC/PLC, corrupt input, G.711 and PCM edge cases."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.audio.helpers import LIGHTS, read_wav, sine
from voiced.audio.codec import (
    CodecUnavailable,
    Decoder,
    Encoder,
    OpusDecoder,
    PcmDecoder,
    make_decoder,
    make_encoder,
)
from voiced.audio.settings import OpusSettings


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref64 = ref.astype(np.float64)
    err = ref64 - out.astype(np.float64)
    return float(10 * np.log10(np.sum(ref64**2) / max(np.sum(err**2), 1e-9)))


def best_aligned(ref: np.ndarray, out: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Align `out` to `ref` (the codec adds a look-ahead delay)."""
    best = 0
    best_score = -np.inf
    for lag in range(max_lag):
        n = min(ref.size, out.size - lag)
        score = float(np.dot(ref[:n].astype(np.float64), out[lag : lag + n].astype(np.float64)))
        if score > best_score:
            best, best_score = lag, score
    n = min(ref.size, out.size - best)
    return ref[:n], out[best : best + n]


def roundtrip(enc: Encoder, dec: Decoder, signal: np.ndarray) -> np.ndarray:
    frame = enc.frame_samples
    out = bytearray()
    for i in range(signal.size // frame):
        out += dec.decode(enc.encode(signal[i * frame : (i + 1) * frame].tobytes()))
    return np.frombuffer(bytes(out), dtype=np.int16)


def test_protocols_are_satisfied() -> None:
    for codec in ("pcm", "opus", "g711a", "g711u"):
        assert isinstance(make_encoder(codec, 16000, 20), Encoder)
        assert isinstance(make_decoder(codec, 16000), Decoder)


@pytest.mark.parametrize("rate_hz", [16000, 24000])
def test_opus_roundtrip_of_real_speech_has_good_snr(rate_hz: int) -> None:
    speech16, _ = read_wav(LIGHTS)
    from voiced.audio.resample import resample

    speech = resample(speech16, 16000, rate_hz)
    enc = make_encoder("opus", rate_hz, 20, OpusSettings(bitrate_bps=32000, complexity=9))
    dec = make_decoder("opus", rate_hz)
    out = roundtrip(enc, dec, speech)
    ref, got = best_aligned(speech, out, max_lag=rate_hz // 50)
    # Opus is perceptual, so waveform SNR is modest; 10 dB means the waveform survived intact.
    assert snr_db(ref, got) > 10.0
    assert dec.errors == 0


def test_opus_wrong_frame_length_is_a_clear_value_error() -> None:
    enc = make_encoder("opus", 16000, 20)
    with pytest.raises(ValueError, match="320 samples"):
        enc.encode(b"\x00" * 100)
    with pytest.raises(ValueError, match="640 bytes"):
        enc.encode(b"\x00" * 642)


@pytest.mark.parametrize("codec", ["pcm", "g711a", "g711u"])
def test_other_encoders_check_length_too(codec: str) -> None:
    enc = make_encoder(codec, 8000, 20)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        enc.encode(b"\x00" * 10)


def test_opus_fec_is_enabled_through_the_ctl() -> None:
    enc = make_encoder("opus", 16000, 20, OpusSettings(fec=True))
    assert enc.fec_enabled  # type: ignore[attr-defined]
    off = make_encoder("opus", 16000, 20, OpusSettings(fec=False))
    assert not off.fec_enabled  # type: ignore[attr-defined]


def test_opus_lost_packet_recovered_by_fec_beats_silence() -> None:
    rate = 16000
    signal = sine(300, 2.0, rate, 6000)
    enc = make_encoder("opus", rate, 20, OpusSettings(fec=True, expected_loss_pct=20, bitrate_bps=32000))
    packets = [enc.encode(signal[i * 320 : (i + 1) * 320].tobytes()) for i in range(signal.size // 320)]
    lost = 50
    dec = make_decoder("opus", rate)
    assert isinstance(dec, OpusDecoder)
    out = bytearray()
    for i, pkt in enumerate(packets):
        if i == lost:
            continue
        if i == lost + 1:
            out += dec.recover(pkt, 320)
        out += dec.decode(pkt)
    got = np.frombuffer(bytes(out), dtype=np.int16)
    assert got.size == signal.size
    recovered = got[lost * 320 : (lost + 1) * 320]
    # The recovered frame carries the tone, not silence.
    assert np.sqrt(np.mean(recovered.astype(np.float64) ** 2)) > 1000


def test_opus_plc_continues_the_signal() -> None:
    rate = 24000
    signal = sine(200, 0.5, rate, 6000)
    enc = make_encoder("opus", rate, 20)
    dec = make_decoder("opus", rate)
    for i in range(signal.size // 480):
        dec.decode(enc.encode(signal[i * 480 : (i + 1) * 480].tobytes()))
    plc = np.frombuffer(dec.conceal(480), dtype=np.int16)
    assert plc.size == 480
    assert np.abs(plc).max() > 500
    odd = dec.conceal(333)
    assert len(odd) == 666


def test_opus_corrupt_packet_is_counted_and_concealed_never_raised() -> None:
    dec = make_decoder("opus", 16000)
    enc = make_encoder("opus", 16000, 20)
    dec.decode(enc.encode(sine(300, 0.02, 16000).tobytes()))
    for bad in (b"", b"\xff\xff\xff\xff\xff", bytes(range(256)) * 8):
        out = dec.decode(bad)
        assert len(out) % 2 == 0 and len(out) > 0
    assert dec.errors == 3


@pytest.mark.parametrize("codec", ["g711a", "g711u"])
def test_g711_roundtrip(codec: str) -> None:
    signal = sine(440, 0.2, 8000, 10000)
    enc = make_encoder(codec, 8000, 20)  # type: ignore[arg-type]
    dec = make_decoder(codec, 8000)  # type: ignore[arg-type]
    packet = enc.encode(signal[:160].tobytes())
    assert len(packet) == 160
    out = roundtrip(enc, dec, signal)
    assert out.size == signal.size
    assert snr_db(signal, out) > 30.0
    # Full-scale values and zero survive the companding curve at the right sign.
    edge = np.array([32767, -32768, 0, 1, -1] + [0] * 155, dtype=np.int16)
    back = np.frombuffer(dec.decode(enc.encode(edge.tobytes())), dtype=np.int16)
    assert back[0] > 30000 and back[1] < -30000 and abs(int(back[2])) <= 16
    assert dec.conceal(10) == b"\x00" * 20


def test_pcm_decoder_carries_a_stray_byte_to_the_next_payload() -> None:
    pcm = sine(440, 0.05, 24000).tobytes()
    dec = make_decoder("pcm", 24000)
    assert isinstance(dec, PcmDecoder)
    out = dec.decode(pcm[:101]) + dec.decode(pcm[101:333]) + dec.decode(pcm[333:])
    assert out == pcm
    assert dec.carry_bytes == 0
    dec.decode(b"\x01")
    assert dec.carry_bytes == 1
    dec.reset()
    assert dec.decode(b"\x02\x00") == b"\x02\x00"


def test_opus_rejects_unsupported_rate() -> None:
    with pytest.raises(ValueError, match="Opus supports"):
        make_encoder("opus", 22050, 20)


def test_missing_libopus_raises_codec_unavailable_naming_the_apt_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes `import opuslib` fail, as it does without libopus0.
    monkeypatch.setitem(sys.modules, "opuslib", None)
    with pytest.raises(CodecUnavailable, match="libopus0"):
        make_decoder("opus", 16000)
    assert make_decoder("pcm", 16000).decode(b"\x01\x00") == b"\x01\x00"
