"""The bot's voice: real, listenable speech from espeak-ng, or the deterministic synthetic fallback."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import webrtcvad

from tests.emulator.helpers import session
from voiced.emulator.tts import Voice, synthetic_speech
from voiced.protocol.events import ConversationChatCompleted


def voiced_fraction(pcm16k: bytes) -> float:
    vad = webrtcvad.Vad(2)
    frames = [pcm16k[i : i + 640] for i in range(0, len(pcm16k) - 639, 640)]
    voiced = sum(1 for f in frames if vad.is_speech(f, 16000))
    return voiced / len(frames)


def test_synthetic_voice_is_deterministic_speech_like_audio() -> None:
    a = synthetic_speech("The quick brown fox jumps over the lazy dog.")
    assert a == synthetic_speech("The quick brown fox jumps over the lazy dog.")
    assert a != synthetic_speech("Something else entirely.")
    assert 1.5 < len(a) / 32000 < 6.0
    assert voiced_fraction(a) > 0.5
    faster = synthetic_speech("The quick brown fox jumps over the lazy dog.", speech_rate=100)
    assert len(faster) < 0.7 * len(a)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_espeak_voice_resamples_and_caches() -> None:
    voice = Voice("espeak")
    assert voice.engine == "espeak-ng"
    pcm24 = await voice.speak("Hello from the emulator.", 24000)
    pcm16 = await voice.speak("Hello from the emulator.", 16000)
    assert abs(len(pcm24) / 48000 - len(pcm16) / 32000) < 0.01
    assert await voice.speak("Hello from the emulator.", 24000) is pcm24, "cached"
    assert voiced_fraction(pcm16) > 0.5
    # Text that looks like an option is spoken, not parsed by espeak-ng.
    assert len(await voice.speak("--version", 16000)) > 3200


async def test_synthetic_voice_serves_a_whole_turn() -> None:
    async with session(scenario="echo", voice="synthetic") as (emu, c):
        assert emu.voice.engine == "synthetic"
        await c.configure()
        await c.say("Synthetic speech, please.")
        assert isinstance(await c.chat_end(), ConversationChatCompleted)
        samples = np.frombuffer(c.audio(), dtype=np.int16)
        assert np.abs(samples).max() > 3000
