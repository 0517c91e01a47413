"""Plugin faults while turns run: hanging, blocking and raising tools answer with an error output in
bounded time, the reply goes on, and the next turn works."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.agent.harness import daemon_config, running_daemon, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(120)

SCENARIO = """
name = "faulty tools"
description = "Every turn calls misbehaving device plugins."

[[turns]]
transcript = "hang"
reply = ["Hang said {hang} and block said {hang_sync}."]
tool_calls = [{ name = "hang", arguments = {} }, { name = "hang_sync", arguments = {} }]

[[turns]]
transcript = "boom"
reply = ["Boom said {boom} and {self_cancel} and the time is {current_time.spoken}."]
tool_calls = [
  { name = "boom", arguments = {} },
  { name = "self_cancel", arguments = {} },
  { name = "current_time", arguments = {} },
]

[[turns]]
transcript = "all good"
reply = ["The time is {current_time.spoken}."]
tool_calls = [{ name = "current_time", arguments = {} }]
"""

TOOLS = ["hang", "hang_sync", "boom", "self_cancel", "current_time"]


async def test_hanging_and_raising_plugins_never_stall_the_conversation(
    tmp_path: Path, logs: CapturedLogs
) -> None:
    scenario_path = tmp_path / "faulty.toml"
    scenario_path.write_text(SCENARIO)
    settings = EmulatorSettings(
        port=0, scenario=load_scenario(scenario_path), ping_interval_s=0, think_delay_ms=20.0
    )
    async with serve_emulator(settings) as emu:
        config = daemon_config(
            emu,
            **{"plugins.modules": ["tests.reliability.fault_plugins"], "plugins.enabled": TOOLS},
        )
        source = MemorySource(utterance_pcm(), paced=True, after_end="silence")
        async with running_daemon(config, source) as h:
            baseline_tasks = len(asyncio.all_tasks())
            turns = []
            for _ in range(3):
                turn = await h.next_turn(40)
                turns.append(turn)
                source.append(utterance_pcm())
            agent = h.daemon.agent
            assert agent is not None
            await asyncio.sleep(0.2)
            # Tool runs are the agent's tasks named "tools:<chat id>": none may be left behind.
            tool_tasks_left = [t for t in asyncio.all_tasks() if t.get_name().startswith("tools:")]
            tasks_after = len(asyncio.all_tasks())
    submits = [r.event for r in emu.received if isinstance(r.event, ev.ConversationChatSubmitToolOutputs)]
    assert [t.tool_calls for t in turns] == [
        ["hang", "hang_sync"],
        ["boom", "self_cancel", "current_time"],
        ["current_time"],
    ]
    # One submit per turn, each with an output for every call; the failures are error outputs.
    assert len(submits) == 3
    outputs = [[json.loads(o.output) for o in s.data.tool_outputs] for s in submits]
    assert "timed out" in outputs[0][0]["error"]
    assert "timed out" in outputs[0][1]["error"]
    assert "exploded" in outputs[1][0]["error"]
    assert "error" in outputs[1][1]
    assert "spoken" in outputs[1][2] and "spoken" in outputs[2][0]
    assert all(t.played_ms > 300 and not t.interrupted for t in turns)
    assert turns[2].reply.startswith("The time is ") and "unknown" not in turns[2].reply
    assert not tool_tasks_left
    assert tasks_after <= baseline_tasks + 1
    # Each fault was logged with a hint for the plugin's author.
    assert logs.with_event("timed out")
    assert logs.with_event("tool raised")
    assert logs.with_event("plugin raised CancelledError")
