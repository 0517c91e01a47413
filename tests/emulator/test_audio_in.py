"""User audio: format checks (error 4000), client_interrupt turns, server VAD, bad packets."""

from __future__ import annotations

import struct

from tests.emulator.helpers import Client, session
from voiced.audio.codec import make_encoder
from voiced.protocol.events import (
    AudioDeltaData,
    ConversationAudioDelta,
    ConversationAudioTranscriptCompleted,
    ConversationAudioTranscriptUpdate,
    ConversationChatCanceled,
    ConversationChatCompleted,
    ConversationChatCreated,
    ConversationMessageCompleted,
    Error,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCleared,
    InputAudioBufferComplete,
    InputAudioBufferCompleted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
)


async def append_pcm(c: Client, pcm: bytes, chunk_bytes: int = 960) -> None:
    for i in range(0, len(pcm), chunk_bytes):
        await c.send(InputAudioBufferAppend.from_audio(pcm[i : i + chunk_bytes]))


def wav_header(sample_rate_hz: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate_hz, sample_rate_hz * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


async def test_headerless_audio_in_default_wav_format_is_error_4000(user_speech_24k: bytes) -> None:
    async with session() as (_emu, c):
        await c.send(InputAudioBufferAppend.from_audio(user_speech_24k[:960]))
        error = await c.until(Error)
        assert error.data.code == 4000
        assert "should follow the format: wav" in error.data.msg
        assert error.detail and error.detail.origin_message


async def test_wav_stream_with_riff_header_is_accepted(user_speech_24k: bytes) -> None:
    async with session(scenario="demo") as (_emu, c):
        await append_pcm(c, wav_header(24000) + user_speech_24k[:9600])
        await append_pcm(c, user_speech_24k[9600:])
        await c.send(InputAudioBufferComplete())
        await c.until(InputAudioBufferCompleted)
        transcript = await c.until(ConversationAudioTranscriptCompleted)
        assert transcript.data.content == "What time is it right now?"
        assert not c.events(Error)


async def test_client_interrupt_turn(user_speech_24k: bytes) -> None:
    async with session(scenario="echo") as (_emu, c):
        await c.configure()
        await append_pcm(c, user_speech_24k)
        await c.send(InputAudioBufferComplete())
        end = await c.chat_end()
        assert isinstance(end, ConversationChatCompleted)
        types = c.types()
        i = types.index("input_audio_buffer.completed")
        assert types[i + 1] == "conversation.audio_transcript.update"
        j = types.index("conversation.audio_transcript.completed")
        assert types[j + 1 : j + 3] == ["conversation.message.completed", "conversation.chat.created"]
        updates = [u.data.content for u in c.events(ConversationAudioTranscriptUpdate)]
        assert updates == sorted(updates, key=len) and all(
            len(u) < len("Testing, one, two, three.") for u in updates
        )
        question = c.events(ConversationMessageCompleted)[0].data
        assert question.role == "user" and question.content == "Testing, one, two, three."
        assert c.events(ConversationMessageCompleted)[1].data.content == "Testing, one, two, three."


async def test_empty_buffer_complete_is_acked_without_reply() -> None:
    async with session() as (_emu, c):
        await c.configure()
        await c.send(InputAudioBufferComplete())
        await c.until(InputAudioBufferCompleted)
        await c.send(InputAudioBufferClear())
        await c.until(InputAudioBufferCleared)
        assert not c.events(ConversationChatCreated)


async def test_bad_base64_and_corrupt_opus_are_error_events_not_crashes(user_speech_24k: bytes) -> None:
    async with session(scenario="echo") as (emu, c):
        await c.configure(input_audio={"format": "pcm", "codec": "opus", "sample_rate": 16000})
        await c.send(InputAudioBufferAppend(data=AudioDeltaData(delta="!!not base64!!")))
        assert "base64" in (await c.until(Error)).data.msg
        await c.send(InputAudioBufferAppend.from_audio(b"\xff\xff\xff\xfe garbage that is no opus"))
        assert "opus" in (await c.until(Error)).data.msg
        # Exactly one raw packet per append: real packets are accepted and the session goes on.
        encoder = make_encoder("opus", 16000, 20)
        speech = user_speech_24k[: 16000 * 2]
        for i in range(0, len(speech) - 640, 640):
            await c.send(InputAudioBufferAppend.from_audio(encoder.encode(speech[i : i + 640])))
        await c.send(InputAudioBufferComplete())
        assert isinstance(await c.chat_end(), ConversationChatCompleted)
        assert len(c.events(Error)) == 2
        assert emu.active_connections == 1


async def test_server_vad_detects_speech_and_user_speech_cancels_the_reply(user_speech_24k: bytes) -> None:
    silence = bytes(24000 * 2 // 2)  # 0.5 s
    async with session(scenario="long") as (_emu, c):
        await c.configure(
            turn_detection={"type": "server_vad", "silence_duration_ms": 400, "prefix_padding_ms": 300}
        )
        await append_pcm(c, silence + user_speech_24k + silence + silence)
        await c.until(InputAudioBufferSpeechStarted)
        await c.until(InputAudioBufferSpeechStopped)
        final = await c.until(ConversationAudioTranscriptCompleted)
        assert final.data.content == "Tell me a long story."
        # protocol.md §4.2: speech_started → interim transcripts → speech_stopped → completed.
        types = c.types()
        started, stopped = (
            types.index("input_audio_buffer.speech_started"),
            types.index("input_audio_buffer.speech_stopped"),
        )
        assert started < types.index("conversation.audio_transcript.update") < stopped
        created = await c.until(ConversationChatCreated)
        await c.until(ConversationAudioDelta)
        # The user talks over the reply: speech_started, then the reply is canceled with code 1.
        await append_pcm(c, silence + user_speech_24k)
        await c.until(InputAudioBufferSpeechStarted)
        canceled = await c.until(ConversationChatCanceled)
        assert canceled.data is not None and canceled.data.code == 1
        types = c.types()
        assert types.index("conversation.chat.canceled") > len(types) - 1 - types[::-1].index(
            "input_audio_buffer.speech_started"
        )
        stale = [d for d in c.events(ConversationAudioDelta) if d.data.chat_id == created.data.id]
        after = c.received[[r.event for r in c.received].index(canceled) :]
        assert not [
            r
            for r in after
            if isinstance(r.event, ConversationAudioDelta) and r.event.data.chat_id == created.data.id
        ]
        assert stale
