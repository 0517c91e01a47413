"""Daemon behaviour beyond a plain turn: device loss, reload, half duplex, push-to-talk, volume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.agent.harness import BOT_ID, TOKEN, daemon_config, rms, running_daemon, utterance_pcm
from voiced.agent.daemon import Backoff, Daemon
from voiced.config import load_config
from voiced.devices.base import DeviceLost, MicFrame
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(90)


class UnpluggedOnce(MemorySource):
    """A microphone that is 'unplugged' once, after ``fail_after`` frames."""

    def __init__(self, fail_after: int) -> None:
        super().__init__(utterance_pcm(), paced=True, after_end="silence")
        self.fail_after = fail_after
        self.failed = False

    async def read_frames(self, max_frames: int) -> list[MicFrame]:
        if not self.failed and self.frames_delivered >= self.fail_after:
            self.failed = True
            raise DeviceLost("USB microphone unplugged")
        return await super().read_frames(max_frames)


async def test_a_lost_microphone_is_reopened_while_the_socket_stays_up() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("demo"))) as emu:
        source = UnpluggedOnce(fail_after=10)
        async with running_daemon(daemon_config(emu), source) as h:
            turn = await h.next_turn()
            sinks = len(h.sinks)
        connections = emu.connections_total
    assert source.failed
    assert sinks == 2  # both devices reopened together
    assert connections == 1  # the WebSocket stayed up
    assert turn.reply.startswith("It is")


def test_backoff_has_full_jitter_and_a_cap() -> None:
    import random

    backoff = Backoff(0.5, 30.0, random.Random(1))
    delays = [backoff.next_delay_s() for _ in range(12)]
    assert all(0 < d <= 30.0 for d in delays)
    assert max(delays[8:]) > 5.0  # grows ...
    assert len({round(d, 3) for d in delays}) == len(delays)  # ... with jitter
    backoff.reset()
    assert backoff.next_delay_s() <= 0.5


async def test_half_duplex_keeps_the_mic_deaf_while_the_device_talks() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("long"))) as emu:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        config = daemon_config(emu, **{"agent.half_duplex": True})
        async with running_daemon(config, source) as h:
            agent = h.daemon.agent
            assert agent is not None
            while not agent.playout.speaking:
                await asyncio.sleep(0.02)
            source.append(np.clip(utterance_pcm().astype(np.int32) * 3, -32768, 32767).astype(np.int16))
            await asyncio.sleep(4.0)
            interrupts = agent.counters.interrupts
            cancels = [r for r in emu.received if isinstance(r.event, ev.ConversationChatCancel)]
    assert interrupts == 0 and not cancels


async def test_push_to_talk_interrupts_and_release_ends_the_turn() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("long"))) as emu:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(daemon_config(emu), source) as h:
            agent = h.daemon.agent
            assert agent is not None
            while not agent.playout.speaking:
                await asyncio.sleep(0.02)
            agent.push_to_talk(True)
            # The interrupted turn is summarised at once.
            turn = h.turns[-1]
            await emu.wait_for(lambda e: isinstance(e, ev.ConversationChatCancel), 5)
            await asyncio.sleep(0.5)
            interrupts = agent.counters.interrupts
    assert turn.interrupted
    assert interrupts == 1  # the server's chat.canceled confirms, it does not interrupt again


async def test_sighup_reload_applies_session_settings_and_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "voiced.toml"
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        path.write_text(f'[coze]\nbase_url = "{emu.url}"\nbot_id = "{BOT_ID}"\ntoken = "{TOKEN}"\n')
        config = load_config(path, environ={})
        source = MemorySource(np.zeros(16000, dtype=np.int16), paced=True, after_end="silence")
        async with running_daemon(config, source) as h:
            h.daemon.config_path = path
            h.daemon.config_overrides = {"agent.barge_in": False}
            path.write_text(
                path.read_text()
                + '[session]\nvoice_id = "v42"\noutput_codec = "opus"\n[agent]\nvolume_pct = 40\n'
            )
            h.daemon.reload()
            await emu.wait_for(
                lambda e: (
                    isinstance(e, ev.ChatUpdate)
                    and e.data.output_audio is not None
                    and e.data.output_audio.voice_id == "v42"
                ),
                5,
            )
            path.write_text("[session]\nturn_detection = 'sometimes'\n")
            h.daemon.reload()  # invalid: logged, old config kept
            volume = h.daemon.agent.volume_pct if h.daemon.agent else None
            kept = h.daemon.config.session.voice_id
            codec = h.daemon.config.session.output_codec
            barge_in = h.daemon.config.agent.barge_in
    assert volume == 40
    assert kept == "v42"
    assert codec == "pcm"  # restart-only: the open decoder and sink stay PCM
    assert barge_in is False  # command-line overrides survive a reload


async def test_set_volume_plugin_scales_the_reply() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(daemon_config(emu), source) as h:
            loud_turn = await h.next_turn()
            loud = h.sink.audio().copy()
            agent = h.daemon.agent
            assert agent is not None and agent.runner is not None
            result = await agent.runner.call("set_volume", '{"volume_pct": 25}')
            assert result.ok
            before = len(h.sink.blocks)
            source.append(utterance_pcm())
            await h.next_turn()
            quiet = np.concatenate([b for _, b in list(h.sink.blocks)[before:]])
    assert loud_turn.played_ms > 300
    assert rms(quiet) < 0.45 * rms(loud[np.abs(loud) > 0]) or rms(quiet) < 0.45 * rms(loud)


async def test_daemon_without_devices_reports_and_exits(tmp_path: Path) -> None:
    from voiced.devices.base import PortAudioMissing
    from voiced.errors import EXIT_DEVICE

    async def source() -> MemorySource:
        raise PortAudioMissing("libportaudio.so.2: cannot open shared object file")

    async def sink(rate_hz: int) -> MemorySource:
        raise AssertionError("not reached")

    async with serve_emulator(EmulatorSettings(port=0)) as emu:
        daemon = Daemon(daemon_config(emu), source, sink, install_signal_handlers=False)  # type: ignore[arg-type]
        exit_code = await asyncio.wait_for(daemon.run(), 10)
    assert exit_code == EXIT_DEVICE


class ExplodingDecoder:
    """A decoder with a bug: the daemon must survive it."""

    codec = "pcm"
    sample_rate_hz = 24000
    errors = 0

    def decode(self, payload: bytes) -> bytes:
        raise ZeroDivisionError("a bug in a decoder")

    def conceal(self, n_samples: int) -> bytes:
        return bytes(2 * n_samples)


async def test_an_internal_error_costs_one_event_not_the_daemon() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(daemon_config(emu), source) as h:
            agent = h.daemon.agent
            assert agent is not None
            good = agent.decoder
            agent.decoder = ExplodingDecoder()
            await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferComplete), 20)
            async with asyncio.timeout(20):
                while agent.counters.internal_errors == 0:
                    await asyncio.sleep(0.02)
            agent.decoder = good
            source.append(utterance_pcm())
            turn = await h.next_turn()
            while turn.played_ms == 0:
                turn = await h.next_turn()
            errors = agent.counters.internal_errors
            connections = emu.connections_total
    assert errors > 0
    assert turn.played_ms > 300
    assert connections == 1
