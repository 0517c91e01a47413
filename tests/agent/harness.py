"""Running the real daemon in-process against the emulator, with in-memory devices."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.timing import patience_s
from voiced.agent.daemon import Daemon
from voiced.audio.frames import Int16Array
from voiced.config import VoicedConfig, load_config
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.base import AudioSink, AudioSource
from voiced.devices.memory import MemorySink, MemorySource
from voiced.emulator import Emulator, EmulatorSettings, load_scenario, serve_emulator

TOKEN = "pat_test_token_that_must_never_be_logged_0123456789"
BOT_ID = "7000000000000000001"
UTTERANCE = Path(__file__).resolve().parents[2] / "voiced" / "assets" / "utterance_16k.wav"


def utterance_pcm() -> Int16Array:
    with wave.open(str(UTTERANCE), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).copy()


def daemon_config(emu: Emulator | str, **overrides: Any) -> VoicedConfig:
    """The daemon's config against ``emu`` (an emulator, or the ``ws://`` URL of one)."""
    base: dict[str, Any] = {
        "coze.base_url": emu if isinstance(emu, str) else emu.url,
        "coze.bot_id": BOT_ID,
        "coze.token": TOKEN,
        "reconnect.initial_backoff_s": 0.02,
        "reconnect.max_backoff_s": 0.1,
        "reconnect.device_retry_s": 0.05,
        # Never the real port: tests run side by side.
        "control.port": 0,
    }
    base.update(overrides)
    return load_config(None, environ={}, overrides=base)


@dataclass
class Harness:
    daemon: Daemon
    task: asyncio.Task[int]
    source: MemorySource
    sinks: list[MemorySink] = field(default_factory=list)
    turns: list[TurnTimeline] = field(default_factory=list)

    @property
    def sink(self) -> MemorySink:
        return self.sinks[-1]

    async def next_turn(self, timeout_s: float = 30.0) -> TurnTimeline:
        timeout_s = patience_s(timeout_s)
        seen = len(self.turns)

        async def wait() -> TurnTimeline:
            while len(self.turns) <= seen:
                if self.task.done():
                    raise AssertionError(f"daemon ended with {self.task.result()}")
                await asyncio.sleep(0.02)
            return self.turns[seen]

        return await asyncio.wait_for(wait(), timeout_s)


@contextlib.asynccontextmanager
async def running_daemon(
    config: VoicedConfig, source: MemorySource, *, wait_ready: bool = True
) -> AsyncIterator[Harness]:
    """Run the daemon until the block ends; it must then stop cleanly with exit code 0."""
    sinks: list[MemorySink] = []

    async def source_factory() -> AudioSource:
        await source.start()
        return source

    async def sink_factory(rate_hz: int) -> AudioSink:
        sink = MemorySink(rate_hz)
        await sink.start()
        sinks.append(sink)
        return sink

    turns: list[TurnTimeline] = []
    daemon = Daemon(config, source_factory, sink_factory, install_signal_handlers=False, on_turn=turns.append)
    task = asyncio.create_task(daemon.run())
    harness = Harness(daemon, task, source, sinks, turns)
    try:
        if wait_ready:
            ready = asyncio.ensure_future(daemon.ready.wait())
            done, _ = await asyncio.wait(
                {ready, task}, timeout=patience_s(15.0), return_when="FIRST_COMPLETED"
            )
            if ready not in done:
                ready.cancel()
                raise AssertionError(f"daemon not ready: {task.result() if task.done() else 'timeout'}")
        yield harness
    finally:
        daemon.request_stop()
        if not task.done():
            await asyncio.wait_for(asyncio.shield(task), patience_s(10.0))


def rms(pcm: Int16Array) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


@contextlib.asynccontextmanager
async def talking_daemon(
    scenario: str = "demo",
    pcm: Int16Array | None = None,
    *,
    emulator: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    paced: bool = True,
) -> AsyncIterator[tuple[Emulator, Harness]]:
    """The usual set-up: the emulator with ``scenario`` (more EmulatorSettings in ``emulator``), the
    daemon configured for it (``config``: dotted keys), and a microphone that says ``pcm`` (the
    bundled utterance by default), then silence. Yields (emulator, harness)."""
    settings = EmulatorSettings(port=0, scenario=load_scenario(scenario), **(emulator or {}))
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm() if pcm is None else pcm, paced=paced, after_end="silence")
        async with running_daemon(daemon_config(emu, **(config or {})), source) as harness:
            yield emu, harness
