"""The playout pump over a real-time memory sink: start, level, interrupts, idle, device loss."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.audio.helpers import TRACES, load_trace, read_wav, sine
from tests.support.wakeups import thread_wakeups
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings
from voiced.conversation.playout import Playout
from voiced.devices.base import DeviceLost
from voiced.devices.memory import MemorySink, MemorySource, next_boundary_s

pytestmark = pytest.mark.timeout(60)
RATE = 24000


async def test_trace_bursts_play_out_bit_exact_in_real_time() -> None:
    """The real trace, pushed at its recorded times into a pump that feeds a real-time sink."""
    trace = load_trace()
    expected, _ = read_wav(TRACES / "websocket_chat_success.wav")
    sink = MemorySink(RATE)
    playout = Playout(sink, JitterBuffer(RATE, JitterSettings()))
    loop = asyncio.get_running_loop()
    await sink.start()
    async with asyncio.TaskGroup() as tg:
        pump = tg.create_task(playout.run())
        t0 = loop.time()
        for delta in trace.deltas:
            await asyncio.sleep(max(0.0, t0 + delta.at_s - loop.time()))
            playout.push(delta.chat_id, delta.pcm, playout.clock())
        await asyncio.sleep(max(0.0, t0 + trace.completed_at_s - loop.time()))
        playout.complete(trace.chat_id)
        assert playout.speaking and playout.level_dbfs is not None
        await playout.wait_idle(timeout_s=30)
        assert not playout.speaking and playout.level_dbfs is None
        pump.cancel()
    await sink.stop()
    heard = sink.audio()
    first = int(np.flatnonzero(heard)[0])
    assert np.array_equal(heard[first : first + expected.size], expected)
    assert playout.stats().jitter.underruns == 0
    assert sink.underrun_samples == 0 or sink.underrun_samples < RATE // 50  # at most a block of slack
    first_at = playout.first_sample_at(trace.chat_id)
    assert first_at is not None
    assert playout.played_ms(trace.chat_id) == pytest.approx(expected.size / 24.0)


async def test_interrupt_silences_within_one_block_and_discards_late_chunks() -> None:
    sink = MemorySink(RATE)
    playout = Playout(sink, JitterBuffer(RATE, JitterSettings()))
    await sink.start()
    async with asyncio.TaskGroup() as tg:
        pump = tg.create_task(playout.run())
        playout.push("a", sine(400, 3.0, RATE, 20000).tobytes(), playout.clock())
        await asyncio.sleep(0.5)
        played = playout.interrupt("a", fade_ms=10)
        assert 300 < played < 600
        t_cut = len(sink.blocks)
        playout.push("a", sine(400, 1.0, RATE).tobytes(), playout.clock())  # late chunk of the cancelled chat
        await asyncio.sleep(0.3)
        pump.cancel()
    await sink.stop()
    blocks = [b for _, b in sink.blocks]
    # At most one block (plus the one being played) after the interrupt carries the fade; then silence.
    after = np.concatenate(blocks[t_cut + 2 :])
    assert not after.any()
    assert playout.stats().jitter.discarded_chunks == 1
    steps = np.abs(np.diff(np.concatenate(blocks).astype(np.int32)))
    assert steps.max() < 2500  # 400 Hz at 20000 steps ~2100 at most: no click at the cut


async def test_playout_surfaces_device_loss() -> None:
    class DyingSink(MemorySink):
        dead = False

        def check(self) -> None:
            if self.dead:
                raise DeviceLost("gone")

    sink = DyingSink(RATE)
    playout = Playout(sink, JitterBuffer(RATE, JitterSettings()))
    await sink.start()
    task = asyncio.create_task(playout.run())
    await asyncio.sleep(0.05)
    sink.dead = True
    with pytest.raises(DeviceLost):
        await asyncio.wait_for(task, timeout=2)
    await sink.stop()


async def test_rates_must_match() -> None:
    with pytest.raises(ValueError, match="must match"):
        Playout(MemorySink(16000), JitterBuffer(24000, JitterSettings()))


async def test_cancelling_a_queued_reply_does_not_cut_the_one_playing() -> None:
    sink = MemorySink(RATE)
    playout = Playout(sink, JitterBuffer(RATE, JitterSettings()))
    await sink.start()
    async with asyncio.TaskGroup() as tg:
        pump = tg.create_task(playout.run())
        playout.push("a", sine(400, 0.6, RATE, 10000).tobytes(), playout.clock())
        playout.complete("a")
        playout.push("b", sine(400, 0.6, RATE, 10000).tobytes(), playout.clock())
        await asyncio.sleep(0.2)
        assert playout.interrupt("b") == 0.0
        await playout.wait_idle(timeout_s=5)
        pump.cancel()
    await sink.stop()
    assert playout.played_ms("a") == pytest.approx(600.0)
    heard = sink.audio()
    tone = sine(400, 0.6, RATE, 10000)
    first = int(np.flatnonzero(heard)[0]) - 1  # the tone starts with a zero sample
    assert np.array_equal(heard[first : first + tone.size], tone)
    assert not heard[first + tone.size :].any()


def test_boundaries_are_multiples_of_the_period_strictly_ahead() -> None:
    assert next_boundary_s(10.005, 0.02) == pytest.approx(10.02)
    # A timer run a hair before its boundary is on it: the next one is a whole period later.
    assert next_boundary_s(10.02 - 1e-9, 0.02) == pytest.approx(10.04)
    assert next_boundary_s(10.0195, 0.02) == pytest.approx(10.04)


async def test_a_playing_pump_shares_one_wake_up_per_block_with_in_memory_devices() -> None:
    """Microphone, speaker and pump on one 20 ms cadence: about 50 wake-ups a second while a reply
    plays (each on its own phase, with a pump checking every half block, they took about 150), and
    the reply is heard whole with no underrun."""
    reply = sine(300, 2.0, RATE, 12000)
    source = MemorySource(np.zeros(16000 * 3, dtype=np.int16), after_end="silence")
    sink = MemorySink(RATE)
    playout = Playout(sink, JitterBuffer(RATE, JitterSettings()))

    async def listen() -> None:
        while True:
            await source.read_frame()

    await source.start()
    await sink.start()
    async with asyncio.TaskGroup() as tg:
        pump = tg.create_task(playout.run())
        mic = tg.create_task(listen())
        playout.push("a", reply.tobytes(), playout.clock())
        playout.complete("a")
        await asyncio.sleep(0.3)
        wakeups_before = thread_wakeups()
        await asyncio.sleep(1.0)
        wakeups_per_s = thread_wakeups() - wakeups_before
        await playout.wait_idle(timeout_s=10)
        pump.cancel()
        mic.cancel()
    await sink.stop()
    assert wakeups_per_s < 90, wakeups_per_s
    heard = sink.audio()
    start = int(np.flatnonzero(heard)[0]) - int(np.flatnonzero(reply)[0])
    assert np.array_equal(heard[start : start + reply.size], reply)
    assert sink.underrun_samples == 0
    assert playout.stats().pump_lag_events == 0


async def test_a_barge_in_on_the_microphone_boundary_is_silent_within_the_fade() -> None:
    """A flush made while handling a microphone frame lands before the speaker's block on the same
    boundary: nothing of the reply is heard later than the fade after it."""
    source = MemorySource(np.zeros(16000 * 3, dtype=np.int16), after_end="silence")
    sink = MemorySink(RATE)
    playout = Playout(sink, JitterBuffer(RATE, JitterSettings()))
    loop = asyncio.get_running_loop()
    flushed_at: list[float] = []

    async def listen() -> None:
        for _ in range(40):  # 0.8 s of reply, then a barge-in on this frame
            await source.read_frame()
        playout.interrupt("a", fade_ms=10)
        flushed_at.append(loop.time())
        await asyncio.sleep(0.2)

    await source.start()
    await sink.start()
    async with asyncio.TaskGroup() as tg:
        pump = tg.create_task(playout.run())
        playout.push("a", sine(400, 3.0, RATE, 20000).tobytes(), playout.clock())
        await tg.create_task(listen())
        pump.cancel()
    await sink.stop()
    audible_until = max(at_s + (int(np.flatnonzero(b)[-1]) + 1) / RATE for at_s, b in sink.blocks if b.any())
    assert audible_until - flushed_at[0] <= 0.010 + 0.002
