"""A socket too slow for the microphone: a server that stops reading while the device talks.

The hostile server completes the handshake, then stops reading with a small receive buffer; the
daemon's kernel send buffer fills and its sends block while real-time microphone audio keeps coming.
The uplink queue must then drop the oldest audio (counted, and logged a few times per 10 s at most),
never an end of turn, and the send deadline must close the socket and open a new one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np
import pytest

from tests.agent.harness import daemon_config, running_daemon
from tests.reliability.conftest import CapturedLogs
from tests.reliability.hostile_server import HostileServer, serve_hostile
from tests.support.timing import until
from voiced.agent.daemon import Daemon
from voiced.config import VoicedConfig
from voiced.conversation.core import Counters
from voiced.devices.memory import MemorySource
from voiced.emulator import Emulator

pytestmark = pytest.mark.timeout(60)

TOO_SLOW = "the socket is too slow: oldest microphone audio dropped"
SEND_DEADLINE = "the socket did not take a frame in time; reconnecting"


def config_for(server: HostileServer, **overrides: Any) -> VoicedConfig:
    # PCM, not Opus: 43 kB/s of appends fill the send buffer in seconds. 200 ms of queue.
    settings = {"session.input_codec": "pcm", "agent.uplink_queue_ms": 200, **overrides}
    # The harness reads only the server's URL.
    return daemon_config(cast(Emulator, server), **settings)


def a_microphone() -> MemorySource:
    """Real-time audio for as long as the test runs (what is said does not matter here)."""
    return MemorySource(np.zeros(16000, dtype=np.int16), paced=True, after_end="silence")


def counters_of(daemon: Daemon) -> Counters:
    assert daemon.agent is not None
    return daemon.agent.counters


async def test_a_stalled_socket_drops_the_oldest_audio_logs_it_sparingly_and_is_reopened(
    logs: CapturedLogs,
) -> None:
    # The cloud decides turns: the device streams the microphone for as long as it is connected.
    async with serve_hostile(HostileServer("stall")) as server:
        config = config_for(server, **{"session.turn_detection": "server_vad", "agent.send_timeout_s": 2.0})
        async with running_daemon(config, a_microphone()) as h:
            started_s = time.monotonic()
            # The stalled connection is abandoned at the send deadline and a new one opened.
            await until(lambda: server.updates >= 2, 20.0, "a reconnection")
            elapsed_s = time.monotonic() - started_s
            assert not h.task.done(), f"the daemon ended with {h.task.result()}"
            dropped = counters_of(h.daemon).uplink_dropped_frames
            # The server read each session update and nothing else: the blocked sends never got through.
            assert server.received == ["chat.update", "chat.update"]
        assert h.task.result() == 0
    # 2 s of 20 ms frames blocked behind the send deadline, less the 200 ms queue: about 90.
    assert dropped >= 50, f"only {dropped} frames dropped"
    lines = logs.with_event(TOO_SLOW)
    assert lines, "the drops were never logged"
    windows = int(elapsed_s // 10) + 1
    assert len(lines) <= 4 * windows, f"{len(lines)} drop warnings in {elapsed_s:.1f} s for {dropped} drops"
    assert all(isinstance(line.get("dropped_frames"), int) for line in lines), lines
    assert len(logs.with_event(SEND_DEADLINE)) == 1


async def test_an_end_of_turn_queued_behind_dropped_audio_still_reaches_the_server() -> None:
    # A long stall, but shorter than the send deadline: the socket is slow, not dead.
    async with serve_hostile(HostileServer("stall")) as server:
        config = config_for(server, **{"agent.send_timeout_s": 30.0})
        async with running_daemon(config, a_microphone()) as h:
            h.daemon.push_to_talk(True)
            await until(lambda: counters_of(h.daemon).uplink_dropped_frames >= 10, 20.0, "audio drops")
            h.daemon.push_to_talk(False)  # the end of turn joins the queue behind the newest audio
            await asyncio.sleep(0.2)
            server.resume()
            await until(lambda: "input_audio_buffer.complete" in server.received, 10.0, "the end of turn")
            counters = counters_of(h.daemon)
            assert not h.task.done()
        assert h.task.result() == 0
    assert server.connections == 1, "a slow socket within the deadline is not reopened"
    appends = server.received.count("input_audio_buffer.append")
    assert appends == counters.appends_sent, "every frame the daemon sent arrived"
    assert server.received.count("input_audio_buffer.complete") == 1
    # The end of turn came after the turn's audio, which lost its oldest frames, not its end.
    assert server.received[-1] == "input_audio_buffer.complete"
    assert counters.uplink_dropped_frames >= 10
