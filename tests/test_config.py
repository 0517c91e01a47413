"""Configuration: precedence, clear errors naming file and key, token handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voiced.config import VoicedConfig, env_overrides, load_config
from voiced.errors import ConfigError

SAMPLE = Path(__file__).resolve().parent.parent / "config" / "voiced.toml"


def test_sample_config_is_valid_and_shows_every_key() -> None:
    config = load_config(SAMPLE, environ={})
    # The sample states the defaults, except that a speaker listens for its wake word.
    assert config.listen.mode == "wake_word"
    always = config.listen.model_copy(update={"mode": "always"})
    assert config.model_copy(update={"listen": always}) == VoicedConfig()
    text = SAMPLE.read_text()

    def keys(model: object, prefix: str = "") -> list[str]:
        from pydantic import BaseModel

        found: list[str] = []
        assert isinstance(model, BaseModel)
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                found += keys(value, f"{prefix}{name}.")
            else:
                found.append(f"{prefix}{name}")
        return found

    for dotted in keys(VoicedConfig()):
        leaf = dotted.rsplit(".", 1)[-1]
        if dotted in ("plugins.tools",):
            continue
        assert f"{leaf} =" in text or f"# {leaf} =" in text, f"{dotted} missing from config/voiced.toml"


def test_precedence_file_then_environment_then_command_line(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(
        '[session]\nturn_detection = "server_vad"\noutput_sample_rate_hz = 16000\n[agent]\nvolume_pct = 50\n'
    )
    env = {"VOICED_AGENT__VOLUME_PCT": "70", "VOICED_SESSION__OUTPUT_SAMPLE_RATE_HZ": "48000"}
    config = load_config(path, environ=env, overrides={"agent.volume_pct": 90})
    assert config.session.turn_detection == "server_vad"  # file
    assert config.session.output_sample_rate_hz == 48000  # env beats file
    assert config.agent.volume_pct == 90  # command line beats env


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[session]\nturn_detecton = 'server_vad'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert str(path) in message and "session.turn_detecton" in message and "unknown key" in message


def test_wrong_value_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[audio.vad]\naggressiveness = 7\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: audio\.vad\.aggressiveness"):
        load_config(path, environ={})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[coze\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_environment_error_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"VOICED_\* environment: agent\.volume_pct"):
        load_config(None, environ={"VOICED_AGENT__VOLUME_PCT": "loud"})


def test_env_overrides_parse_values() -> None:
    assert env_overrides(
        {"VOICED_AGENT__BARGE_IN": "false", "VOICED_COZE__BOT_ID": "7496", "OTHER": "x"}
    ) == {
        "agent": {"barge_in": False},
        "coze": {"bot_id": 7496},
    }
    config = load_config(None, environ={"VOICED_COZE__BOT_ID": "7496347519799787557"})
    assert config.coze.bot_id == "7496347519799787557"


def test_token_sources_and_secrecy(tmp_path: Path) -> None:
    secret = "pat_supersecret_value_123"
    config = load_config(None, environ={"COZE_API_TOKEN": secret})
    assert config.coze.token is not None and config.coze.token.get_secret_value() == secret
    assert secret not in repr(config) and secret not in str(config.model_dump())

    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    os.chmod(token_file, 0o644)
    warnings: list[str] = []
    config = load_config(None, environ={}, overrides={"coze.token_file": str(token_file)}, warn=warnings)
    assert config.coze.token is not None and config.coze.token.get_secret_value() == secret
    assert any("chmod 600" in w for w in warnings)
    os.chmod(token_file, 0o600)
    warnings.clear()
    load_config(None, environ={}, overrides={"coze.token_file": str(token_file)}, warn=warnings)
    assert warnings == []

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "coze-token").write_text("from-credential")
    config = load_config(
        None,
        environ={"CREDENTIALS_DIRECTORY": str(creds), "COZE_API_TOKEN": "env"},
        overrides={"coze.token_file": str(token_file)},
    )
    assert config.coze.token is not None and config.coze.token.get_secret_value() == "from-credential"
    config = load_config(None, environ={}, overrides={"coze.token": "  spaced-token\n"})
    assert config.coze.token is not None and config.coze.token.get_secret_value() == "spaced-token"


def test_bad_session_extra_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"session\.extra"):
        load_config(None, environ={}, overrides={"session.extra": {"input_audio": {"sample_rate": "fast"}}})


def test_insecure_ws_refused_to_remote_hosts() -> None:
    with pytest.raises(ConfigError, match="unencrypted"):
        load_config(None, environ={}, overrides={"coze.base_url": "ws://192.0.2.1:8790"})
    ok = load_config(None, environ={}, overrides={"coze.base_url": "ws://127.0.0.1:8790"})
    assert ok.coze.chat_url == "ws://127.0.0.1:8790/v1/chat"
    allowed = load_config(
        None, environ={}, overrides={"coze.base_url": "ws://192.0.2.1:8790", "coze.allow_insecure_ws": True}
    )
    assert allowed.coze.base_url.startswith("ws://")
    assert load_config(
        None, environ={}, overrides={"coze.base_url": "wss://ws.coze.com"}
    ).coze.base_url.endswith(".com")


def test_session_settings_become_chat_update() -> None:
    config = load_config(
        None,
        environ={},
        overrides={
            "session.turn_detection": "server_vad",
            "session.output_codec": "opus",
            "session.output_opus_frame_ms": 60,
            "session.extra": {"need_play_prologue": True, "output_audio": {"voice_id": "v7"}},
        },
    )
    wire = config.session_config().to_wire()
    assert wire["input_audio"] == {
        "format": "pcm",
        "codec": "opus",
        "sample_rate": 16000,
        "channel": 1,
        "bit_depth": 16,
    }
    assert wire["turn_detection"] == {
        "type": "server_vad",
        "prefix_padding_ms": 600,
        "silence_duration_ms": 500,
    }
    assert wire["output_audio"]["opus_config"]["frame_size_ms"] == 60
    assert wire["output_audio"]["voice_id"] == "v7"
    assert wire["need_play_prologue"] is True
    assert "chat_config" not in wire


def test_any_bearer_credential_is_redacted_even_unregistered() -> None:
    from voiced.log import redact

    assert redact("< Authorization: Bearer pat_never_registered_xyz") == "< Authorization: Bearer ***"
    assert "sat_abc" not in redact("{'authorization': 'bearer sat_abc'}")
