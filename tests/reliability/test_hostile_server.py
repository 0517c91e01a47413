"""A hostile server: malformed and cross-origin redirects, HTTP statuses with Retry-After, bare close
codes and errors before ``chat.updated``, floods of unknown events with huge names and logids.

Each case is asserted on what a device owner sees: the exit code (permanent → 69/77/78, transient →
keep retrying), one bounded line instead of a traceback, the token staying home, memory and log
volume.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.agent.harness import BOT_ID, TOKEN, UTTERANCE, daemon_config, running_daemon, utterance_pcm
from tests.reliability.conftest import CapturedLogs
from tests.reliability.hostile_server import HostileServer, serve_hostile
from tests.reliability.processes import rss_mb as child_rss_mb
from tests.reliability.processes import spawn_run, wait_ready
from voiced.agent.transport import open_connection, parse_retry_after
from voiced.config import CozeSettings, load_config
from voiced.devices.memory import MemorySource
from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.errors import (
    EXIT_CONFIG,
    EXIT_NOPERM,
    EXIT_UNAVAILABLE,
    ConfigError,
    FatalError,
    TransientError,
    close_code_error,
)

pytestmark = pytest.mark.timeout(60)


def coze_for(url: str) -> CozeSettings:
    return load_config(
        None, environ={}, overrides={"coze.base_url": url, "coze.bot_id": BOT_ID, "coze.token": TOKEN}
    ).coze


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and len(text) < 400, text
    assert TOKEN not in text
    return text


# -- redirects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    ["ftp://example.com/v1/chat", "ws://127.0.0.1:99999/v1/chat", "ws://[::1/v1/chat", "wss://" + "a" * 300],
)
async def test_a_malformed_redirect_is_one_transient_line(location: str) -> None:
    async with serve_hostile(HostileServer("redirect", status=302, location=location)) as server:
        with pytest.raises(TransientError) as raised:
            await open_connection(coze_for(server.url))
    assert "redirect" in one_line(raised.value)


async def test_a_cross_origin_redirect_is_refused_and_the_token_stays_home() -> None:
    async with serve_hostile(HostileServer("accept")) as elsewhere:
        moved = HostileServer("redirect", status=302, location=f"{elsewhere.url}/v1/chat?bot_id={BOT_ID}")
        async with serve_hostile(moved) as server:
            with pytest.raises(TransientError) as raised:
                await open_connection(coze_for(server.url))
    assert "another origin" in one_line(raised.value)
    assert len(server.requests) == 1 and server.requests[0][1]["Authorization"] == f"Bearer {TOKEN}"
    assert elsewhere.requests == [], "the redirect target must never see a request (nor the token)"


async def test_a_same_origin_redirect_is_followed() -> None:
    hostile = HostileServer("redirect", status=307, location=f"/v2/chat?bot_id={BOT_ID}", redirects=1)
    async with serve_hostile(hostile) as server:
        ws = await open_connection(coze_for(server.url))
        await ws.close()
    assert [path.split("?")[0] for path, _ in server.requests] == ["/v1/chat", "/v2/chat"]


async def test_a_redirect_to_another_name_of_the_same_host_is_refused_too() -> None:
    # The origin is compared as written: "localhost" is not "127.0.0.1" to a certificate or a proxy.
    async with serve_hostile(HostileServer("redirect")) as server:
        server.location = f"ws://localhost:{server.port}/v1/chat"
        with pytest.raises(TransientError):
            await open_connection(coze_for(server.url))
    assert len(server.requests) == 1


# -- statuses and Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after", "expected_s"), [(429, "7", 7.0), (503, "120", 120.0)])
async def test_retry_after_is_carried_on_the_transient_error(
    status: int, retry_after: str, expected_s: float
) -> None:
    async with serve_hostile(HostileServer("status", status=status, retry_after=retry_after)) as server:
        with pytest.raises(TransientError) as raised:
            await open_connection(coze_for(server.url))
    assert raised.value.retry_after_s == expected_s
    assert f"HTTP {status}" in one_line(raised.value)


async def test_the_servers_explanation_of_a_refused_handshake_is_shown() -> None:
    # The emulator's full chat URL given as the base URL: the path doubles and the server says so.
    async with serve_emulator(EmulatorSettings(token=TOKEN)) as emu:
        with pytest.raises(TransientError) as raised:
            await open_connection(coze_for(f"{emu.url}/v1/chat"))
    text = one_line(raised.value)
    assert "HTTP 404" in text and "no such endpoint '/v1/chat/v1/chat'; use /v1/chat (code 4000)" in text


async def test_a_huge_html_explanation_is_one_bounded_line() -> None:
    page = b"<html>\n  <body>\n" + b"Not   Found\n" * 50_000 + b"</body></html>"
    async with serve_hostile(HostileServer("status", status=404, body=page)) as server:
        with pytest.raises(TransientError) as raised:
            await open_connection(coze_for(server.url))
    text = one_line(raised.value)
    assert "HTTP 404: <html> <body> Not Found Not Found" in text and "truncated" in text


@pytest.mark.parametrize(
    ("status", "body", "quoted"),
    [
        (401, b'{"code": 4100, "msg": "authentication is invalid"}', "authentication is invalid (code 4100)"),
        (403, b"token " + TOKEN.encode() + b" may not use this bot", "may not use this bot"),
        (403, b"<p>\n  Forbidden\n</p>" * 20_000, "<p> Forbidden </p><p> Forbidden </p>"),
    ],
)
async def test_a_refused_token_line_quotes_the_servers_explanation(
    status: int, body: bytes, quoted: str
) -> None:
    async with serve_hostile(HostileServer("status", status=status, body=body)) as server:
        with pytest.raises(FatalError) as raised:
            await open_connection(coze_for(server.url))
    assert raised.value.exit_code == EXIT_NOPERM
    text = one_line(raised.value)  # bounded, and the token redacted out of the server's words
    assert f"HTTP {status}" in text and quoted in text and "check the token" in text


def test_retry_after_parses_dates_and_refuses_garbage() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now_s=now.timestamp()) == pytest.approx(90.0)
    assert parse_retry_after("999999999") == 3600.0
    assert parse_retry_after("-5") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("9" * 5000) is None
    assert parse_retry_after(None) is None


async def test_an_unusable_base_url_found_at_connect_time_is_a_config_error() -> None:
    # Built by hand, as an embedding program may: the model's validation never ran.
    coze = CozeSettings.model_construct(
        **{**coze_for("ws://127.0.0.1:1").model_dump(), "base_url": "ws://127.0.0.1:99999"}
    )
    with pytest.raises(ConfigError) as raised:
        await open_connection(coze)
    assert "1..65535" in one_line(raised.value)


def test_a_base_url_port_out_of_range_is_refused_at_load_time() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, environ={}, overrides={"coze.base_url": "wss://ws.coze.cn:99999"})
    assert "port 1..65535" in str(raised.value)


# -- close codes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [(4100, EXIT_NOPERM), (4101, EXIT_NOPERM), (4027, EXIT_UNAVAILABLE), (4028, EXIT_UNAVAILABLE)],
)
def test_permanent_close_codes_map_to_their_exit_code(code: int, exit_code: int) -> None:
    error = close_code_error(code, "x" * 10_000)
    assert error is not None and error.exit_code == exit_code
    assert len(str(error)) < 400


@pytest.mark.parametrize("code", [None, 1000, 1006, 1011, 4000, 4013, 5000])
def test_other_close_codes_reconnect(code: int | None) -> None:
    assert close_code_error(code, "") is None


# -- the real process -----------------------------------------------------------------------------------


async def voiced_run(url: str, tmp_path: Path, seconds: float) -> tuple[int, str]:
    """``voiced run`` against ``url`` for at most ``seconds``, then SIGTERM: (exit code, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_"))}
    env["COZE_API_TOKEN"] = TOKEN
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiced", "run",
        "--set", f"coze.base_url={url}", "--set", f"coze.bot_id={BOT_ID}",
        "--set", "reconnect.initial_backoff_s=0.05", "--set", "reconnect.max_backoff_s=0.2",
        "--log-format", "json",
        "--input-wav", str(UTTERANCE), "--output-wav", str(tmp_path / "out.wav"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), seconds)
    except TimeoutError:
        proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    output = (await asyncio.wait_for(proc.stdout.read(), 20)).decode(errors="replace")
    return await asyncio.wait_for(proc.wait(), 20), output


async def test_voiced_run_behind_a_malformed_redirect_keeps_retrying_without_a_traceback(
    tmp_path: Path,
) -> None:
    hostile = HostileServer("redirect", status=302, location="ftp://example.com:99999/chat")
    async with serve_hostile(hostile) as server:
        code, output = await voiced_run(server.url, tmp_path, seconds=4.0)
    assert code == 0, output[-2000:]
    assert "Traceback" not in output and "ExceptionGroup" not in output
    assert len(server.requests) >= 3, "it must keep retrying"
    assert "malformed location" in output
    assert max(len(line) for line in output.splitlines()) < 2048


@pytest.mark.parametrize(("code", "exit_code"), [(4100, EXIT_NOPERM), (4028, EXIT_UNAVAILABLE)])
async def test_a_bare_permanent_close_code_ends_the_daemon(tmp_path: Path, code: int, exit_code: int) -> None:
    async with serve_hostile(HostileServer("close", close_code=code)) as server:
        status, output = await voiced_run(server.url, tmp_path, seconds=8.0)
    assert status == exit_code, output[-1500:]
    assert server.connections == 1


async def test_retry_after_is_honoured_by_the_daemon(tmp_path: Path) -> None:
    async with serve_hostile(HostileServer("status", status=429, retry_after="3")) as server:
        await voiced_run(server.url, tmp_path, seconds=2.5)
    assert len(server.requests) == 1


# -- floods ------------------------------------------------------------------------------------------------


async def test_a_huge_logid_never_makes_a_huge_log_line(logs: CapturedLogs) -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm(), paced=False, after_end="silence")
        async with running_daemon(daemon_config(emu), source) as h:
            huge = "L" * 900_000
            for event_type in ("conversation.chat.failed", "error", "no.such.event"):
                frame = {"id": "x", "event_type": event_type, "data": {"code": 5000, "msg": huge},
                         "detail": {"logid": huge}}  # fmt: skip
                await emu.send_raw_to_all(json.dumps(frame))
            await asyncio.sleep(0.5)
            assert not h.task.done()
    longest = max(len(line) for line in logs.text.splitlines())
    assert longest < 8192, f"a log line of {longest} characters"


async def test_a_flood_of_unknown_events_with_huge_names_stays_bounded(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0)
    async with serve_emulator(settings) as emu:
        proc, notify = await spawn_run(emu.url, tmp_path, "--set", "coze.max_frame_bytes=4194304")
        try:
            await wait_ready(notify)

            async def flood(first: int, count: int) -> None:
                for i in range(first, first + count):
                    name = f"{i:06d}" + "U" * 100_000
                    await emu.send_raw_to_all(json.dumps({"id": str(i), "event_type": name, "data": {}}))
                await asyncio.sleep(1.5)

            # The first flood sizes the transport's and the allocator's buffers; what a second,
            # three times larger one adds is what voiced keeps per event.
            await flood(0, 300)
            before_mb = child_rss_mb(proc.pid)
            await flood(300, 900)
            grown_mb = child_rss_mb(proc.pid) - before_mb
            alive = proc.returncode is None
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None
            output = (await asyncio.wait_for(proc.stdout.read(), 20)).decode(errors="replace")
            await asyncio.wait_for(proc.wait(), 20)
            notify.close()
    assert alive, output[-2000:]
    assert grown_mb < 10, f"voiced's RSS grew by {grown_mb:.0f} MB over 900 unknown events of 100 kB names"
    assert len(output) < 200_000, f"{len(output)} characters of log for 1200 unknown events"
    assert "unknown server event ignored" in output


async def test_a_5000_error_before_chat_updated_is_not_a_config_error() -> None:
    faults = FaultSettings(error_code=5000, error_after_frames=1)
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0, faults=faults)
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm(), paced=False, after_end="silence")
        async with running_daemon(daemon_config(emu), source, wait_ready=False) as h:
            await asyncio.sleep(2.0)
            assert not h.task.done(), f"ended with {h.task.result()}"
    assert len({r.connection_index for r in emu.received}) >= 2, "it must reconnect"


async def test_a_4000_in_answer_to_chat_update_is_a_config_error() -> None:
    faults = FaultSettings(error_code=4000, error_after_frames=1)
    settings = EmulatorSettings(port=0, scenario=load_scenario("echo"), ping_interval_s=0, faults=faults)
    async with serve_emulator(settings) as emu:
        source = MemorySource(utterance_pcm(), paced=False, after_end="silence")
        async with running_daemon(daemon_config(emu), source, wait_ready=False) as h:
            code = await asyncio.wait_for(h.task, 10)
    assert code == EXIT_CONFIG
