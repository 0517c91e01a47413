"""The file/memory speakers while idle: no wake-ups, the same recorded timeline, the same grid.

Real asyncio time, short idle stretches; an idle speaker runs side by side with one that never idles
(`idle_after_ms=0`, every block on time) so the two recordings can be compared sample for sample.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from tests.audio.helpers import read_wav, sine
from tests.support.wakeups import thread_wakeups
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings
from voiced.conversation.playout import Playout
from voiced.devices.base import DeviceLost
from voiced.devices.memory import MemorySink, next_boundary_s
from voiced.devices.wav import WavSink

pytestmark = pytest.mark.timeout(30)

RATE_HZ = 16000
PERIOD_S = 0.02


class RecordingTap:
    """A playback tap that notes when each block was handed over, and its device time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []  # (loop time of the call, block's output time)

    def played(self, block: np.ndarray, sample_rate_hz: int, output_time_s: float) -> None:
        self.calls.append((asyncio.get_running_loop().time(), output_time_s))


async def _sleep_until(at_s: float) -> None:
    await asyncio.sleep(max(0.0, at_s - asyncio.get_running_loop().time()))


async def _mid_block() -> None:
    """Sleep to 7 ms after a boundary: far from both edges of a block."""
    loop = asyncio.get_running_loop()
    await _sleep_until(next_boundary_s(loop.time(), PERIOD_S) + 0.007)


def _first_audible_at_s(sink: MemorySink, after_s: float = 0.0) -> float:
    return next(at_s for at_s, block in sink.blocks if at_s > after_s and np.abs(block).max() > 1000)


async def test_an_idle_wav_speaker_records_the_same_file_as_one_that_never_idles(tmp_path: Path) -> None:
    idle = WavSink(tmp_path / "idle.wav", RATE_HZ, idle_after_ms=40)
    ticking = WavSink(tmp_path / "ticking.wav", RATE_HZ, idle_after_ms=0)
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    await idle.start()
    await ticking.start()
    for pause_s in (0.15, 0.5):
        await _mid_block()
        for sink in (idle, ticking):
            sink.write(sine(440, 0.1, RATE_HZ, 12000))
        await asyncio.sleep(0.1)
        for sink in (idle, ticking):
            sink.mark_idle()
        await asyncio.sleep(0.15)
        assert idle.idle and not ticking.idle
        played = idle.blocks_played
        await asyncio.sleep(pause_s)
        assert idle.blocks_played == played  # nothing woke to play the idle stretch...
        idle.check()
        assert idle.blocks_played >= played + round(pause_s / PERIOD_S) - 1  # ...but it is recorded
    await asyncio.sleep(0.2)
    stopped_s = loop.time()
    await idle.stop()
    await ticking.stop()
    heard, _ = read_wav(tmp_path / "idle.wav")
    reference, _ = read_wav(tmp_path / "ticking.wav")
    assert heard.size == idle.blocks_played * idle.block_samples
    assert heard.size / RATE_HZ == pytest.approx(stopped_s - started_s, abs=0.05)  # wall time
    assert abs(heard.size - reference.size) <= idle.block_samples  # stop() may land on a boundary
    n = min(heard.size, reference.size)
    assert np.array_equal(heard[:n], reference[:n])
    assert (np.abs(heard) > 1000).sum() >= 2 * 1500  # both tones are in it


async def test_a_write_after_an_idle_stretch_plays_at_the_next_boundary() -> None:
    idle = MemorySink(RATE_HZ, idle_after_ms=20)
    ticking = MemorySink(RATE_HZ, idle_after_ms=0)
    tap = RecordingTap()
    idle.tap = tap
    await idle.start()
    await ticking.start()
    await asyncio.sleep(0.3)
    assert idle.idle  # nothing was ever written
    assert tap.calls == []  # an idle speaker hands nothing to the tap, like a closed stream
    await _mid_block()
    written_s = asyncio.get_running_loop().time()
    for sink in (idle, ticking):
        sink.write(sine(440, 0.06, RATE_HZ, 12000))
    await asyncio.sleep(0.12)
    expected_s = next_boundary_s(written_s, PERIOD_S)
    assert _first_audible_at_s(idle) == pytest.approx(expected_s, abs=1e-6)
    assert _first_audible_at_s(ticking) == pytest.approx(expected_s, abs=1e-6)
    # The tap restarts with that block, handed over when its boundary came (not a block later).
    first_call_s, first_output_s = tap.calls[0]
    assert first_output_s == pytest.approx(expected_s, abs=1e-6)
    assert first_call_s - expected_s < 0.05  # handed over on its boundary (generous: a loaded loop)
    # The idle stretch is in the recording, every block at its own time.
    times = [at_s for at_s, _ in idle.blocks]
    assert times == pytest.approx([times[0] + i * PERIOD_S for i in range(len(times))], abs=1e-6)
    assert [at_s for at_s, _ in ticking.blocks][: len(times)] == pytest.approx(times, abs=1e-6)
    await idle.stop()
    await ticking.stop()


async def test_the_idle_grace_keeps_the_tap_fed_then_stops_it() -> None:
    sink = MemorySink(RATE_HZ, idle_after_ms=200)
    tap = RecordingTap()
    sink.tap = tap
    await sink.start()
    sink.write(sine(440, 0.04, RATE_HZ, 12000))
    await asyncio.sleep(0.06)
    sink.mark_idle()
    marked_s = asyncio.get_running_loop().time()
    await asyncio.sleep(0.1)
    assert not sink.idle  # still within the grace: the tap hears the silence after the sound
    await asyncio.sleep(0.3)
    assert sink.idle
    last_output_s = tap.calls[-1][1]
    assert marked_s + 0.2 - PERIOD_S <= last_output_s <= marked_s + 0.2 + 2 * PERIOD_S
    calls = len(tap.calls)
    await asyncio.sleep(0.1)
    assert len(tap.calls) == calls
    await sink.stop()


async def test_a_clear_due_on_a_boundary_silences_that_boundarys_block() -> None:
    sink = MemorySink(RATE_HZ, idle_after_ms=0)
    await sink.start()
    loop = asyncio.get_running_loop()
    # A task woken on the boundary (a microphone frame that flushes the output)...
    sink.write(sine(440, 0.18, RATE_HZ, 12000))
    task_boundary_s = next_boundary_s(loop.time() + 0.05, PERIOD_S)
    await _sleep_until(task_boundary_s)
    sink.clear(0)
    # ...and a plain callback due on a boundary.
    await _mid_block()
    sink.write(sine(440, 0.18, RATE_HZ, 12000))
    callback_boundary_s = next_boundary_s(loop.time() + 0.05, PERIOD_S)
    loop.call_at(callback_boundary_s, sink.clear, 0)
    await _sleep_until(callback_boundary_s + 0.1)
    blocks = {round(at_s / PERIOD_S): block for at_s, block in sink.blocks}
    for boundary_s in (task_boundary_s, callback_boundary_s):
        k = round(boundary_s / PERIOD_S)
        assert np.abs(blocks[k - 1]).max() > 1000  # before the flush: the tone
        assert not blocks[k].any() and not blocks[k + 1].any()  # from the flush's own boundary on
    await sink.stop()


async def test_a_write_due_on_a_boundary_plays_in_that_boundarys_block() -> None:
    # The pump tops the ring up on the boundary: the block played there already has it.
    sink = MemorySink(RATE_HZ, idle_after_ms=0)
    await sink.start()
    loop = asyncio.get_running_loop()
    boundary_s = next_boundary_s(loop.time() + 0.05, PERIOD_S)
    await _sleep_until(boundary_s)
    sink.write(sine(440, 0.02, RATE_HZ, 12000))
    await asyncio.sleep(0.06)
    assert _first_audible_at_s(sink) == pytest.approx(boundary_s, abs=1e-6)
    await sink.stop()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_a_speaker_that_cannot_record_is_lost_at_check() -> None:
    sink = WavSink("/dev/full", RATE_HZ, idle_after_ms=0)
    await sink.start()
    sink.write(sine(440, 0.1, RATE_HZ, 12000))
    with pytest.raises(DeviceLost, match="cannot write WAV /dev/full"):
        for _ in range(200):
            await asyncio.sleep(0.02)
            sink.check()
    played = sink.blocks_played
    sink.write(sine(440, 0.1, RATE_HZ, 12000))  # a lost speaker stays lost: no more blocks
    await asyncio.sleep(0.1)
    assert sink.blocks_played == played
    with pytest.raises(DeviceLost):
        sink.check()
    with pytest.raises(DeviceLost):
        await sink.stop()  # closing the file fails too: said once more, then released


async def test_stop_records_the_idle_stretch_and_a_restart_plays_again() -> None:
    sink = MemorySink(RATE_HZ, idle_after_ms=20)
    await sink.start()
    await asyncio.sleep(0.2)
    assert sink.idle and sink.blocks_played == 0
    await sink.stop()
    assert sink.blocks_played == pytest.approx(10, abs=2)
    assert not sink.idle
    await sink.start()
    sink.write(sine(440, 0.04, RATE_HZ, 12000))
    await asyncio.sleep(0.1)
    assert np.abs(sink.audio()).max() > 1000
    await sink.stop()


async def test_behind_the_playout_pump_an_idle_speaker_leaves_the_loop_asleep() -> None:
    sink = MemorySink(24000, idle_after_ms=100)
    playout = Playout(sink, JitterBuffer(24000, JitterSettings()))
    reply = sine(440, 0.3, 24000, 12000)
    await sink.start()
    async with asyncio.TaskGroup() as tg:
        pump = tg.create_task(playout.run())
        for chat_id in ("a", "b"):
            playout.push(chat_id, reply.tobytes(), playout.clock())
            playout.complete(chat_id)
            await playout.wait_idle(timeout_s=10)
            await asyncio.sleep(0.3)  # past the grace
            assert sink.idle
            wakeups_before = thread_wakeups()
            await asyncio.sleep(1.0)
            wakeups_per_s = thread_wakeups() - wakeups_before
            assert wakeups_per_s < 15, wakeups_per_s  # the pump's idle checks, not 50 blocks a second
        pump.cancel()
    await sink.stop()
    heard = sink.audio()
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert loud.size >= 2 * 0.9 * reply.size  # both replies were heard...
    first = int(np.flatnonzero(heard)[0]) - int(np.flatnonzero(reply)[0])
    assert np.array_equal(heard[first : first + reply.size], reply)  # ...the first bit-exact
    assert sink.underrun_samples == 0
    assert sink.blocks_played == len(sink.blocks)  # the idle stretches are in the recording
    assert sink.idle_stretches == 3  # from the start, and after each reply
