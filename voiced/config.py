"""Configuration: ``config/voiced.toml``, then ``VOICED_…`` environment variables, then the command line.

:func:`load_config` returns a validated :class:`VoicedConfig` or raises :class:`ConfigError` whose
message names the file (or variable) and the key, and says what to do. The Coze token is a
:class:`pydantic.SecretStr`: it never appears in a repr, a log line or an exception.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from voiced.audio.settings import JitterSettings, OpusSettings, VadSettings
from voiced.control.settings import ControlSettings, HooksSettings
from voiced.devices.settings import DeviceSettings
from voiced.errors import ConfigError
from voiced.plugins.settings import PluginSettings
from voiced.protocol.models import (
    AsrConfig,
    ChatConfig,
    InputAudio,
    OpusConfig,
    OutputAudio,
    PcmConfig,
    SessionConfig,
    TurnDetection,
    deep_merge,
)

ENV_PREFIX = "VOICED_"
#: The variable the official Coze SDKs read the token from.
COZE_TOKEN_ENV = "COZE_API_TOKEN"
#: The name of the systemd credential (``LoadCredential=coze-token:…``) holding the token.
CREDENTIAL_NAME = "coze-token"
#: The microphone path runs at 16 kHz mono: webrtcvad rejects 24 kHz, and Opus and the server take 16 kHz.
MIC_RATE_HZ = 16000
DEFAULT_CONFIG_PATHS = (Path("/etc/voiced/voiced.toml"), Path("config/voiced.toml"))



class _Section(BaseModel):
    # Bot ids are long numbers: `--set coze.bot_id=7496…` and VOICED_COZE__BOT_ID parse as integers.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class CozeSettings(_Section):
    """``[coze]``: where to connect and as whom."""

    base_url: str = Field("wss://ws.coze.cn", description="wss://ws.coze.cn (China) or wss://ws.coze.com.")
    bot_id: str = ""
    workflow_id: str | None = None
    device_id: str | None = None
    user_id: str | None = None
    token: SecretStr | None = Field(
        None, description="Prefer token_file, COZE_API_TOKEN or a systemd credential."
    )
    token_file: Path | None = None
    allow_insecure_ws: bool = Field(False, description="Allow plain ws:// to a host that is not loopback.")
    open_timeout_s: float = Field(10.0, gt=0)
    close_timeout_s: float = Field(2.0, gt=0)
    max_frame_bytes: int = Field(1 << 20, ge=64 * 1024)
    ping_interval_s: float = Field(10.0, gt=0)
    ping_timeout_s: float = Field(20.0, gt=0)

    @field_validator("device_id")
    @classmethod
    def _decimal_device_id(cls, value: str | None) -> str | None:
        if value is not None and not value.isdigit():
            raise ValueError("device_id must be a decimal int64 string (protocol.md §1)")
        return value

    @model_validator(mode="after")
    def _url_is_safe(self) -> CozeSettings:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("base_url must look like wss://ws.coze.cn or wss://ws.coze.com")
        if parts.scheme == "ws" and not self.allow_insecure_ws and not is_loopback_host(parts.hostname):
            raise ValueError(
                f"base_url {self.base_url!r} is plain ws:// to a non-loopback host: the token would travel "
                "unencrypted. Use wss://, or set allow_insecure_ws = true if you really mean it"
            )
        return self

    @property
    def chat_url(self) -> str:
        """The WebSocket URL without the query: ``<base_url>/v1/chat``."""
        return self.base_url.rstrip("/") + "/v1/chat"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SessionSettings(_Section):
    """``[session]``: what ``chat.update`` asks the server for (protocol.md §3.1)."""

    turn_detection: Literal["client_interrupt", "server_vad"] = "client_interrupt"
    input_codec: Literal["opus", "pcm"] = "opus"
    output_codec: Literal["pcm", "opus", "g711a", "g711u"] = "pcm"
    output_sample_rate_hz: Literal[8000, 16000, 24000, 48000] = 24000
    output_opus_frame_ms: Literal[10, 20, 40, 60] = 20
    output_opus_bitrate_bps: int = Field(32000, ge=6000, le=510000)
    voice_id: str | None = None
    speech_rate: int | None = Field(None, ge=-50, le=100)
    server_vad_prefix_padding_ms: int = Field(600, ge=0)
    server_vad_silence_duration_ms: int = Field(500, ge=0)
    conversation_id: str | None = None
    user_language: str | None = None
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged into the chat.update data as is: for server options voiced does not model.",
    )

    def to_session_config(self, coze: CozeSettings) -> SessionConfig:
        """The ``chat.update`` data these settings ask for."""
        output = OutputAudio(codec=self.output_codec, voice_id=self.voice_id, speech_rate=self.speech_rate)
        if self.output_codec == "opus":
            output.opus_config = OpusConfig(
                frame_size_ms=self.output_opus_frame_ms,
                bitrate=self.output_opus_bitrate_bps,
                sample_rate=self.output_sample_rate_hz,
            )
        elif self.output_codec == "pcm":
            output.pcm_config = PcmConfig(sample_rate=self.output_sample_rate_hz)
        turn = TurnDetection(type=self.turn_detection)
        if self.turn_detection == "server_vad":
            turn.prefix_padding_ms = self.server_vad_prefix_padding_ms
            turn.silence_duration_ms = self.server_vad_silence_duration_ms
        config = SessionConfig(
            # format "pcm": raw PCM or raw Opus packets; the server default "wav" would reject them.
            input_audio=InputAudio(
                format="pcm",
                codec=self.input_codec,
                sample_rate=MIC_RATE_HZ,
                channel=1,
                bit_depth=16,
            ),
            output_audio=output,
            turn_detection=turn,
        )
        if self.conversation_id or coze.user_id:
            config.chat_config = ChatConfig(
                conversation_id=self.conversation_id or None, user_id=coze.user_id
            )
        if self.user_language:
            config.asr_config = AsrConfig(user_language=self.user_language)
        if self.extra:
            merged = deep_merge(config.to_wire(), self.extra)
            config = SessionConfig.model_validate(merged)
        return config


class AgentSettings(_Section):
    """``[agent]``: conversation behaviour."""

    barge_in: bool = Field(True, description="Let the user interrupt the device by speaking over it.")
    half_duplex: bool = Field(False, description="Mute the mic while the device talks (no echo canceller).")
    interrupt_fade_ms: float = Field(10.0, ge=0, le=100)
    uplink_queue_ms: int = Field(2000, ge=100, description="Audio queued for a slow socket; oldest dropped.")
    volume_pct: int = Field(100, ge=0, le=100)


class ReconnectSettings(_Section):
    """``[reconnect]``: exponential backoff with full jitter."""

    initial_backoff_s: float = Field(0.5, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)
    stable_after_s: float = Field(30.0, gt=0, description="A connection up this long resets the backoff.")
    device_retry_s: float = Field(2.0, gt=0, description="First wait before reopening a lost audio device.")


class LogSettings(_Section):
    """``[log]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class AudioSettings(_Section):
    """``[audio]`` and its sub-tables."""

    devices: DeviceSettings = Field(default_factory=DeviceSettings)
    vad: VadSettings = Field(default_factory=VadSettings)
    jitter: JitterSettings = Field(default_factory=JitterSettings)
    opus: OpusSettings = Field(default_factory=OpusSettings)


class VoicedConfig(_Section):
    """The whole configuration."""

    coze: CozeSettings = Field(default_factory=CozeSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    hooks: HooksSettings = Field(default_factory=HooksSettings)

    def session_config(self) -> SessionConfig:
        """The ``chat.update`` data for this configuration."""
        return self.session.to_session_config(self.coze)


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = target
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {key} is a value, not a table")
        node = child
    node[keys[-1]] = value


def parse_value(text: str) -> Any:
    """A TOML value if ``text`` parses as one (numbers, booleans, arrays), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings named by ``VOICED_SECTION__KEY=value`` variables (``__`` separates levels)."""
    found: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        _set_path(found, dotted, parse_value(value))
    return found


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key!r}: check its spelling against config/voiced.toml")
        else:
            lines.append(f"{source}: {key}: {error['msg']}")
    return "\n".join(lines)


def find_config_file(explicit: Path | None) -> Path | None:
    """The file to read: ``explicit``, else ``$VOICED_CONFIG``, else the first default path that exists."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get("VOICED_CONFIG")
    if from_env:
        return Path(from_env)
    return next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    warn: list[str] | None = None,
) -> VoicedConfig:
    """Read ``path`` (may be None: defaults only), apply the environment, then ``overrides``.

    ``overrides`` maps dotted keys (``"session.turn_detection"``) to values, from the command line.
    Warnings (for example a token file others can read) are appended to ``warn``; log them.
    Raises :class:`ConfigError` naming the file and key.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file (copy config/voiced.toml there)") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    env = env_overrides(environ)
    if env:
        data = deep_merge(data, env)
        source += " + VOICED_* environment"
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value)
    if overrides:
        source += " + command line"
    try:
        config = VoicedConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    try:
        # session.extra is merged into chat.update as is: check now, not at the first connection.
        config.session_config()
    except ValidationError as exc:
        raise ConfigError(_format_errors(f"{source}: session.extra", exc)) from None
    _resolve_token(config, environ, warn if warn is not None else [])
    return config


def _resolve_token(config: VoicedConfig, environ: Mapping[str, str], warn: list[str]) -> None:
    """Fill ``coze.token`` from: the config, a systemd credential, the token file, COZE_API_TOKEN.

    The credential comes before ``token_file`` because under systemd the service user usually
    cannot read the file the credential was loaded from.
    """
    coze = config.coze
    if coze.token is not None and coze.token.get_secret_value().strip():
        coze.token = SecretStr(coze.token.get_secret_value().strip())
        return
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        coze.token = SecretStr(_read_token_file(Path(credentials) / CREDENTIAL_NAME, warn, check_mode=False))
        return
    if coze.token_file is not None:
        coze.token = SecretStr(_read_token_file(coze.token_file, warn))
        return
    from_env = environ.get(COZE_TOKEN_ENV, "").strip()
    if from_env:
        coze.token = SecretStr(from_env)


def _read_token_file(path: Path, warn: list[str], check_mode: bool = True) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"coze.token_file: cannot read {path}: {exc.strerror}") from None
    if check_mode and mode & (stat.S_IRGRP | stat.S_IROTH):
        warn.append(f"token file {path} is readable by other users: run chmod 600 {path}")
    if not text:
        raise ConfigError(f"coze.token_file: {path} is empty")
    return text
