"""`[audio.opus] frame_ms` is honoured: 20 ms mic frames become 10/20/40/60 ms Opus packets."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.helpers import LIGHTS, read_wav
from voiced.audio.codec import make_decoder, make_packet_encoder
from voiced.audio.settings import OpusSettings

MIC_FRAME = 320  # 20 ms at 16 kHz


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
def test_packets_have_the_chosen_duration_and_decode_to_the_whole_signal(frame_ms: int) -> None:
    speech, _ = read_wav(LIGHTS)
    speech = speech[: speech.size // MIC_FRAME * MIC_FRAME]
    packer = make_packet_encoder("opus", 16000, 20, OpusSettings(frame_ms=frame_ms))
    assert packer.packet_samples == 16 * frame_ms
    decoder = make_decoder("opus", 16000)
    packets: list[bytes] = []
    for i in range(0, speech.size, MIC_FRAME):
        got = packer.push(speech[i : i + MIC_FRAME].tobytes())
        # A packet is completed every frame_ms/20 frames (two per frame for 10 ms packets).
        assert len(got) in ((2,) if frame_ms == 10 else (0, 1))
        packets += got
    packets += packer.flush()
    assert packer.pending_ms == 0.0
    decoded = [decoder.decode(p) for p in packets]
    assert all(len(d) == frame_ms * 16 * 2 for d in decoded)
    total = sum(len(d) for d in decoded) // 2
    assert speech.size <= total < speech.size + frame_ms * 16
    assert decoder.errors == 0


def test_partial_packet_is_flushed_padded_and_reset_drops_it() -> None:
    packer = make_packet_encoder("opus", 16000, 20, OpusSettings(frame_ms=60))
    frame = (np.sin(np.arange(MIC_FRAME) / 5) * 8000).astype("<i2").tobytes()
    assert packer.push(frame) == [] and packer.pending_ms == pytest.approx(20.0)
    assert packer.push(frame) == [] and packer.pending_ms == pytest.approx(40.0)
    flushed = packer.flush()
    assert len(flushed) == 1 and len(make_decoder("opus", 16000).decode(flushed[0])) == 960 * 2
    assert packer.flush() == []
    packer.push(frame)
    packer.reset()
    assert packer.pending_ms == 0.0 and packer.flush() == []


@pytest.mark.parametrize("codec", ["pcm", "g711a", "g711u"])
def test_other_codecs_send_one_packet_per_frame(codec: str) -> None:
    packer = make_packet_encoder(codec, 16000, 20, OpusSettings(frame_ms=60))  # type: ignore[arg-type]
    frame = bytes(range(256)) * 2 + bytes(128)
    packets = packer.push(frame)
    assert len(packets) == 1
    assert packer.flush() == []


def test_wrong_frame_length_is_a_clear_value_error() -> None:
    packer = make_packet_encoder("opus", 16000, 20, OpusSettings(frame_ms=40))
    with pytest.raises(ValueError, match="640 bytes"):
        packer.push(bytes(100))
