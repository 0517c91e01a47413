"""Fixtures of the emulator tests: speech to send as the "user"."""

from __future__ import annotations

import asyncio

import pytest

from voiced.emulator.tts import Voice


@pytest.fixture(scope="session")
def user_speech_24k() -> bytes:
    """About 1.5 s of espeak-ng (or synthetic) speech, s16le mono 24 kHz."""
    return asyncio.run(Voice().speak("Please tell me what time it is.", 24000))
