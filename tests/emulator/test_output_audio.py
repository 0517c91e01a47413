"""Reply audio in every codec the config can ask for, and its delivery pacing (protocol.md §4.1)."""

from __future__ import annotations

import numpy as np

from tests.emulator.helpers import session
from voiced.audio.codec import make_decoder
from voiced.protocol.events import ConversationAudioDelta, ConversationChatCompleted


async def test_opus_output_is_paced_packets_that_decode_to_speech() -> None:
    opus = {"codec": "opus", "opus_config": {"frame_size_ms": 20, "sample_rate": 16000, "bitrate": 24000}}
    async with session(scenario="echo", time_scale=0.5) as (_emu, c):
        await c.configure(output_audio=opus)
        await c.say("One two three.")
        assert isinstance(await c.chat_end(), ConversationChatCompleted)
        deltas = [r for r in c.received if isinstance(r.event, ConversationAudioDelta)]
        decoder = make_decoder("opus", 16000)
        pcm = b"".join(decoder.decode(r.event.audio()) for r in deltas)  # type: ignore[union-attr]
        assert decoder.errors == 0
        # One packet per delta, each exactly one 20 ms frame.
        assert len(pcm) == len(deltas) * 320 * 2
        assert np.abs(np.frombuffer(pcm, dtype=np.int16)).max() > 2000
        # Paced in (scaled) real time: n packets of 20 ms take about n * 20 ms * time_scale.
        wall_s = deltas[-1].at_s - deltas[0].at_s
        expected_s = (len(deltas) - 1) * 0.020 * 0.5
        assert 0.8 * expected_s < wall_s < 2.5 * expected_s + 0.1


async def test_g711_output_is_8khz_and_decodes() -> None:
    for codec in ("g711a", "g711u"):
        async with session(scenario="echo") as (_emu, c):
            await c.configure(output_audio={"codec": codec})
            await c.say("Hello there.")
            await c.chat_end()
            raw = c.audio()
            pcm = make_decoder(codec, 8000).decode(raw)
            assert len(pcm) == 2 * len(raw), "one byte per 8 kHz sample"
            assert 0.5 < len(raw) / 8000 < 5.0
            assert np.abs(np.frombuffer(pcm, dtype=np.int16)).max() > 2000


async def test_pcm_frame_size_is_paced_per_frame_at_the_requested_rate() -> None:
    pcm_config = {"sample_rate": 16000, "frame_size_ms": 40}
    async with session(scenario="echo", time_scale=0.5) as (_emu, c):
        await c.configure(output_audio={"codec": "pcm", "pcm_config": pcm_config})
        await c.say("Hi.")
        await c.chat_end()
        deltas = [r for r in c.received if isinstance(r.event, ConversationAudioDelta)]
        assert {len(r.event.audio()) for r in deltas} == {16000 * 40 // 1000 * 2}  # type: ignore[union-attr]
        wall_s = deltas[-1].at_s - deltas[0].at_s
        assert wall_s > 0.8 * (len(deltas) - 1) * 0.040 * 0.5


async def test_limit_config_caps_frames_per_period() -> None:
    # limit_config {period: 1, max_frame_num: 25} with 20 ms frames: the limit (40 ms apart) governs.
    opus = {
        "codec": "opus",
        "opus_config": {"frame_size_ms": 20, "limit_config": {"period": 1, "max_frame_num": 25}},
    }
    async with session(scenario="echo", time_scale=0.2) as (_emu, c):
        await c.configure(output_audio=opus)
        await c.say("Hi there.")
        await c.chat_end()
        deltas = [r for r in c.received if isinstance(r.event, ConversationAudioDelta)]
        wall_s = deltas[-1].at_s - deltas[0].at_s
        assert wall_s > 0.8 * (len(deltas) - 1) * 0.040 * 0.2
