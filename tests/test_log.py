"""Log formats: journald lines with priorities, human console lines, JSON; alsa-lib's own error
printing routed into the log, counted and rate-limited. Every format keeps redaction and bounding."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from voiced.log import (
    MAX_FIELD_CHARS,
    AlsaErrorLog,
    alsa_errors,
    configure,
    get_logger,
    install_alsa_error_handler,
    register_secret,
    resolve_format,
)

SECRET = "pat_log_format_secret_0123456789"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved = structlog.get_config()
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved)


def log_all_levels(fmt: str) -> list[str]:
    out = io.StringIO()
    configure("debug", fmt, stream=out)
    register_secret(SECRET)
    log = get_logger("test")
    log.debug("debug line", n=1)
    log.info("info line", path="/tmp/a b", flag=True, nothing=None)
    log.warning("warning line", token=SECRET, huge="x" * 100_000)
    log.error("error line\nsecond line", quoted='say "hi"', nested={"a": [1, 2]})
    logging.getLogger("websockets.client").warning("stdlib %s", "warning")
    return out.getvalue().splitlines()


def test_journal_lines_carry_syslog_priorities_and_key_values() -> None:
    lines = log_all_levels("journal")
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<4>"]
    assert lines[0] == '<7>msg="debug line" level=debug component=test n=1'
    assert 'path="/tmp/a b" flag=true nothing=null' in lines[1]
    assert "timestamp" not in lines[1], "journald stamps its own time"
    # One entry per line: newlines and quotes escaped, the value quoted.
    assert 'msg="error line\\nsecond line"' in lines[3] and 'quoted="say \\"hi\\""' in lines[3]
    assert 'nested="{\\"a\\":[1,2]}"' in lines[3]
    assert lines[4] == '<4>msg="stdlib warning" level=warning logger=websockets.client'


def test_every_format_redacts_and_bounds_fields() -> None:
    for fmt in ("journal", "console", "json"):
        lines = log_all_levels(fmt)
        text = "\n".join(lines)
        assert SECRET not in text, fmt
        assert "truncated" in text, fmt
        assert max(len(line) for line in lines) < 4 * MAX_FIELD_CHARS, fmt


def test_console_lines_are_human_and_in_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A zone 5:45 off UTC: a UTC time cannot pass for it by accident.
    monkeypatch.setenv("TZ", "Asia/Kathmandu")
    time.tzset()
    try:
        lines = log_all_levels("console")
        local_minute = time.strftime("%Y-%m-%d %H:%M")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert lines[1].startswith(local_minute) or lines[1][:16] < local_minute, (lines[1], local_minute)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", lines[1]), lines[1]
    assert "info line" in lines[1] and "{" not in lines[1]
    stdlib_line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[WARNING\s*\] websockets.client: stdlib warning"
    assert re.match(stdlib_line, lines[-1]), lines[-1]


def test_json_lines_parse_including_stdlib_ones() -> None:
    records = [json.loads(line) for line in log_all_levels("json")]
    assert [r["level"] for r in records] == ["debug", "info", "warning", "error", "warning"]
    assert records[1]["timestamp"].endswith("Z")
    assert records[4] == records[4] | {"event": "stdlib warning", "logger": "websockets.client"}


def test_auto_picks_journal_only_for_the_stream_systemd_handed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        info = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert resolve_format("auto", journal) == "journal"
        # A child whose output was redirected inherits the variable: not the journal then.
        assert resolve_format("auto", other) == "json"
        monkeypatch.delenv("JOURNAL_STREAM")
        assert resolve_format("auto", journal) == "json"
        assert resolve_format("console", journal) == "console"
    with pytest.raises(ValueError, match="auto, journal, console or json"):
        resolve_format("xml", io.StringIO())


def test_the_real_process_writes_journal_lines_under_journald(tmp_path: Path) -> None:
    """`voiced` started with its stderr on a stream JOURNAL_STREAM names writes priority lines."""
    log_path = tmp_path / "stderr"
    code = "from voiced.log import configure, get_logger; configure(); get_logger('x').warning('hello')"
    with open(log_path, "w") as err:
        info = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        subprocess.run([sys.executable, "-c", code], stderr=err, env=env, check=True, timeout=30)
    assert log_path.read_text() == "<4>msg=hello level=warning component=x\n"


@pytest.mark.skipif(ctypes.util.find_library("asound") is None, reason="alsa-lib is not installed")
def test_alsa_lib_errors_go_to_the_log_counted_and_rate_limited(capfd: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    configure("info", "journal", stream=out)
    assert install_alsa_error_handler()
    asound = ctypes.CDLL(ctypes.util.find_library("asound"))
    pcm = ctypes.c_void_p()
    before = alsa_errors.total
    for _ in range(200):
        assert asound.snd_pcm_open(ctypes.byref(pcm), b"voiced_no_such_pcm", 0, 0) < 0
    alsa_errors.flush()
    assert alsa_errors.total - before >= 200
    assert "ALSA lib" not in capfd.readouterr().err, "alsa-lib must not print to stderr any more"
    lines = [line for line in out.getvalue().splitlines() if "component=alsa" in line]
    assert 1 <= len(lines) <= 4, lines
    assert all(line.startswith("<4>") for line in lines)
    detailed = [line for line in lines if "Unknown PCM" in line and "snd_pcm_open" in line]
    folded = [match for line in lines if (match := re.search(r"folded=(\d+) total=\d+", line))]
    # The limiter is the process's own: when other tests in this process already spent the window's
    # few detailed lines on their ALSA errors, these 200 are in the folded count instead.
    assert detailed or (folded and int(folded[-1].group(1)) >= 200), lines


def test_the_alsa_log_folds_a_flood_and_reports_the_count_when_the_window_ends() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    now = [0.0]
    alsa = AlsaErrorLog(period_s=60.0, burst=3, clock=lambda: now[0])
    for _ in range(300):
        alsa.report("pcm.c", 8545, "snd_pcm_recover", -32, "%s occurred")
    now[0] = 61.0
    alsa.report("pcm.c", 8545, "snd_pcm_recover", -32, "%s occurred")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 5, records
    assert records[0]["error"] == os.strerror(32) and records[0]["where"] == "pcm.c:8545 (snd_pcm_recover)"
    assert records[3]["folded"] == 297 and records[3]["total"] == 301
    assert alsa.total == 301


def test_a_process_with_a_flood_of_alsa_errors_prints_a_few_lines(tmp_path: Path) -> None:
    """In a real child: 500 failing opens after configure() cost a few log lines, none from alsa-lib."""
    if ctypes.util.find_library("asound") is None:
        pytest.skip("alsa-lib is not installed")
    code = textwrap.dedent(
        """
        import ctypes, ctypes.util
        from voiced.log import alsa_errors, configure
        configure("info", "journal")
        lib = ctypes.CDLL(ctypes.util.find_library("asound"))
        pcm = ctypes.c_void_p()
        for _ in range(500):
            lib.snd_pcm_open(ctypes.byref(pcm), b"voiced_no_such_pcm", 0, 0)
        alsa_errors.flush()
        """
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    lines = done.stderr.splitlines()
    assert "ALSA lib" not in done.stderr
    assert 2 <= len(lines) <= 4, lines
    assert "folded=497 total=500" in lines[-1]
