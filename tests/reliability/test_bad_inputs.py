"""Bad input files: configs, tokens and WAVs each end in one clear line and the documented exit code."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.agent.harness import BOT_ID, TOKEN
from voiced.cli import main as voiced_main
from voiced.config import load_config
from voiced.devices.base import DeviceError
from voiced.devices.wav import read_wav_mono
from voiced.errors import EXIT_CONFIG, ConfigError

pytestmark = pytest.mark.timeout(60)


def config_error(path: Path | None = None, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    text = str(raised.value)
    assert text.count("\n") == 0 and len(text) < 400 and TOKEN not in text, text
    return text


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_bytes(b'[coze]\nbot_id = "\xff\xfe"\n')
    assert "UTF-8" in config_error(path, environ={})


def test_a_config_nested_400_deep(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text("[session]\nextra = " + "{a = " * 400 + "1" + "}" * 400 + "\n")
    assert "nested" in config_error(path, environ={})


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
@pytest.mark.parametrize(
    "key", ["audio.jitter.memory_cap_ms", "reconnect.max_backoff_s", "plugins.timeout_s", "session.extra.x"]
)
def test_non_finite_numbers_are_refused_everywhere(key: str, value: str) -> None:
    from voiced.config import parse_value

    assert "finite" in config_error(None, environ={}, overrides={key: parse_value(value)})


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (f"{TOKEN}\nsecond-line\n".encode(), "more than one line"),
        (b"\xef\xbb\xbf" + TOKEN.encode(), "byte-order mark"),
        (b"\x00\x01\x02\xff\xfe", "binary"),
        (b"  \n\n", "empty"),
        (b"pat token with spaces", "spaces"),
    ],
)
def test_bad_token_files(tmp_path: Path, content: bytes, words: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    token_file.chmod(0o600)
    assert words in config_error(None, environ={}, overrides={"coze.token_file": str(token_file)})


def test_a_multi_line_token_variable_is_refused() -> None:
    assert "more than one line" in config_error(None, environ={"COZE_API_TOKEN": f"{TOKEN}\nX-Evil: 1"})


def test_a_world_readable_config_holding_a_token_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text(f'[coze]\ntoken = "{TOKEN}"\n')
    path.chmod(0o644)
    warnings: list[str] = []
    load_config(path, environ={}, warn=warnings)
    assert any("chmod 600" in w for w in warnings)
    assert all(TOKEN not in w for w in warnings)


def test_set_coze_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = voiced_main(["check", "--skip-devices", "--set", f"coze.token={TOKEN}"])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "COZE_API_TOKEN" in err and TOKEN not in err


def test_an_empty_bot_id_is_a_config_error_before_any_device(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_"))}
    env["COZE_API_TOKEN"] = TOKEN
    # No --input-wav: had it got as far as the devices, it would wait for a microphone.
    result = subprocess.run(
        [sys.executable, "-m", "voiced", "run", "--set", "coze.bot_id=", "--set", "coze.base_url=ws://127.0.0.1:1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_CONFIG, result.stderr[-1000:]
    assert "coze.bot_id is empty" in result.stderr and "Traceback" not in result.stderr


# -- WAV files -------------------------------------------------------------------------------------------


def write_wav(path: Path, rate: int, channels: int, frames: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def test_a_wav_cut_in_the_middle_of_a_frame_keeps_its_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_wav(path, 16000, 2, np.arange(200, dtype="<i2").tobytes())
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # one and a half samples short
    pcm, rate = read_wav_mono(path)
    assert rate == 16000 and pcm.size == 99


def test_an_odd_length_mono_wav_reads(tmp_path: Path) -> None:
    path = tmp_path / "odd.wav"
    write_wav(path, 16000, 1, np.arange(100, dtype="<i2").tobytes())
    path.write_bytes(path.read_bytes() + b"\x01")
    pcm, _ = read_wav_mono(path)
    assert pcm.size == 100


def rate_zero(path: Path) -> None:
    write_wav(path, 16000, 1, b"\x00\x00" * 10)
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (rate_zero, "0 Hz"),
        (lambda p: p.mkdir(), "directory"),
        (lambda p: p.write_bytes(b"this is not a wav file at all"), "not a PCM WAV"),
        (lambda p: p.write_bytes(b""), "not a PCM WAV"),
    ],
)
def test_unusable_wavs_are_one_device_error_line(tmp_path: Path, make: object, words: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)  # type: ignore[operator]
    with pytest.raises(DeviceError) as raised:
        read_wav_mono(path)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_voiced_run_with_a_directory_as_input_wav_says_so_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_"))}
    env["COZE_API_TOKEN"] = TOKEN
    result = subprocess.run(
        [sys.executable, "-m", "voiced", "run", "--set", f"coze.bot_id={BOT_ID}",
         "--set", "coze.base_url=ws://127.0.0.1:1",
         "--input-wav", str(tmp_path), "--output-wav", str(tmp_path / "o.wav")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
