"""Output codecs end to end, and a barge-in while a tool runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.agent import slow_plugins
from tests.agent.harness import daemon_config, rms, running_daemon, utterance_pcm
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(
    ("codec", "extra", "rate_hz"),
    [
        ("opus", {"session.output_opus_frame_ms": 60, "session.output_sample_rate_hz": 16000}, 16000),
        ("opus", {"session.output_opus_frame_ms": 20}, 24000),
        ("g711a", {}, 8000),
        ("g711u", {}, 8000),
    ],
)
async def test_reply_in_each_output_codec_is_heard(
    codec: str, extra: dict[str, object], rate_hz: int
) -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        config = daemon_config(emu, **{"session.output_codec": codec, **extra})
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(config, source) as h:
            turn = await h.next_turn()
            sink = h.sink
            heard = sink.audio()
            counters = h.daemon.agent.counters  # type: ignore[union-attr]
    assert sink.sample_rate_hz == rate_hz
    assert turn.played_ms > 500
    assert rms(heard) > 100
    assert counters.invalid_frames == 0


async def test_barge_in_during_a_slow_tool_cancels_it_and_submits_nothing(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.toml"
    scenario.write_text(
        'description = "a slow tool"\n'
        "[[turns]]\n"
        'transcript = "Look it up."\n'
        'reply = ["The answer is {slow_lookup}."]\n'
        'tool_calls = [{ name = "slow_lookup", arguments = { query = "x" } }]\n'
        "[fallback]\n"
        'transcript = "Never mind."\n'
        'reply = ["Okay."]\n'
    )
    slow_plugins.STARTED.clear()
    slow_plugins.CANCELLED.clear()
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario(str(scenario)))) as emu:
        config = daemon_config(
            emu, **{"plugins.modules": ["tests.agent.slow_plugins"], "plugins.enabled": ["slow_lookup"]}
        )
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(config, source):
            async with asyncio.timeout(20):
                while not slow_plugins.STARTED:
                    await asyncio.sleep(0.02)
            # The user speaks again while the tool runs: the chat is abandoned.
            source.append(np.clip(utterance_pcm().astype(np.int32) * 2, -32768, 32767).astype(np.int16))
            await emu.wait_for(lambda e: isinstance(e, ev.ConversationChatCancel), 15)
            await asyncio.sleep(0.5)
            submits = [r for r in emu.received if isinstance(r.event, ev.ConversationChatSubmitToolOutputs)]
    assert slow_plugins.CANCELLED == ["x"]
    assert submits == []
