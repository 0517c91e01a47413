"""Adaptive jitter buffer with a fake clock: bursts, paced jitter, loss, interrupts, fades, counters."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.helpers import TRACES, load_trace, read_wav, sine
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings

RATE = 24000
BLOCK = 480  # 20 ms at 24 kHz


def max_step(x: np.ndarray) -> int:
    return int(np.max(np.abs(np.diff(x.astype(np.int32))))) if x.size > 1 else 0


@pytest.mark.parametrize("name", ["websocket_chat_success", "websocket_chat_generate_audio_success"])
def test_trace_replay_is_bit_exact_with_zero_underruns(name: str) -> None:
    """The recorded server's real burst timing, pulled in real time: the output equals the WAV."""
    trace = load_trace(name)
    expected, rate = read_wav(TRACES / f"{name}.wav")
    assert rate == RATE
    jb = JitterBuffer(RATE, JitterSettings())
    out: list[np.ndarray] = []
    pending = list(trace.deltas)
    completed = False
    t = 0.0
    while pending or not completed or not jb.idle:
        while pending and pending[0].at_s <= t:
            d = pending.pop(0)
            jb.push(d.chat_id, d.pcm, t)
        if not completed and t >= trace.completed_at_s:
            jb.complete(trace.chat_id)
            completed = True
        out.append(jb.pull(BLOCK, t))
        t += 0.02
        assert t < 30.0
    played = np.concatenate(out)
    first = int(np.flatnonzero(played)[0])
    # Start-up: the first 225 ms delta alone exceeds the 40 ms target, so playback starts at once.
    assert first < BLOCK
    assert played[: expected.size].tobytes() == expected.tobytes()
    assert not played[expected.size :].any()
    stats = jb.stats()
    assert stats.underruns == 0 and stats.overflows == 0 and stats.discarded_chunks == 0
    assert jb.played_ms(trace.chat_id) == pytest.approx(expected.size / 24.0)
    # The burst arrives ahead of schedule, so it adds no delay beyond the minimum.
    assert stats.target_ms == pytest.approx(40.0)


def paced(  # noqa: PLR0917
    jb: JitterBuffer,
    signal: np.ndarray,
    packet_ms: int,
    jitter_ms: float,
    seed: int = 0,
    loss: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Send `signal` in paced packets with uniform jitter (and loss); pull 20 ms blocks in real time."""
    rng = np.random.default_rng(seed)
    n = RATE * packet_ms // 1000
    packets = [signal[i : i + n] for i in range(0, signal.size, n)]
    arrivals = sorted(
        (i * packet_ms / 1000 + rng.uniform(0, jitter_ms / 1000), i)
        for i in range(len(packets))
        if rng.random() >= loss
    )
    out: list[np.ndarray] = []
    t = 0.0
    k = 0
    end = duration_s or (len(packets) * packet_ms / 1000 + 1.0)
    while t < end:
        while k < len(arrivals) and arrivals[k][0] <= t:
            jb.push("c1", packets[arrivals[k][1]], t)
            k += 1
        if k == len(arrivals):
            jb.complete("c1")
        out.append(jb.pull(BLOCK, t))
        t += 0.02
    return np.concatenate(out), len(arrivals)


def test_paced_without_jitter_starts_at_min_delay_and_never_underruns() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=40))
    signal = sine(300, 2.0, RATE)
    out, _ = paced(jb, signal, 20, 0.0)
    first = int(np.flatnonzero(out)[0]) - 1  # the sine starts with a zero sample
    assert first / RATE * 1000 <= 60.0
    assert jb.stats().underruns == 0
    assert np.array_equal(out[first : first + signal.size], signal)


@pytest.mark.parametrize("jitter_ms", [30.0, 100.0])
def test_target_adapts_to_jitter_and_removes_underruns(jitter_ms: float) -> None:
    settings = JitterSettings(min_delay_ms=40, max_delay_ms=200)
    signal = sine(300, 6.0, RATE)
    jb = JitterBuffer(RATE, settings)
    _, _ = paced(jb, signal, 20, jitter_ms, seed=1)
    assert settings.min_delay_ms <= jb.target_ms <= settings.max_delay_ms
    assert jb.target_ms >= jitter_ms * 0.7
    # Once adapted, the steady state has far fewer underruns than a buffer pinned at the minimum.
    pinned = JitterBuffer(RATE, JitterSettings(min_delay_ms=0, max_delay_ms=0, paced_ceiling_ms=400))
    paced(pinned, signal, 20, jitter_ms, seed=1)
    assert jb.stats().underruns < max(1, pinned.stats().underruns)
    # All audio came out (lossless input): nothing dropped.
    assert jb.stats().overflows == 0


def test_loss_counts_underruns_and_gaps_are_faded() -> None:
    jb = JitterBuffer(RATE, JitterSettings())
    signal = sine(300, 3.0, RATE, 12000)
    out, delivered = paced(jb, signal, 60, 0.0, seed=2, loss=0.1)
    n_packets = -(-signal.size // (RATE * 60 // 1000))
    assert delivered < n_packets
    stats = jb.stats()
    assert stats.underruns >= 1
    assert stats.late_chunks >= 1
    # Fades in and out of every gap: no step larger than the sine's own slope (~1000 per sample) x2.
    assert max_step(out) < 2500


def test_burst_is_held_whole_up_to_memory_cap() -> None:
    jb = JitterBuffer(RATE, JitterSettings(memory_cap_ms=60000, paced_ceiling_ms=400))
    ten_s = sine(200, 10.0, RATE)
    for i in range(0, ten_s.size, 6000):  # 10 s of audio within 0.4 s
        jb.push("c", ten_s[i : i + 6000], i / ten_s.size * 0.4)
    assert jb.depth_ms == pytest.approx(10000.0)
    assert jb.stats().overflows == 0


def test_memory_cap_drops_oldest() -> None:
    jb = JitterBuffer(RATE, JitterSettings(memory_cap_ms=1000, paced_ceiling_ms=400))
    jb.push("c", sine(200, 3.0, RATE), 0.0)
    assert jb.depth_ms == pytest.approx(1000.0)
    stats = jb.stats()
    assert stats.overflows == 1 and stats.dropped_ms == pytest.approx(2000.0)


def test_paced_pileup_after_stall_is_trimmed_to_the_ceiling() -> None:
    settings = JitterSettings(paced_ceiling_ms=300, max_delay_ms=200)
    jb = JitterBuffer(RATE, settings)
    packet = sine(200, 0.02, RATE)
    t = 0.0
    for _ in range(50):  # 1 s paced
        jb.push("c", packet, t)
        jb.pull(BLOCK, t)
        t += 0.02
    # Playback stalls for 1 s (e.g. the device was blocked) while packets keep coming at real time.
    for _ in range(50):
        jb.push("c", packet, t)
        t += 0.02
    assert jb.depth_ms <= 300.0 + 1e-6
    assert jb.stats().overflows >= 1


def test_cancel_discards_late_chunks_and_reports_played_ms() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=0))
    jb.push("a", sine(300, 1.0, RATE, 12000), 0.0)
    for i in range(10):
        jb.pull(BLOCK, i * 0.02)
    assert jb.playing_chat_id == "a"
    played = jb.cancel("a", fade_ms=10)
    assert played == pytest.approx(200.0)
    assert jb.depth_ms == 0
    jb.push("a", sine(300, 0.5, RATE), 0.3)
    assert jb.depth_ms == 0
    assert jb.stats().discarded_chunks == 1
    assert jb.is_cancelled("a")
    # The next pull plays the 10 ms faded tail, then silence.
    tail = jb.pull(BLOCK, 0.3)
    assert np.abs(tail[:240]).max() > 0 and not tail[240:].any()
    assert jb.playing_chat_id is None and jb.idle
    # A new reply plays normally after the interrupt.
    jb.push("b", sine(300, 0.2, RATE), 0.4)
    jb.complete("b")
    assert jb.pull(BLOCK, 0.4).any()
    assert jb.playing_chat_id == "b"


def test_flush_fade_has_no_click() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=0, fade_ms=10))
    loud = sine(1000, 1.0, RATE, 30000)  # 1 kHz near full scale: the worst case for a click
    jb.push("a", loud, 0.0)
    before = np.concatenate([jb.pull(BLOCK, i * 0.02) for i in range(5)])
    natural = max_step(before)
    jb.flush()
    after = np.concatenate([jb.pull(BLOCK, 0.1 + i * 0.02) for i in range(3)])
    joined = np.concatenate([before, after])
    # The cut steps no more than the signal itself does; a hard cut would step by up to 30000.
    assert max_step(joined) <= natural
    assert jb.idle


def test_cancel_of_a_queued_chat_keeps_the_playing_one() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=0))
    jb.push("a", sine(300, 0.2, RATE), 0.0)
    jb.push("b", sine(300, 0.2, RATE), 0.0)
    jb.pull(BLOCK, 0.0)
    assert jb.cancel("b") == 0.0
    assert jb.depth_ms == pytest.approx(180.0)
    assert jb.playing_chat_id == "a"


def test_complete_starts_below_target_and_end_is_not_an_underrun() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=100))
    jb.push("a", sine(300, 0.03, RATE), 0.0)
    assert not jb.pull(BLOCK, 0.0).any()  # below the 100 ms target: waits
    jb.complete("a")
    assert jb.pull(BLOCK, 0.02).any()
    for i in range(5):
        jb.pull(BLOCK, 0.04 + i * 0.02)
    stats = jb.stats()
    assert stats.underruns == 0 and stats.underrun_ms == 0
    assert jb.idle and jb.playing_chat_id is None
    assert jb.first_pulled_at("a") == 0.02


def test_starving_reply_counts_one_underrun_and_its_duration() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=0))
    jb.push("a", sine(300, 0.04, RATE), 0.0)
    for i in range(5):
        jb.pull(BLOCK, i * 0.02)
    stats = jb.stats()
    assert stats.underruns == 1
    assert stats.underrun_ms == pytest.approx(60.0)
    jb.push("a", sine(300, 0.04, RATE), 0.1)
    assert jb.stats().late_chunks == 1


def test_pull_always_returns_exact_length() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=0))
    jb.push("a", sine(300, 0.013, RATE), 0.0)
    for n in (1, 7, 480, 1000):
        assert jb.pull(n, 0.0).size == n


def test_settings_reject_inverted_bounds() -> None:
    with pytest.raises(ValueError):
        JitterSettings(min_delay_ms=300, max_delay_ms=200)


def test_a_reply_that_is_never_completed_is_abandoned_not_starved_forever() -> None:
    jb = JitterBuffer(RATE, JitterSettings(min_delay_ms=0), abandon_after_ms=1000)
    jb.push("a", sine(300, 0.1, RATE), 0.0)
    t = 0.0
    while t < 0.9:
        jb.pull(BLOCK, t)
        t += 0.02
    assert jb.playing_chat_id == "a" and not jb.idle  # still waiting: could be a network hiccup
    while t < 1.2:
        jb.pull(BLOCK, t)
        t += 0.02
    assert jb.idle and jb.playing_chat_id is None
    stats = jb.stats()
    assert stats.abandoned == 1 and stats.underruns == 1
    assert stats.underrun_ms == pytest.approx(900.0, abs=40.0)
