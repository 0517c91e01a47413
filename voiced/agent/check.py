"""``voiced check``: is this device ready to talk? A table of checks, non-zero exit on any failure.

Every row is always printed, in the same order: a check that cannot run says why (``skip`` or
``FAIL``) instead of disappearing. Rows come from sections, each an async function taking a
:class:`CheckContext` and returning its rows; add a feature's rows by appending a section to
:data:`SECTIONS` (or passing ``extra`` to :func:`collect_checks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voiced.agent.transport import open_connection
from voiced.config import COZE_TOKEN_ENV, CREDENTIAL_NAME, VoicedConfig
from voiced.devices.base import AudioSink, DeviceError
from voiced.devices.factory import open_sink, open_source
from voiced.errors import EXIT_FAILURE, EXIT_OK, FatalError, TransientError
from voiced.protocol import events as ev
from voiced.protocol.session import ClientSession, FrameToSend

Status = Literal["ok", "WARN", "FAIL", "skip"]

#: How long the microphone is listened to for its level.
MIC_LISTEN_S = 2.0
#: Below this RMS level (dBFS) over MIC_LISTEN_S the microphone is called silent.
MIC_QUIET_DBFS = -70.0
TONE_HZ = 440.0
TONE_S = 1.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One row. ``WARN`` and ``skip`` do not fail the check; ``FAIL`` does."""

    name: str
    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        """False only for a failure."""
        return self.status != "FAIL"


@dataclass(slots=True)
class CheckContext:
    """What every section may use."""

    config: VoicedConfig
    config_path: Path | None = None
    open_devices: bool = True
    tone: bool = False
    timeout_s: float = 10.0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


Section = Callable[[CheckContext], Awaitable[list[CheckResult]]]


def token_source(config: VoicedConfig, environ: Mapping[str, str]) -> str | None:
    """Where the token in use came from (never the token itself), or None when there is none.

    The same precedence as ``voiced.config``: ``coze.token``, the systemd credential,
    ``coze.token_file``, then ``COZE_API_TOKEN``; the first source holding the token in use wins.
    """
    token = config.coze.token.get_secret_value() if config.coze.token is not None else ""
    if not token:
        return None
    candidates: list[tuple[str, str | None]] = []
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        path = Path(credentials) / CREDENTIAL_NAME
        candidates.append((f"systemd credential {CREDENTIAL_NAME}", _read_quietly(path)))
    if config.coze.token_file is not None:
        candidates.append(
            (f"coze.token_file {config.coze.token_file}", _read_quietly(config.coze.token_file))
        )
    candidates.append((f"${COZE_TOKEN_ENV}", environ.get(COZE_TOKEN_ENV, "").strip()))
    for source, value in candidates:
        if value == token:
            return source
    return "coze.token in the config"


def _read_quietly(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


async def check_config(ctx: CheckContext) -> list[CheckResult]:
    """Which file, which token source, bot id, plugins, time zone."""
    config = ctx.config
    rows = [
        CheckResult("config valid", "ok"),
        CheckResult(
            "config file",
            "ok",
            str(ctx.config_path) if ctx.config_path else "none found: built-in defaults (see --config)",
        ),
    ]
    source = token_source(config, ctx.environ)
    rows.append(
        CheckResult(
            "token present",
            "ok" if source else "FAIL",
            f"from {source}"
            if source
            else f"none: set coze.token_file, a {CREDENTIAL_NAME} credential or {COZE_TOKEN_ENV}",
        )
    )
    rows.append(
        CheckResult(
            "bot_id set", "ok" if config.coze.bot_id else "FAIL", config.coze.bot_id or "set coze.bot_id"
        )
    )
    rows.append(_check_plugins(config))
    rows.append(CheckResult("time zone", "ok", f"{config.plugins.timezone} (plugins.timezone)"))
    return rows


def _check_plugins(config: VoicedConfig) -> CheckResult:
    from voiced.plugins import PluginRegistry  # noqa: PLC0415  (imports every installed plugin)

    registry = PluginRegistry.load(config.plugins)
    known = {info.name for info in registry.all()}
    missing = [name for name in config.plugins.enabled if name not in known]
    name = "plugins enabled"
    if missing:
        return CheckResult(
            name,
            "FAIL",
            f"no tool named {', '.join(missing)}: install its package, add its module to plugins.modules, "
            "or remove it from plugins.enabled (`voiced plugins list`)",
        )
    if registry.errors:
        first = registry.errors[0]
        return CheckResult(name, "WARN", f"{len(registry.errors)} plugin source(s) skipped: {first.message}")
    return CheckResult(name, "ok", ", ".join(config.plugins.enabled) or "none")


def level_dbfs(samples: np.ndarray) -> float:
    """The RMS level of int16 ``samples`` in dBFS (``-inf`` for digital silence)."""
    if samples.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return -math.inf if rms == 0 else 20 * math.log10(rms / 32768.0)


def session_summary(config: VoicedConfig) -> str:
    """What ``chat.update`` asks for, in one line: turn detection, ASR hints, voice, prologue."""
    session = config.session_config()
    parts = []
    turn = session.turn_detection
    if turn is not None and turn.type:
        semantic = turn.semantic_vad_config
        extra = ""
        if semantic is not None:
            extra = (
                f" (silence {semantic.silence_threshold_ms} ms,"
                f" unfinished wait {semantic.semantic_unfinished_wait_time_ms} ms)"
            )
        parts.append(f"turns {turn.type}{extra}")
    asr = session.asr_config
    if asr is not None:
        if asr.user_language:
            parts.append(f"language {asr.user_language}")
        if asr.hot_words:
            parts.append(f"{len(asr.hot_words)} hot words")
        if asr.context:
            parts.append(f"ASR context {len(asr.context)} chars")
    emotion = session.output_audio.emotion_config if session.output_audio else None
    if emotion is not None:
        scale = f" x{emotion.emotion_scale:g}" if emotion.emotion_scale is not None else ""
        parts.append(f"emotion {emotion.emotion or 'default'}{scale}")
    if session.need_play_prologue:
        content = session.prologue_content
        parts.append(f"prologue {content[:40]!r}" if content else "prologue (the bot's own)")
    else:
        parts.append("no prologue")
    return ", ".join(parts)


async def check_session(ctx: CheckContext) -> list[CheckResult]:
    """What ``chat.update`` will ask the server for."""
    return [CheckResult("session settings", "ok", session_summary(ctx.config))]


async def check_microphone(ctx: CheckContext) -> list[CheckResult]:
    """The microphone opens, delivers frames, and hears something over two seconds."""
    name, level_name = "microphone opens and delivers audio", "microphone level"
    if not ctx.open_devices:
        return [
            CheckResult(name, "skip", "--skip-devices"),
            CheckResult(level_name, "skip", "--skip-devices"),
        ]
    frames: list[bytes] = []
    try:
        source = open_source(ctx.config.audio.devices, "portaudio")
        try:
            await source.start()
            async with asyncio.timeout(MIC_LISTEN_S + 2.0):
                while len(frames) * source.frame_ms < MIC_LISTEN_S * 1000:
                    frames.append((await source.read_frame()).pcm)
        finally:
            with contextlib.suppress(Exception):
                await source.stop()
    except (DeviceError, TimeoutError) as exc:
        detail = str(exc) or f"fewer than {MIC_LISTEN_S:.0f} s of audio in {MIC_LISTEN_S + 2:.0f} s"
        return [
            CheckResult(name, "FAIL", f"{detail} (audio.devices.input_device; `voiced devices`)"),
            CheckResult(level_name, "skip", "no audio"),
        ]
    samples = np.frombuffer(b"".join(frames), dtype="<i2")
    dbfs = level_dbfs(samples)
    rows = [CheckResult(name, "ok", f"{len(frames)} frames in {MIC_LISTEN_S:.0f} s")]
    if dbfs == -math.inf:
        rows.append(
            CheckResult(level_name, "WARN", "digital silence: is the microphone muted? (alsamixer, or pactl)")
        )
    elif dbfs < MIC_QUIET_DBFS:
        rows.append(CheckResult(level_name, "WARN", f"{dbfs:.0f} dBFS: nearly silent; raise its gain"))
    else:
        peak = int(np.max(np.abs(samples.astype(np.int32))))
        rows.append(CheckResult(level_name, "ok", f"{dbfs:.0f} dBFS RMS, peak {peak}"))
    return rows


async def check_speaker(ctx: CheckContext) -> list[CheckResult]:
    """The speaker opens (and, with ``tone``, plays a short tone)."""
    name, tone_name = "speaker opens", "test tone"
    if not ctx.open_devices:
        return [CheckResult(name, "skip", "--skip-devices"), CheckResult(tone_name, "skip", "--skip-devices")]
    rate_hz = ctx.config.session.output_rate_hz
    try:
        sink = open_sink(ctx.config.audio.devices, "portaudio", rate_hz)
        try:
            await sink.start()
            sink.check()
            rows = [CheckResult(name, "ok", f"{rate_hz} Hz")]
            if ctx.tone:
                rows.append(await _play_tone(sink, rate_hz))
            else:
                rows.append(CheckResult(tone_name, "skip", "--tone plays one"))
            return rows
        finally:
            with contextlib.suppress(Exception):
                await sink.stop()
    except DeviceError as exc:
        return [
            CheckResult(name, "FAIL", f"{exc} (audio.devices.output_device; `voiced devices`)"),
            CheckResult(tone_name, "skip", "no speaker"),
        ]


async def _play_tone(sink: AudioSink, rate_hz: int) -> CheckResult:
    t = np.arange(int(rate_hz * TONE_S)) / rate_hz
    fade = np.minimum(1.0, np.minimum(t, TONE_S - t) / 0.02)
    tone = (0.25 * 32767 * np.sin(2 * math.pi * TONE_HZ * t) * fade).astype(np.int16)
    written = 0
    async with asyncio.timeout(TONE_S + 3.0):
        while written < tone.size:
            n = min(sink.writable_samples(), tone.size - written)
            if n > 0:
                sink.write(tone[written : written + n])
                written += n
            sink.check()
            await asyncio.sleep(0.01)
        while sink.queued_samples() > 0:
            sink.check()
            await asyncio.sleep(0.02)
    return CheckResult("test tone", "ok", f"{TONE_S:.0f} s at {TONE_HZ:.0f} Hz: did you hear it?")


async def check_server(ctx: CheckContext) -> list[CheckResult]:
    """The server accepts the token and answers chat.update."""
    config = ctx.config
    name = "server reachable, chat.updated received"
    if token_source(config, ctx.environ) is None or not config.coze.bot_id:
        return [CheckResult(name, "FAIL", "not tried: needs the token and coze.bot_id")]
    try:
        ws = await open_connection(config.coze)
    except (FatalError, TransientError) as exc:
        return [CheckResult(name, "FAIL", str(exc))]
    session = ClientSession(config.session_config(), max_frame_bytes=config.coze.max_frame_bytes)
    try:
        async with asyncio.timeout(ctx.timeout_s):
            async for frame in ws:
                for result in session.receive(frame):
                    if isinstance(result, FrameToSend):
                        await ws.send(result.frame)
                    elif isinstance(result, ev.ChatUpdated):
                        detail = f"{config.coze.base_url} (logid {session.last_logid})"
                        return [CheckResult(name, "ok", detail)]
                    elif isinstance(result, ev.Error):
                        return [CheckResult(name, "FAIL", f"error {result.data.code}: {result.data.msg}")]
        return [CheckResult(name, "FAIL", "the server closed the connection before chat.updated")]
    except TimeoutError:
        return [CheckResult(name, "FAIL", f"no chat.updated within {ctx.timeout_s:.0f} s")]
    except (ConnectionClosed, InvalidStatus) as exc:
        return [CheckResult(name, "FAIL", f"the server closed the connection: {exc}")]
    finally:
        with contextlib.suppress(Exception):
            await ws.close()


async def check_echo(ctx: CheckContext) -> list[CheckResult]:
    """Which echo cancellation is in effect: none, in-process (WebRTC AEC3) or the sound server's."""
    from voiced.mic.echo import echo_status  # noqa: PLC0415  (loads a native library only when checked)

    mode, detail = echo_status(ctx.config)
    wanted = ctx.config.audio.echo.mode != "off"
    status: Status = "WARN" if mode == "none" and wanted else "ok"
    return [CheckResult("echo cancellation", status, f"{mode}: {detail}")]


async def check_wake_word(ctx: CheckContext) -> list[CheckResult]:
    """Each configured wake word loads and scores audio (only in ``listen.mode = "wake_word"``)."""
    mode = ctx.config.listen.mode
    if mode != "wake_word":
        return [CheckResult("wake word", "skip", f"listen.mode is {mode!r}, not 'wake_word'")]
    from voiced.mic.wake import wake_status  # noqa: PLC0415  (loads the wake word runtime)

    return [CheckResult(name, "ok" if ok else "FAIL", detail) for name, ok, detail in wake_status(ctx.config)]


#: The sections, in the order their rows are printed.
SECTIONS: list[Section] = [
    check_config,
    check_session,
    check_microphone,
    check_speaker,
    check_server,
    check_echo,
    check_wake_word,
]


async def collect_checks(
    config: VoicedConfig,
    *,
    open_devices: bool = True,
    timeout_s: float = 10.0,
    config_path: Path | None = None,
    tone: bool = False,
    environ: Mapping[str, str] | None = None,
    extra: Sequence[Section] = (),
) -> list[CheckResult]:
    """Run every section (then ``extra``) against ``config`` (already validated); the rows in order."""
    ctx = CheckContext(
        config,
        config_path=config_path,
        open_devices=open_devices,
        tone=tone,
        timeout_s=timeout_s,
        environ=dict(os.environ) if environ is None else environ,
    )
    results: list[CheckResult] = []
    for section in (*SECTIONS, *extra):
        results += await section(ctx)
    return results


def render(results: list[CheckResult]) -> str:
    """The results as an aligned text table."""
    width = max(len(r.name) for r in results)
    lines = [f"{'check'.ljust(width)}  result  detail"]
    for r in results:
        lines.append(f"{r.name.ljust(width)}  {r.status.ljust(4)}    {r.detail}".rstrip())
    return "\n".join(lines)


async def run_check(
    config: VoicedConfig, *, open_devices: bool = True, config_path: Path | None = None, tone: bool = False
) -> int:
    """Print the check table; exit 0 unless a row failed (warnings do not fail it)."""
    results = await collect_checks(config, open_devices=open_devices, config_path=config_path, tone=tone)
    print(render(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE
