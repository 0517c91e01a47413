"""A text turn end to end: event order (protocol.md §4.2), typed frames, ids, audio and burst timing."""

from __future__ import annotations

import numpy as np

from tests.emulator.helpers import session
from voiced.protocol.events import (
    ChatCreated,
    ChatUpdated,
    ConversationAudioCompleted,
    ConversationAudioDelta,
    ConversationAudioSentenceStart,
    ConversationChatCompleted,
    ConversationChatCreated,
    ConversationMessageCompleted,
    ConversationMessageDelta,
    MalformedEvent,
    UnknownEvent,
)


async def test_chat_created_first_then_full_config_on_update() -> None:
    async with session() as (_emu, c):
        created = c.received[0]
        assert isinstance(created.event, ChatCreated) and created.event.data is None
        assert '"data"' not in str(created.raw)
        assert created.event.detail and created.event.detail.logid and created.event.detail.respond_at
        await c.configure(output_audio={"pcm_config": {"sample_rate": 16000}})
        first = c.events(ChatUpdated)[-1].data
        assert first.input_audio is not None and first.input_audio.format == "pcm"
        assert first.input_audio.codec == "pcm" and first.input_audio.sample_rate == 24000
        assert first.turn_detection is not None and first.turn_detection.type == "client_interrupt"
        # A second update merges into the effective config instead of replacing it.
        await c.configure(turn_detection={"silence_duration_ms": 800})
        second = c.events(ChatUpdated)[-1].data
        assert second.output_audio and second.output_audio.pcm_config
        assert second.output_audio.pcm_config.sample_rate == 16000
        assert second.turn_detection and second.turn_detection.silence_duration_ms == 800
        assert second.turn_detection.type == "client_interrupt"
        assert second.chat_config and second.chat_config.conversation_id


async def test_text_turn_order_ids_and_audio() -> None:
    async with session(scenario="echo") as (_emu, c):
        await c.configure()
        await c.say("Hello from the test. How are you today?")
        end = await c.chat_end()
        assert isinstance(end, ConversationChatCompleted)
        assert end.data.usage and end.data.usage.output_count and end.data.usage.token_count
        assert not [r for r in c.received if isinstance(r.event, UnknownEvent | MalformedEvent)]
        types = c.types()
        start = types.index("conversation.message.completed")
        order = [
            "conversation.message.completed",
            "conversation.chat.created",
            "conversation.chat.in_progress",
            "conversation.message.delta",
            "conversation.audio.sentence_start",
            "conversation.audio.delta",
        ]
        assert types[start : start + 3] == order[:3]
        assert types.index("conversation.message.delta") < types.index("conversation.audio.sentence_start")
        assert types[-2:] == ["conversation.audio.completed", "conversation.chat.completed"]
        completed = c.events(ConversationMessageCompleted)
        assert [m.data.type for m in completed] == ["question", "answer", "verbose"]
        answer = completed[1].data
        deltas = c.events(ConversationMessageDelta)
        assert deltas[-1].data.content == ""
        assert (
            "".join(d.data.content for d in deltas)
            == answer.content
            == "Hello from the test. How are you today?"
        )
        assert "generate_answer_finish" in completed[2].data.content
        chat_id = c.events(ConversationChatCreated)[0].data.id
        audio_deltas = c.events(ConversationAudioDelta)
        assert {d.data.id for d in audio_deltas} == {answer.id}
        assert {d.data.chat_id for d in audio_deltas} == {chat_id}
        assert c.events(ConversationAudioCompleted)[0].data.id == answer.id  # type: ignore[union-attr]
        assert [s.data.text for s in c.events(ConversationAudioSentenceStart)] == [answer.content]
        samples = np.frombuffer(c.audio(), dtype=np.int16)
        assert len(samples) > 24000 // 2, "at least half a second of speech"
        assert np.abs(samples).max() > 3000, "real audio, not silence"


async def test_pcm_burst_deltas_tail_and_speed() -> None:
    async with session(scenario="long", time_scale=1.0, think_delay_ms=0) as (_emu, c):
        await c.configure()
        await c.say("story")
        # Measure the first sentence only (a couple of seconds of audio) to keep the test short.
        await c.until(ConversationAudioSentenceStart)
        await c.until(ConversationAudioSentenceStart)
        deltas = [r for r in c.received if isinstance(r.event, ConversationAudioDelta)]
        sizes = [len(r.event.audio()) for r in deltas]  # type: ignore[union-attr]
        # The trace's mix (protocol.md §4.1): 225 ms first, 250 ms deltas with tiny even fragments,
        # a 25 ms closing delta, then the 300 ms all-zero tail.
        assert sizes[0] == 10800
        assert 12000 in sizes
        assert any(4 <= n <= 300 for n in sizes), sizes
        assert all(n % 2 == 0 for n in sizes)
        assert sizes[-2] == 1200
        assert sizes[-1] == 14400 and not any(deltas[-1].event.audio()), "300 ms all-zero tail"  # type: ignore[union-attr]
        audio_s = sum(sizes) / 48000
        wall_s = deltas[-1].at_s - deltas[0].at_s
        speed = audio_s / wall_s
        assert 3.0 < speed < 9.0, f"burst at ~6x real time, got {speed:.1f}x"
