"""Soak: continuous turns against an accelerated emulator, with RSS, voiced's heap (tracemalloc) and
the task count sampled all along and asserted bounded. ~30 s in the normal run; ten minutes with
``--soak``."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.agent.harness import daemon_config, running_daemon, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.log import configure


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Samples:
    at_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    #: Bytes allocated by voiced (tracemalloc; the emulator and the fake speaker's recording excluded)
    #: between the first and the last sample.
    heap_growth: list[str] = field(default_factory=list)
    heap_growth_bytes: int = 0


_NOT_VOICED = [
    tracemalloc.Filter(False, pattern)
    for pattern in (
        "*/logging/*",
        "*/structlog/*",
        "*/tracemalloc.py",
        "*/voiced/emulator/*",
        "*/voiced/devices/memory.py",
        "*/tests/*",
    )
]


async def soak(
    duration_s: float, sample_every_s: float, logs: CapturedLogs, warm_up_s: float = 0.0
) -> tuple[Samples, int, int]:
    # The captured log is test memory that grows with every line (a StringIO keeps each written
    # string): warnings are what a soak must see, and the token scan still covers them.
    configure("warning", "json", stream=logs.stream)
    # Accelerated: thinking and the reply bursts run ten times faster than the real server's.
    settings = EmulatorSettings(
        port=0,
        scenario=load_scenario("long"),
        time_scale=0.1,
        ping_interval_s=1.0,
        faults=FaultSettings(stale_deltas_after_cancel=3, malformed_every_frames=97, unknown_every_frames=89),
    )
    samples = Samples()
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"session.turn_detection": "server_vad"})
        # Speech every 3.5 s, looping: each utterance talks over the long reply to the one before.
        source = MemorySource(utterance_pcm()[: 16000 * 7 // 2], paced=True, after_end="loop")
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None
            await h.next_turn(30)
            # Bounded test fakes (the in-memory speaker keeps 120 s of audio) and bounded windows
            # (latency samples) fill up first; a long soak measures from when they are full.
            await asyncio.sleep(warm_up_s)
            tracemalloc.start(1)
            first: tracemalloc.Snapshot | None = None
            first_queued_bytes = 0
            started = time.monotonic()
            while time.monotonic() - started < duration_s:
                await asyncio.sleep(sample_every_s)
                # The emulator's record of every received frame and the harness's list of every turn
                # summary are test bookkeeping, not voiced's.
                emu.received.clear()
                h.turns.clear()
                gc.collect()
                snapshot = tracemalloc.take_snapshot().filter_traces(_NOT_VOICED)
                # Reply audio waiting in the jitter buffer is bounded by audio.jitter.memory_cap_ms, and
                # a burst delivers a whole reply at once: count it apart from the growth.
                queued_bytes = int(agent.playout.jitter.stats().depth_ms * 24000 / 1000 * 2)
                if first is None:
                    first, first_queued_bytes = snapshot, queued_bytes
                else:
                    growth = snapshot.compare_to(first, "lineno")
                    samples.heap_growth_bytes = (
                        sum(stat.size_diff for stat in growth) - queued_bytes + first_queued_bytes
                    )
                    samples.heap_growth = [str(stat) for stat in growth[:6]]
                samples.at_s.append(time.monotonic() - started)
                samples.rss_mb.append(rss_mb())
                samples.tasks.append(len(asyncio.all_tasks()))
                samples.turns.append(agent.counters.turns)
            tracemalloc.stop()
            assert not h.task.done()
            errors = agent.counters.server_errors
            invalid = agent.counters.invalid_frames
    return samples, errors, invalid


def check(samples: Samples, rss_drift_mb: float, heap_growth_bytes: int) -> None:
    print(
        "soak samples (s, RSS MB, tasks, turns):",
        [
            (round(t), round(r, 1), n, k)
            for t, r, n, k in zip(samples.at_s, samples.rss_mb, samples.tasks, samples.turns, strict=True)
        ],
        f"voiced heap growth {samples.heap_growth_bytes} B",
        *samples.heap_growth,
        sep="\n  ",
    )
    assert samples.turns[-1] - samples.turns[0] >= 3, "the soak must keep turns going"
    # Task count: no growth. A sample may catch a turn in flight (tool calls, a reconnect, a close:
    # a spike of a few tasks); a leak raises the level every sample sits on, so the later half's
    # median is compared with the earlier half's.
    half = len(samples.tasks) // 2
    later, earlier = statistics.median(samples.tasks[half:]), statistics.median(samples.tasks[:half])
    assert later <= earlier + 1, samples.tasks
    # voiced's own allocations stay flat; RSS (which includes the emulator and the fake speaker's
    # recording, bounded at 120 s of audio) stays within a bound.
    assert samples.heap_growth_bytes < heap_growth_bytes, samples.heap_growth
    assert max(samples.rss_mb) - samples.rss_mb[0] < rss_drift_mb, samples.rss_mb


@pytest.mark.timeout(120)
async def test_short_soak_keeps_memory_and_tasks_bounded(logs: CapturedLogs) -> None:
    samples, _, invalid = await soak(duration_s=30.0, sample_every_s=2.0, logs=logs)
    check(samples, rss_drift_mb=15.0, heap_growth_bytes=300_000)
    assert invalid > 0  # the injected garbage was seen (and survived)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_ten_minute_soak_keeps_memory_and_tasks_bounded(logs: CapturedLogs) -> None:
    samples, _, _ = await soak(duration_s=600.0, sample_every_s=10.0, logs=logs, warm_up_s=150.0)
    check(samples, rss_drift_mb=20.0, heap_growth_bytes=500_000)
