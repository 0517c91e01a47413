"""SPSC ring (incl. a real producer/consumer thread pair) and streaming resampling."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audio.helpers import sine
from voiced.audio.frames import FrameAssembler
from voiced.audio.resample import StreamResampler, resample
from voiced.audio.ring import SpscRing


def test_ring_wraps_and_rejects_when_full() -> None:
    ring = SpscRing(100)
    assert ring.write(np.arange(70, dtype=np.int16)) == 70
    assert np.array_equal(ring.read(50), np.arange(50))
    assert ring.write(np.arange(100, 200, dtype=np.int16)) == 80
    assert ring.rejected_samples == 20
    out = np.empty(120, dtype=np.int16)
    assert ring.read_into(out) == 100
    assert np.array_equal(out[:100], np.concatenate([np.arange(50, 70), np.arange(100, 180)]))
    assert not out[100:].any() and ring.underrun_samples == 20


@given(st.lists(st.tuples(st.integers(0, 90), st.integers(0, 90)), max_size=60))
@settings(max_examples=100, deadline=None)
def test_ring_is_a_fifo_under_any_interleaving(ops: list[tuple[int, int]]) -> None:
    ring = SpscRing(64)
    sent = 0
    got: list[np.ndarray] = []
    expected: list[np.ndarray] = []
    for w, r in ops:
        block = (np.arange(w) + sent).astype(np.int16)
        n = ring.write(block)
        expected.append(block[:n])
        sent += w
        got.append(ring.read(r))
    got.append(ring.read(1000))
    empty = np.zeros(0, np.int16)
    assert np.array_equal(np.concatenate([*got, empty]), np.concatenate([*expected, empty]))


def test_ring_clear_fades_and_keeps_later_writes() -> None:
    ring = SpscRing(4800)
    ring.write(np.full(2000, 20000, dtype=np.int16))
    ring.read(100)
    ring.request_clear(fade_samples=240)
    ring.write(np.full(50, 7, dtype=np.int16))  # written after the request: must survive
    out = ring.read(1000)
    assert out.size == 240 + 50
    assert out[0] <= 20000 and out[239] < 200  # ramps down to ~0
    assert np.all(np.diff(out[:240].astype(np.int32)) <= 0)
    assert np.all(out[240:] == 7)
    assert ring.cleared_samples == 1900 - 240


def test_ring_spsc_threads_deliver_every_sample_in_order() -> None:
    ring = SpscRing(1000)
    total = 200_000
    received: list[np.ndarray] = []

    def consumer() -> None:
        count = 0
        while count < total:
            chunk = ring.read(256)
            count += chunk.size
            received.append(chunk)

    thread = threading.Thread(target=consumer)
    thread.start()
    data = (np.arange(total) % 30000).astype(np.int16)
    pos = 0
    while pos < total:
        pos += ring.write(data[pos : pos + 300])
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert np.array_equal(np.concatenate(received), data)


@pytest.mark.parametrize(("src", "dst"), [(24000, 48000), (24000, 44100), (16000, 48000), (48000, 16000)])
def test_stream_resampler_matches_one_shot_and_preserves_tone(src: int, dst: int) -> None:
    tone = sine(440, 1.0, src)
    rs = StreamResampler(src, dst)
    parts = [rs.process(tone[i : i + src // 50]) for i in range(0, tone.size, src // 50)]
    parts.append(rs.flush())
    streamed = np.concatenate(parts)
    assert abs(streamed.size - dst) <= 2
    whole = resample(tone, src, dst)
    n = min(whole.size, streamed.size)
    assert np.max(np.abs(whole[100 : n - 100].astype(np.int32) - streamed[100 : n - 100])) <= 2
    spectrum = np.abs(np.fft.rfft(streamed.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * dst / streamed.size
    assert peak_hz == pytest.approx(440, abs=2)


def test_downsampling_does_not_alias() -> None:
    # A 10 kHz tone at 48 kHz must vanish at 16 kHz (Nyquist 8 kHz), not fold back to 6 kHz.
    tone = sine(10000, 0.5, 48000, 20000)
    out = resample(tone, 48000, 16000)
    assert np.sqrt(np.mean(out[200:-200].astype(np.float64) ** 2)) < 50


def test_passthrough_is_identity() -> None:
    rs = StreamResampler(16000, 16000)
    x = sine(300, 0.02, 16000)
    assert rs.passthrough and rs.process(x) is x and rs.flush().size == 0


def test_frame_assembler_cuts_any_chunking_into_frames() -> None:
    data = sine(300, 0.1, 16000).tobytes()
    fa = FrameAssembler(320)
    frames = fa.push(data[:1001]) + fa.push(data[1001:2500]) + fa.push(data[2500:])
    assert all(len(f) == 640 for f in frames)
    assert b"".join(frames) == data[: len(frames) * 640]
    assert fa.flush(pad=True) == []  # 0.1 s is exactly 5 frames
    fa.push(b"\x01\x00" * 10)
    (last,) = fa.flush(pad=True)
    assert len(last) == 640 and last[:20] == b"\x01\x00" * 10
