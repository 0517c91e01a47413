"""``voiced check``: is this device ready to talk? A table of checks, non-zero exit on any failure."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

from voiced.agent.transport import open_connection
from voiced.config import VoicedConfig
from voiced.devices.base import DeviceError
from voiced.devices.factory import open_sink, open_source
from voiced.errors import EXIT_FAILURE, EXIT_OK, FatalError, TransientError
from voiced.protocol import events as ev
from voiced.protocol.session import ClientSession


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def _check_server(config: VoicedConfig, timeout_s: float) -> CheckResult:
    name = "server reachable, chat.updated received"
    try:
        ws = await open_connection(config.coze)
    except (FatalError, TransientError) as exc:
        return CheckResult(name, False, str(exc))
    session = ClientSession(config.session_config(), max_frame_bytes=config.coze.max_frame_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            async for frame in ws:
                for result in session.receive(frame):
                    if isinstance(result, ev.ChatCreated):
                        await ws.send(session.update())
                    elif isinstance(result, ev.ChatUpdated):
                        return CheckResult(name, True, f"{config.coze.base_url} (logid {session.last_logid})")
                    elif isinstance(result, ev.Error):
                        return CheckResult(name, False, f"error {result.data.code}: {result.data.msg}")
        return CheckResult(name, False, "the server closed the connection before chat.updated")
    except TimeoutError:
        return CheckResult(name, False, f"no chat.updated within {timeout_s:.0f} s")
    except ConnectionClosed as exc:
        return CheckResult(name, False, f"the server closed the connection: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await ws.close()


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


async def _check_devices(config: VoicedConfig) -> list[CheckResult]:
    results = []
    devices = config.audio.devices
    name = "microphone opens and delivers audio"
    try:
        source = open_source(devices, "portaudio")
        try:
            await source.start()
            frame = await asyncio.wait_for(source.read_frame(), timeout=2.0)
            results.append(CheckResult(name, True, f"{len(frame.pcm)}-byte frames"))
        finally:
            with contextlib.suppress(Exception):
                await source.stop()
    except (DeviceError, TimeoutError) as exc:
        results.append(CheckResult(name, False, str(exc) or "no frame in 2 s"))
    rate_hz = (
        8000 if config.session.output_codec in ("g711a", "g711u") else config.session.output_sample_rate_hz
    )
    try:
        sink = open_sink(devices, "portaudio", rate_hz)
        try:
            await sink.start()
            sink.check()
            results.append(CheckResult("speaker opens", True, f"{rate_hz} Hz"))
        finally:
            with contextlib.suppress(Exception):
                await sink.stop()
    except DeviceError as exc:
        results.append(CheckResult("speaker opens", False, str(exc)))
    return results


async def collect_checks(
    config: VoicedConfig, *, open_devices: bool = True, timeout_s: float = 10.0
) -> list[CheckResult]:
    """Run every check against ``config`` (already validated) and return the results in order."""
    results = [
        CheckResult("config valid", True, ""),
        CheckResult("session settings", True, session_summary(config)),
    ]
    token = config.coze.token
    has_token = token is not None and bool(token.get_secret_value())
    results.append(
        CheckResult(
            "token present",
            has_token,
            "" if has_token else "set COZE_API_TOKEN, coze.token_file or a coze-token credential",
        )
    )
    results.append(
        CheckResult("bot_id set", bool(config.coze.bot_id), "" if config.coze.bot_id else "set coze.bot_id")
    )
    if open_devices:
        results += await _check_devices(config)
    if has_token and config.coze.bot_id:
        results.append(await _check_server(config, timeout_s))
    return results


def render(results: list[CheckResult]) -> str:
    """The results as an aligned text table."""
    width = max(len(r.name) for r in results)
    lines = [f"{'check'.ljust(width)}  result  detail"]
    for r in results:
        lines.append(f"{r.name.ljust(width)}  {'ok  ' if r.ok else 'FAIL'}    {r.detail}")
    return "\n".join(lines)


async def run_check(config: VoicedConfig, *, open_devices: bool = True) -> int:
    """Print the check table; exit 0 only when every check passed."""
    results = await collect_checks(config, open_devices=open_devices)
    print(render(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE
