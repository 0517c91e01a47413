"""The emulator the latency benchmark runs in a process of its own serves a daemon and goes away."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.emulator_process import EmulatorProcessError, emulator_process
from tests.agent.harness import daemon_config, running_daemon, utterance_pcm
from voiced.devices.memory import MemorySource


async def test_a_daemon_talks_to_the_emulator_process_and_the_process_ends_with_the_block() -> None:
    async with emulator_process("demo") as url:
        assert url.startswith("ws://127.0.0.1:")
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(daemon_config(url), source) as h:
            turn = await h.next_turn(30)
            assert turn.complete_sent_s is not None, "the turn's audio did not reach the emulator"
            assert turn.played_ms > 0, "no reply was played"
        port = int(url.rsplit(":", 1)[1])
    # The child is gone with the block: nothing listens on its port any more.
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


async def test_a_child_that_cannot_start_is_one_clear_error() -> None:
    with pytest.raises(EmulatorProcessError, match="did not start"):
        async with emulator_process("no-such-scenario"):
            pytest.fail("the block must not run")
