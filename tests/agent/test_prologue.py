"""The prologue end to end: with ``need_play_prologue`` the daemon plays the bot's opening line as soon
as the session starts, logs it as a turn without user speech, and does not greet again after a reconnect."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.agent.harness import daemon_config, running_daemon
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.emulator.scenarios import DEFAULT_PROLOGUE
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(90)


def silence() -> MemorySource:
    return MemorySource(np.zeros(16000, dtype=np.int16), paced=True, after_end="silence")


async def test_the_prologue_is_heard_at_session_start_as_a_turn_without_speech() -> None:
    settings = EmulatorSettings(port=0, token=None, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu:
        config = daemon_config(emu, **{"session.need_play_prologue": True})
        async with running_daemon(config, silence()) as h:
            turn = await h.next_turn()
            heard = h.sink.audio()
    assert turn.reply == DEFAULT_PROLOGUE
    assert turn.heard == "" and turn.speech_start_s is None and turn.speech_end_s is None
    assert turn.chat_id is not None and not turn.interrupted
    assert turn.played_ms > 1000, "seconds of greeting were played"
    assert int((np.abs(heard) > 1000).sum()) > 0.5 * 24000, "real speech came out of the speaker"
    updates = [r.event for r in emu.received if isinstance(r.event, ev.ChatUpdate)]
    assert updates[0].data.need_play_prologue is True
    # Nothing was said to the device: no user turn was sent.
    assert not [r for r in emu.received if isinstance(r.event, ev.InputAudioBufferComplete)]


async def test_a_custom_prologue_once_per_conversation() -> None:
    settings = EmulatorSettings(port=0, token=None, scenario=load_scenario("echo"), time_scale=0.2)
    async with serve_emulator(settings) as emu:
        config = daemon_config(
            emu, **{"session.need_play_prologue": True, "session.prologue_content": "Good morning!"}
        )
        async with running_daemon(config, silence()) as h:
            turn = await h.next_turn()
            await emu.drop_all()
            async with asyncio.timeout(10):
                while len([r for r in emu.received if isinstance(r.event, ev.ChatUpdate)]) < 2:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            turns = list(h.turns)
    assert turn.reply == "Good morning!"
    updates = [r.event for r in emu.received if isinstance(r.event, ev.ChatUpdate)]
    assert len(updates) == 2
    assert updates[0].data.prologue_content == "Good morning!"
    assert not updates[1].data.need_play_prologue, "a reconnect resumes the conversation, no greeting"
    assert updates[1].data.chat_config is not None and updates[1].data.chat_config.conversation_id
    assert [t.reply for t in turns] == ["Good morning!"]

