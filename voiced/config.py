"""Configuration: ``config/voiced.toml``, then ``VOICED_…`` environment variables, then the command line.

:func:`load_config` returns a validated :class:`VoicedConfig` or raises :class:`ConfigError` whose
message names the file (or variable) and the key, and says what to do. The Coze token is a
:class:`pydantic.SecretStr`: it never appears in a repr, a log line or an exception.
"""

from __future__ import annotations

import ipaddress
import math
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
from voiced.conversation.settings import ListenSettings
from voiced.devices.settings import DeviceSettings
from voiced.errors import ConfigError
from voiced.plugins.settings import PluginSettings
from voiced.protocol.models import (
    AsrConfig,
    ChatConfig,
    EmotionConfig,
    EmotionName,
    InputAudio,
    OpusConfig,
    OutputAudio,
    PcmConfig,
    SemanticVadConfig,
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
#: Tables nested deeper than this are refused: no setting is, and deep nesting costs recursion.
MAX_CONFIG_DEPTH = 16
#: A token file is a few hundred bytes; anything much larger is the wrong file.
MAX_TOKEN_FILE_BYTES = 16 * 1024


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
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or not self.base_url.isascii() or any(c.isspace() for c in self.base_url):
            raise ValueError(
                "base_url must look like wss://HOST or wss://HOST:PORT (ASCII, no spaces, port 1..65535)"
            )
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

    turn_detection: Literal["client_interrupt", "server_vad", "semantic_vad"] = "client_interrupt"
    input_codec: Literal["opus", "pcm"] = "opus"
    output_codec: Literal["pcm", "opus", "g711a", "g711u"] = "pcm"
    output_sample_rate_hz: Literal[8000, 16000, 24000, 48000] = 24000
    output_opus_frame_ms: Literal[10, 20, 40, 60] = 20
    output_opus_bitrate_bps: int = Field(32000, ge=6000, le=510000)
    voice_id: str | None = None
    speech_rate: int | None = Field(None, ge=-50, le=100)
    server_vad_prefix_padding_ms: int = Field(600, ge=0)
    server_vad_silence_duration_ms: int = Field(500, ge=0)
    semantic_vad_silence_threshold_ms: int | None = Field(
        None, ge=0, description="semantic_vad: silence before the cloud judges the sentence (server: 300)."
    )
    semantic_vad_unfinished_wait_ms: int | None = Field(
        None, ge=0, description="semantic_vad: extra wait when the sentence sounds unfinished (server: 500)."
    )
    conversation_id: str | None = None
    user_language: str | None = None
    asr_hot_words: list[str] = Field(
        default_factory=list, description="Words the ASR should favour (names, products); ≤ 100 tokens."
    )
    asr_context: str | None = Field(None, description="Context that helps the ASR; ≤ 800 tokens.")
    emotion: EmotionName | None = Field(None, description="Voice emotion of the replies.")
    emotion_scale: float | None = Field(None, ge=1.0, le=5.0, description="Strength of emotion (server: 4).")
    need_play_prologue: bool = Field(False, description="The bot speaks its opening line on connecting.")
    prologue_content: str | None = Field(
        None, max_length=1024, description="The opening line; unset = the one set on the bot."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged into the chat.update data as is: for server options voiced does not model.",
    )

    @property
    def output_rate_hz(self) -> int:
        """The rate reply audio arrives at: 8 kHz for G.711, else ``output_sample_rate_hz``."""
        if self.output_codec in ("g711a", "g711u"):
            return 8000
        return int(self.output_sample_rate_hz)

    def to_session_config(self, coze: CozeSettings) -> SessionConfig:
        """The ``chat.update`` data these settings ask for."""
        output = OutputAudio(codec=self.output_codec, voice_id=self.voice_id, speech_rate=self.speech_rate)
        if self.emotion is not None or self.emotion_scale is not None:
            output.emotion_config = EmotionConfig(emotion=self.emotion, emotion_scale=self.emotion_scale)
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
        elif self.turn_detection == "semantic_vad" and (
            self.semantic_vad_silence_threshold_ms is not None
            or self.semantic_vad_unfinished_wait_ms is not None
        ):
            turn.semantic_vad_config = SemanticVadConfig(
                silence_threshold_ms=self.semantic_vad_silence_threshold_ms,
                semantic_unfinished_wait_time_ms=self.semantic_vad_unfinished_wait_ms,
            )
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
        if self.user_language or self.asr_hot_words or self.asr_context:
            config.asr_config = AsrConfig(
                user_language=self.user_language or None,
                hot_words=list(self.asr_hot_words) or None,
                context=self.asr_context or None,
            )
        if self.need_play_prologue:
            config.need_play_prologue = True
            config.prologue_content = self.prologue_content or None
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
    send_timeout_s: float = Field(
        5.0, gt=0, le=60, description="A socket that cannot take one frame this long is reopened."
    )
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
    stages: list[str] = Field(
        default_factory=list,
        description="Extra mic-path stages in front of the turn detector, in order: registered names "
        "or 'package.module:factory'.",
    )


class VoicedConfig(_Section):
    """The whole configuration."""

    coze: CozeSettings = Field(default_factory=CozeSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    listen: ListenSettings = Field(default_factory=ListenSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)

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
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {str(exc)[:200]}") from None
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to be a voiced config") from None
        _warn_if_token_readable(path, data, warn if warn is not None else [])
    env = env_overrides(environ)
    if env:
        data = deep_merge(data, env)
        source += " + VOICED_* environment"
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value)
    if overrides:
        source += " + command line"
    _check_values(source, data)
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


def _check_values(source: str, data: Mapping[str, Any]) -> None:
    """Refuse what no model should see: ``inf``/``nan`` anywhere, and absurd nesting.

    One walk over the raw data rather than a rule per field: every numeric setting of every
    section (and ``session.extra``, sent to the server as is) must be finite.
    """
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        key, value, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{source}: {key[:120]}: nested deeper than {MAX_CONFIG_DEPTH} levels; no setting is"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: {value} is not a finite number: give a plain number")
        if isinstance(value, Mapping):
            stack.extend((f"{key}.{k}" if key else str(k), v, depth + 1) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((f"{key}[{i}]", v, depth + 1) for i, v in enumerate(value))


def _warn_if_token_readable(path: Path, data: Mapping[str, Any], warn: list[str]) -> None:
    coze = data.get("coze")
    if not isinstance(coze, Mapping) or not coze.get("token"):
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warn.append(
            f"{path} holds coze.token and is readable by other users: run chmod 600 {path}, "
            "or move the token to coze.token_file or COZE_API_TOKEN"
        )


def require_bot(config: VoicedConfig) -> None:
    """Raise :class:`ConfigError` (78) if the config cannot name a bot to talk to.

    Call it before opening any device, in every command that connects (``run``, ``check``): with
    no microphone the daemon would otherwise never get as far as reporting it.
    """
    if not config.coze.bot_id.strip():
        raise ConfigError(
            "coze.bot_id is empty: set it to the id of your bot (the number in its URL), in the config "
            "file or with VOICED_COZE__BOT_ID"
        )


def check_token(token: str, source: str) -> str:
    """``token`` if it can travel in an HTTP header; else :class:`ConfigError` naming ``source``.

    A token is one word of visible ASCII: a second line, a byte-order mark, control or binary bytes
    would be injected into the request headers (or refused there on every attempt forever).
    """
    if token.startswith("\ufeff"):
        raise ConfigError(f"{source}: starts with a UTF-8 byte-order mark: save it without one (plain UTF-8)")
    token = token.strip()
    if not token:
        raise ConfigError(f"{source}: the token is blank: put the Coze token in it")
    if "\n" in token or "\r" in token:
        raise ConfigError(f"{source}: holds more than one line: keep only the token, on one line")
    if not all("!" <= c <= "~" for c in token):
        raise ConfigError(
            f"{source}: the token holds spaces, control or non-ASCII characters: it must be the "
            "token exactly as Coze shows it"
        )
    return token


def _resolve_token(config: VoicedConfig, environ: Mapping[str, str], warn: list[str]) -> None:
    """Fill ``coze.token`` from: the config, a systemd credential, the token file, COZE_API_TOKEN.

    The credential comes before ``token_file`` because under systemd the service user usually
    cannot read the file the credential was loaded from.
    """
    coze = config.coze
    if coze.token is not None and coze.token.get_secret_value().strip():
        coze.token = SecretStr(check_token(coze.token.get_secret_value(), "coze.token"))
        return
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        coze.token = SecretStr(_read_token_file(Path(credentials) / CREDENTIAL_NAME, warn, check_mode=False))
        return
    if coze.token_file is not None:
        coze.token = SecretStr(_read_token_file(coze.token_file, warn))
        return
    from_env = environ.get(COZE_TOKEN_ENV, "")
    if from_env.strip():
        coze.token = SecretStr(check_token(from_env, COZE_TOKEN_ENV))


def _read_token_file(path: Path, warn: list[str], check_mode: bool = True) -> str:
    source = f"coze.token_file {path}"
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{source}: not a regular file: point coze.token_file at the token's file")
        with path.open("rb") as file:
            raw = file.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"coze.token_file: cannot read {path}: {exc.strerror or exc}") from None
    if check_mode and mode & (stat.S_IRGRP | stat.S_IROTH):
        warn.append(f"token file {path} is readable by other users: run chmod 600 {path}")
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_TOKEN_FILE_BYTES} bytes: it is not a token file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{source}: binary content, not a text token: put the token in it as text"
        ) from None
    if not text.strip() and not text.startswith("\ufeff"):
        raise ConfigError(f"{source}: is empty: put the Coze token in it")
    return check_token(text, source)
