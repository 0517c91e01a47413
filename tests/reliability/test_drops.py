"""A hundred connection drops at random points of turns: a hundred recoveries, no task leaked, memory flat."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import tracemalloc
from collections import Counter

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from tests.agent.harness import daemon_config, running_daemon, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from voiced.agent.agent import Agent
from voiced.conversation.states import TurnState
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.log import configure

pytestmark = pytest.mark.timeout(170)

DROPS = 100
WARM_UP_DROPS = 30
REPLY_TEXT = "Please say this back to me slowly, one word after another, until the very end."


def phases_now(agent: Agent) -> list[str]:
    """Where in a turn a drop lands (the drops must cover the whole turn, not just idle time)."""
    if not agent.connected:
        return ["configuring"]
    found = []
    if agent.state in (TurnState.USER_TURN, TurnState.PUSH_TO_TALK):
        found.append("user speaking")
    if agent.playout.speaking:
        found.append("reply playing")
    elif agent.session.current_chat_id is not None:
        found.append("reply pending")
    return found or ["idle"]


async def _until(predicate: object, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_a_hundred_drops_a_hundred_recoveries_no_leaks(logs: CapturedLogs) -> None:
    rng = random.Random(6)
    settings = EmulatorSettings(
        port=0, scenario=load_scenario("echo"), ping_interval_s=0, think_delay_ms=20.0, time_scale=0.3
    )
    # Short bursts of speech with short pauses: a user turn starts about every second.
    speech = utterance_pcm()[int(0.6 * 16000) : int(1.4 * 16000)]
    mic = np.concatenate([speech, np.zeros(int(0.35 * 16000), dtype=np.int16)])
    # Debug logging of every frame would only measure the log buffer: info is enough here.
    configure("info", "json", stream=logs.stream)
    async with serve_emulator(settings) as emu:
        config = daemon_config(
            emu,
            **{
                "reconnect.initial_backoff_s": 0.01,
                "reconnect.max_backoff_s": 0.03,
                "audio.vad.silence_ms": 250,
            },
        )
        async with running_daemon(config, MemorySource(mic, paced=True, after_end="loop")) as h:
            agent = h.daemon.agent
            assert agent is not None
            await h.next_turn(30)
            phases: Counter[str] = Counter()
            recovered = 0
            tasks_before = 0
            snapshot_before: tracemalloc.Snapshot | None = None
            for index in range(DROPS):
                if index == WARM_UP_DROPS:
                    # Caches are warm: from here on nothing may accumulate.
                    emu.received.clear()
                    gc.collect()
                    tasks_before = len(asyncio.all_tasks())
                    tracemalloc.start(1)
                    snapshot_before = tracemalloc.take_snapshot()
                ws = h.daemon.ws
                if rng.random() < 0.35 and ws is not None and agent.connected:
                    # A typed turn too: its reply is pending or playing when the drop comes.
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(agent.session.send_text(REPLY_TEXT))
                await asyncio.sleep(rng.uniform(0.0, 0.35))
                before = emu.connections_total
                phases.update(phases_now(agent))
                await emu.drop_all()
                await _until(lambda before=before: emu.connections_total > before and agent.connected, 10)
                recovered += 1
            # Let the last reply finish so that nothing is in flight, then compare.
            await _until(lambda: not agent.playout.speaking and agent.session.current_chat_id is None, 20)
            emu.received.clear()
            gc.collect()
            snapshot_after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            tasks_after = len(asyncio.all_tasks())
            opened = h.daemon.connections_opened
            assert not h.task.done()
    assert recovered == DROPS
    assert opened >= DROPS + 1
    # The drops hit every part of a turn, not just idle time. Where each drop lands depends on the
    # machine's timing; a handful in each phase is what proves coverage.
    assert phases["reply playing"] + phases["reply pending"] >= 5, phases
    assert phases["user speaking"] >= 3, phases
    assert tasks_after <= tasks_before, (tasks_before, tasks_after)
    # Bounded buffers: the last 70 reconnects leave at most allocator noise behind (the test's own log
    # capture, tracemalloc's bookkeeping and the fake speaker's recording aside).
    assert snapshot_before is not None
    ignore = [
        tracemalloc.Filter(False, pattern)
        for pattern in ("*/logging/*", "*/structlog/*", "*/tracemalloc.py", "*/voiced/devices/memory.py")
    ]
    growth = snapshot_after.filter_traces(ignore).compare_to(snapshot_before.filter_traces(ignore), "lineno")
    grown = sum(stat.size_diff for stat in growth)
    assert grown < 500_000, [str(stat) for stat in growth[:8]]
