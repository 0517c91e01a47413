"""Feedback sounds through the real playout pump into an in-memory speaker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from voiced.audio.frames import level_dbfs
from voiced.audio.jitter import JitterBuffer
from voiced.audio.settings import JitterSettings
from voiced.conversation.cues import CUE_KINDS, CuePlayer, bundled_cue_path, is_cue_id
from voiced.conversation.playout import Playout
from voiced.conversation.settings import ListenSettings
from voiced.devices.memory import MemorySink
from voiced.devices.wav import read_wav_mono
from voiced.errors import ConfigError

RATE_HZ = 24000
REPO = Path(__file__).resolve().parents[2]


def test_bundled_sounds_are_short_distinct_and_match_their_generator() -> None:
    durations = {}
    for kind in CUE_KINDS:
        pcm, rate = read_wav_mono(bundled_cue_path(kind))
        assert rate == RATE_HZ
        durations[kind] = pcm.size / rate
        assert 0.1 < durations[kind] < 1.0
        peak_dbfs = 20 * np.log10(np.max(np.abs(pcm.astype(np.int32))) / 32768)
        assert peak_dbfs == pytest.approx(-6.0, abs=0.1)
        assert level_dbfs(pcm) > -30.0
    assert len(set(durations.values())) == len(CUE_KINDS)
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_cues.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


async def test_a_cue_plays_through_the_playout_as_device_speech() -> None:
    sink = MemorySink(RATE_HZ)
    await sink.start()
    playout = Playout(sink, JitterBuffer(RATE_HZ, JitterSettings()))
    pump = asyncio.create_task(playout.run())
    player = CuePlayer(ListenSettings(cue_volume_pct=50), RATE_HZ)
    try:
        assert player.play("wake") == 0.0  # no speaker yet: nothing plays
        player.output = playout
        seconds = player.play("wake")
        wanted, _ = read_wav_mono(bundled_cue_path("wake"))
        assert seconds == pytest.approx(wanted.size / RATE_HZ, abs=0.001)
        await asyncio.sleep(0.05)
        assert playout.speaking
        assert is_cue_id(playout.jitter.playing_chat_id)
        await playout.wait_idle(2.0)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await sink.stop()
    heard = sink.audio()
    # What was heard is the bundled sound at half its level (the ring may fade its very edges).
    assert level_dbfs(heard) > -60.0
    peak_ratio = np.max(np.abs(heard.astype(np.int32))) / np.max(np.abs(wanted.astype(np.int32)))
    assert 0.45 < peak_ratio < 0.55
    assert player.played["wake"] == 1
    assert not is_cue_id("chat-123") and not is_cue_id(None)


async def test_an_interrupt_silences_a_cue() -> None:
    sink = MemorySink(RATE_HZ)
    await sink.start()
    playout = Playout(sink, JitterBuffer(RATE_HZ, JitterSettings()))
    pump = asyncio.create_task(playout.run())
    player = CuePlayer(ListenSettings(), RATE_HZ)
    player.output = playout
    try:
        assert player.play("fatal") > 0.7
        await asyncio.sleep(0.1)
        playout.interrupt(None)
        await playout.wait_idle(0.3)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await sink.stop()


def write_wav(path: Path, rate_hz: int, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(samples.astype("<i2").tobytes())


class Recorder:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, bytes]] = []
        self.completed: list[str] = []

    def push(self, chat_id: str, pcm: bytes, now_s: float) -> None:
        self.pushed.append((chat_id, pcm))

    def complete(self, chat_id: str) -> None:
        self.completed.append(chat_id)


def test_a_sound_replaced_by_path_is_resampled_and_a_bad_one_is_a_config_error(tmp_path: Path) -> None:
    own = tmp_path / "chime.wav"
    write_wav(own, 8000, np.full(4000, 10000, dtype=np.int16))  # 0.5 s at 8 kHz
    player = CuePlayer(ListenSettings(cue_files={"done": own}, cue_volume_pct=100), RATE_HZ)
    out = Recorder()
    player.output = out
    assert player.play("done") == pytest.approx(0.5, abs=0.01)
    chat_id, pcm = out.pushed[0]
    assert out.completed == [chat_id] and is_cue_id(chat_id)
    assert len(pcm) == pytest.approx(2 * RATE_HZ * 0.5, rel=0.01)
    player.play("done")
    assert out.pushed[1][0] != chat_id  # every play is its own id

    with pytest.raises(ConfigError, match=r"listen.cue_files: .*not found"):
        CuePlayer(ListenSettings(cue_files={"wake": tmp_path / "absent.wav"}), RATE_HZ)
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    with pytest.raises(ConfigError, match=r"listen.cue_files"):
        CuePlayer(ListenSettings(cue_files={"wake": tmp_path / "junk.wav"}), RATE_HZ)


def test_sounds_off_play_nothing() -> None:
    for settings in (ListenSettings(cues=False), ListenSettings(cue_volume_pct=0)):
        player = CuePlayer(settings, RATE_HZ)
        out = Recorder()
        player.output = out
        assert all(player.play(kind) == 0.0 for kind in CUE_KINDS)
        assert out.pushed == []
