"""The ``[session]`` settings a device user sets (turn detection, ASR hints, emotion, prologue) reach
``chat.update`` as the protocol names them, are accepted by the emulator, and show in ``voiced check``."""

from __future__ import annotations

from typing import Any

import pytest

from voiced.agent.check import collect_checks, render
from voiced.config import load_config
from voiced.emulator import EmulatorSettings, serve_emulator
from voiced.errors import ConfigError
from voiced.protocol.events import ChatUpdate

FULL: dict[str, Any] = {
    "session.turn_detection": "semantic_vad",
    "session.semantic_vad_silence_threshold_ms": 350,
    "session.semantic_vad_unfinished_wait_ms": 700,
    "session.asr_hot_words": ["voiced", "Raspberry Pi"],
    "session.asr_context": "A kitchen speaker.",
    "session.user_language": "en",
    "session.emotion": "happy",
    "session.emotion_scale": 3.5,
    "session.need_play_prologue": True,
    "session.prologue_content": "Good morning!",
}


def test_session_settings_become_chat_update_fields() -> None:
    wire = load_config(None, environ={}, overrides=FULL).session_config().to_wire()
    assert wire["turn_detection"] == {
        "type": "semantic_vad",
        "semantic_vad_config": {"silence_threshold_ms": 350, "semantic_unfinished_wait_time_ms": 700},
    }
    assert wire["asr_config"] == {
        "hot_words": ["voiced", "Raspberry Pi"],
        "context": "A kitchen speaker.",
        "user_language": "en",
    }
    assert wire["output_audio"]["emotion_config"] == {"emotion": "happy", "emotion_scale": 3.5}
    assert wire["need_play_prologue"] is True and wire["prologue_content"] == "Good morning!"


def test_defaults_ask_for_none_of_them() -> None:
    wire = load_config(None, environ={}).session_config().to_wire()
    for key in ("asr_config", "need_play_prologue", "prologue_content"):
        assert key not in wire
    assert "emotion_config" not in wire["output_audio"]
    assert wire["turn_detection"] == {"type": "client_interrupt"}


def test_prologue_without_content_uses_the_bots_own() -> None:
    wire = (
        load_config(None, environ={}, overrides={"session.need_play_prologue": True})
        .session_config()
        .to_wire()
    )
    assert wire["need_play_prologue"] is True and "prologue_content" not in wire


@pytest.mark.parametrize(
    ("key", "value"),
    [("session.emotion", "grumpy"), ("session.emotion_scale", 9), ("session.turn_detection", "mind_reading")],
)
def test_bad_session_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, environ={}, overrides={key: value})


async def test_check_shows_the_session_row_and_the_emulator_accepts_it() -> None:
    async with serve_emulator(EmulatorSettings(port=0, ping_interval_s=0)) as emu:
        config = load_config(
            None,
            environ={},
            overrides={"coze.base_url": emu.url, "coze.bot_id": "7496", "coze.token": "t", **FULL},
        )
        results = await collect_checks(config, open_devices=False)
        sent = [r.event for r in emu.received if isinstance(r.event, ChatUpdate)]
    table = render(results)
    assert all(r.ok for r in results), table
    row = next(r for r in results if r.name == "session settings")
    assert "semantic_vad" in row.detail and "2 hot words" in row.detail
    assert "emotion happy x3.5" in row.detail and "'Good morning!'" in row.detail
    assert sent and sent[0].data.to_wire() == config.session_config().to_wire()
