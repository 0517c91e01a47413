"""The jitter buffer on realistic networks: delay spikes with bursts, a 4G-like link, paced jitter.

The adaptive buffer is compared with a naive FIFO player (what the official clients do) on the same
arrivals, through the benchmark's simulator, so the benchmark's table and these assertions agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.audio_bench import Arrivals, cellular_arrivals, paced_arrivals, simulate, spike_arrivals
from tests.audio.helpers import sine
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings

RATE = 24000
BLOCK = 480


def _profiles() -> dict[str, list[Arrivals]]:
    seeds = (1, 2)
    return {
        "spikes 200-500 ms": [spike_arrivals(20.0, (200.0, 500.0), (2.0, 6.0), s) for s in seeds],
        "spikes 200-300 ms": [spike_arrivals(20.0, (200.0, 300.0), (3.0, 5.0), s) for s in seeds],
        "4G-like": [cellular_arrivals(20.0, s) for s in seeds],
        "jitter 100 ms": [paced_arrivals(20.0, 20, 100.0, 0.0, s) for s in seeds],
        "jitter 30 ms": [paced_arrivals(20.0, 20, 30.0, 0.0, s) for s in seeds],
    }


@pytest.mark.parametrize("profile", list(_profiles()))
def test_never_more_underrun_than_a_fifo_and_latency_within_the_start_cushion(profile: str) -> None:
    for arrivals in _profiles()[profile]:
        adaptive = simulate(arrivals, adaptive=True)
        fifo = simulate(arrivals, adaptive=False)
        assert adaptive.underrun_ms <= fifo.underrun_ms + 1e-6
        assert adaptive.underruns <= fifo.underruns
        # A FIFO plays every sample as early as possible, so no buffer can add less latency without
        # dropping audio; the adaptive one adds at most its start-up target (40 ms by default).
        assert adaptive.mean_latency_ms <= fifo.mean_latency_ms + JitterSettings().min_delay_ms + 1.0


def test_stall_burst_is_kept_not_trimmed() -> None:
    """After a 600 ms network stall the burst is what the next stall needs: none of it is dropped."""
    jb = JitterBuffer(RATE, JitterSettings(paced_ceiling_ms=400, max_delay_ms=200))
    packet = sine(200, 0.02, RATE)
    t = 0.0
    for _ in range(50):
        jb.push("c", packet, t + 0.02)
        jb.pull(BLOCK, t + 0.02)
        t += 0.02
    stall_end = t + 0.6
    for _ in range(30):  # the player keeps pulling through the stall
        jb.pull(BLOCK, t + 0.02)
        t += 0.02
    for _ in range(30):  # everything sent during the stall is delivered when it ends
        jb.push("c", packet, stall_end)
    assert jb.stats().dropped_ms == 0.0
    assert jb.depth_ms >= 500.0
    assert jb.recent_stall_ms >= 550.0


def test_resumes_as_soon_as_late_audio_arrives() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=100, max_delay_ms=200))
    jb.push("c", sine(300, 0.2, RATE), 0.0)
    played = [jb.pull(BLOCK, i * 0.02) for i in range(15)]  # 200 ms of audio, then dry
    assert jb.stats().underruns == 1
    jb.push("c", sine(300, 0.02, RATE), 0.3)  # one late 20 ms packet, below the 100 ms target
    out = jb.pull(BLOCK, 0.3)
    assert np.count_nonzero(out) > BLOCK // 2  # played at once, not held back for the target
    assert any(p.any() for p in played)
