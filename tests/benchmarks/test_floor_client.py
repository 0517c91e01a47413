"""The floor client the benchmark measures does its mode's work against the emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import opuslib
import pytest

from benchmarks.e2e_bench import conversation_mic, write_wav
from benchmarks.floor_client import run_floor
from tests.agent.harness import BOT_ID, TOKEN
from tests.support.pulse import PulseServer
from voiced.emulator import EmulatorSettings, serve_emulator
from voiced.emulator.server import Emulator
from voiced.protocol.events import InputAudioBufferAppend

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with serve_emulator(EmulatorSettings(port=0, ping_interval_s=0)) as emu:
        yield emu


def _appends(emu: Emulator) -> list[InputAudioBufferAppend]:
    return [r.event for r in emu.received if isinstance(r.event, InputAudioBufferAppend)]


def _errors_sent(emu: Emulator) -> int:
    return sum(counter["error"] for counter in emu.sent_event_types.values())


async def test_the_subprocess_is_ready_after_chat_updated_and_streams_accepted_appends(
    emulator: Emulator, tmp_path: Path
) -> None:
    write_wav(tmp_path / "mic.wav", conversation_mic(3.0), 16000)
    notify_path = tmp_path / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    env = {**os.environ, "COZE_API_TOKEN": TOKEN, "NOTIFY_SOCKET": str(notify_path)}
    argv = [
        sys.executable, "-m", "benchmarks.floor_client", "--url", emulator.url, "--bot-id", BOT_ID,
        "--mode", "pcm", "--input-wav", str(tmp_path / "mic.wav"), "--output-wav", str(tmp_path / "out.wav"),
        "--seconds", "1.5", "--stats-json", str(tmp_path / "stats.json"),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=REPO, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            ready = await asyncio.get_running_loop().sock_recv(notify, 64)
            # READY comes only after the server confirmed the configuration.
            assert ready == b"READY=1"
            assert sum(c["chat.updated"] for c in emulator.sent_event_types.values()) == 1
            _, stderr = await proc.communicate()
    finally:
        notify.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    appends = _appends(emulator)
    # 1.5 s of 20 ms frames, every one sent as raw 16 kHz PCM and accepted.
    assert 60 <= len(appends) == stats["appends_sent"] <= 80
    assert {len(base64.b64decode(a.data.delta)) for a in appends} == {640}
    assert _errors_sent(emulator) == 0
    assert stats["speaker_blocks"] >= 60
    with wave.open(str(tmp_path / "out.wav")) as out:
        assert (out.getframerate(), out.getnframes()) == (24000, stats["speaker_blocks"] * 480)


async def test_opus_mode_sends_packets_and_plays_the_deltas_it_decodes(
    emulator: Emulator, tmp_path: Path
) -> None:
    write_wav(tmp_path / "mic.wav", conversation_mic(3.0), 16000)
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(480) / 24000)).astype(np.int16).tobytes()
    packet = opuslib.Encoder(24000, 1, "voip").encode(tone, 480)
    delta = json.dumps(
        {
            "event_type": "conversation.audio.delta",
            "data": {"chat_id": "1", "content": base64.b64encode(packet).decode()},
        }
    )

    def ready() -> None:
        # Straight after chat.updated: the server can now talk, five 20 ms packets in a burst.
        for _ in range(5):
            asyncio.get_running_loop().create_task(emulator.send_raw_to_all(delta))

    stats = await asyncio.wait_for(
        run_floor(
            emulator.url, BOT_ID, TOKEN, "opus", input_wav=tmp_path / "mic.wav",
            output_wav=tmp_path / "out.wav", seconds=1.0, on_ready=ready,
        ),
        20,
    )  # fmt: skip
    appends = _appends(emulator)
    assert 40 <= len(appends) == stats.appends_sent <= 55
    # Opus at 24 kb/s: about 60 bytes per 20 ms, not 640 bytes of PCM.
    assert all(len(base64.b64decode(a.data.delta)) < 200 for a in appends)
    assert _errors_sent(emulator) == 0
    assert stats.audio_deltas == 5 and stats.audible_blocks == 5
    with wave.open(str(tmp_path / "out.wav")) as out:
        played = np.frombuffer(out.readframes(out.getnframes()), dtype=np.int16)
    assert np.abs(played).max() > 2000


async def test_idle_sends_nothing(emulator: Emulator, tmp_path: Path) -> None:
    write_wav(tmp_path / "mic.wav", conversation_mic(2.0), 16000)
    stats = await asyncio.wait_for(
        run_floor(
            emulator.url, BOT_ID, TOKEN, "idle", input_wav=tmp_path / "mic.wav", seconds=0.6,
            on_ready=lambda: None,
        ),
        20,
    )  # fmt: skip
    assert 25 <= stats.mic_frames <= 35
    # Idle, it reads the mic as voiced does: five frames per wake-up.
    assert stats.mic_wakes <= stats.mic_frames // 5 + 1
    assert stats.appends_sent == 0 and _appends(emulator) == []
    assert _errors_sent(emulator) == 0


@pytest.mark.pulse
async def test_idle_on_portaudio_hands_the_loop_one_block_per_idle_read(
    emulator: Emulator, pulse: PulseServer
) -> None:
    stats = await asyncio.wait_for(
        run_floor(
            emulator.url, BOT_ID, TOKEN, "idle", device="portaudio", seconds=1.0, on_ready=lambda: None
        ),
        30,
    )
    assert stats.capture_rate_hz == 16000
    # PortAudio's first callbacks may come in a burst: a generous window around 50 a second.
    assert 35 <= stats.mic_frames <= 70
    assert stats.mic_wakes <= stats.mic_frames // 5 + 2
    assert stats.appends_sent == 0 and _errors_sent(emulator) == 0
