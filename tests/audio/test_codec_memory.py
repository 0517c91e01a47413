"""Decoding a long reply holds no memory per packet: RSS stays flat through a conversation."""

from __future__ import annotations

import gc
import tracemalloc

from tests.audio.helpers import sine
from voiced.audio.codec import OpusDecoder, OpusEncoder
from voiced.audio.settings import OpusSettings

_RATE_HZ = 24000
_FRAME = _RATE_HZ // 50


def test_decoding_thousands_of_packets_keeps_no_garbage() -> None:
    """20 ms packets decoded, FEC-recovered and concealed, with the cyclic collector off as between
    its rare full passes: what decoding leaves behind must not grow with the packet count."""
    encoder = OpusEncoder(_RATE_HZ, OpusSettings())
    pcm = sine(440.0, 0.02, _RATE_HZ).tobytes()
    packet = encoder.encode(pcm)
    decoder = OpusDecoder(_RATE_HZ)
    decoder.decode(packet)
    gc.disable()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(500):
            assert len(decoder.decode(packet)) == _FRAME * 2
            assert len(decoder.recover(packet, _FRAME)) == _FRAME * 2
            assert len(decoder.conceal(_FRAME)) == _FRAME * 2
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert after - before < 256 * 1024, f"{(after - before) / 1024:.0f} KiB held after 1500 decodes"
    assert decoder.errors == 0
