"""Signals against the real process: SIGHUP/SIGUSR1/SIGUSR2 storms from the first milliseconds of the
start (before the daemon has handlers) must not kill it; push-to-talk storms must not start empty turns.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.processes import spawn_run
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(60)

STORM = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def caught_mask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


async def test_a_signal_storm_from_the_first_milliseconds_does_not_kill_the_start(tmp_path: Path) -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        proc, notify = await spawn_run(emu.url, tmp_path)
        spawned = time.monotonic()
        # The remaining window is the interpreter's own start-up, before any of voiced's code runs.
        usr1_bit = 1 << (signal.SIGUSR1 - 1)
        while not caught_mask(proc.pid) & usr1_bit and time.monotonic() - spawned < 0.2:
            await asyncio.sleep(0.001)
        window_s = time.monotonic() - spawned
        sent = 0
        while time.monotonic() - spawned < 2.5 and proc.returncode is None:
            for sig in STORM:
                proc.send_signal(sig)
                sent += 1
            await asyncio.sleep(0.005)
        alive = proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        output = (await asyncio.wait_for(proc.stdout.read(), 20)).decode(errors="replace")
        code = await asyncio.wait_for(proc.wait(), 20)
        notify.close()
    assert alive, f"killed by the storm ({proc.returncode}): {output[-1500:]}"
    assert code == 0, output[-1500:]
    assert window_s < 0.2, f"voiced caught SIGUSR1 only {window_s * 1000:.0f} ms after the spawn"
    assert sent > 300
    assert "signals ignored during start-up" in output


async def test_a_push_to_talk_storm_starts_no_empty_turns(tmp_path: Path) -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        proc, notify = await spawn_run(emu.url, tmp_path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if b"READY=1" in notify.recv(4096):
                    break
            except BlockingIOError:
                await asyncio.sleep(0.02)
        await asyncio.sleep(4.0)  # the utterance's own turn
        before = sum(isinstance(r.event, ev.InputAudioBufferComplete) for r in emu.received)
        started = time.monotonic()
        for _ in range(250):
            proc.send_signal(signal.SIGUSR1)
            proc.send_signal(signal.SIGUSR2)
            await asyncio.sleep(1.3 / 250)
        assert time.monotonic() - started < 3.0
        await asyncio.sleep(1.5)
        after = sum(isinstance(r.event, ev.InputAudioBufferComplete) for r in emu.received)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
        notify.close()
    assert after - before <= 1, f"{after - before} turns from 1.3 s of button bouncing"
