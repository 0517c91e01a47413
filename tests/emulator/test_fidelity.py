"""The emulator behaves as the recorded real server does where clients can tell: the prologue, text
streamed ahead of audio, the trace's delta size mix, plain-text tool outputs, both usage spellings."""

from __future__ import annotations

import json
import random

import pytest

from tests.emulator.helpers import session
from voiced.emulator.bot import burst_chunks
from voiced.emulator.scenarios import DEFAULT_PROLOGUE, parse_scenario
from voiced.protocol.events import (
    ConversationAudioCompleted,
    ConversationAudioDelta,
    ConversationAudioSentenceStart,
    ConversationChatCompleted,
    ConversationChatCreated,
    ConversationChatRequiresAction,
    ConversationChatSubmitToolOutputs,
    ConversationMessageCompleted,
    SubmitToolOutputsData,
)
from voiced.protocol.models import ToolOutput


@pytest.mark.parametrize("seconds", [0.02, 0.3, 1.0, 4.7])
def test_burst_chunks_follow_the_trace_mix_and_lose_nothing(seconds: float) -> None:
    pcm = random.Random(1).randbytes(int(24000 * seconds) * 2)
    chunks = burst_chunks(pcm, 6000, 24000, random.Random(7))
    assert b"".join(chunks) == pcm
    assert all(len(c) % 2 == 0 and c for c in chunks)
    sizes = [len(c) for c in chunks]
    if len(pcm) > 12000 + 1200:
        assert sizes[0] == 10800 and sizes[-1] == 1200
    assert all(n <= 12000 for n in sizes)


def test_long_speech_meets_tiny_fragments() -> None:
    sizes = [len(c) for c in burst_chunks(bytes(24000 * 2 * 10), 6000, 24000, random.Random(3))]
    tiny = [n for n in sizes if n <= 300]
    assert tiny and all(n >= 4 for n in tiny)
    assert sizes.count(12000) >= 20


async def test_prologue_is_a_chat_without_a_user_message() -> None:
    async with session(scenario="demo") as (_emu, c):
        await c.configure(need_play_prologue=True)
        end = await c.chat_end()
        assert isinstance(end, ConversationChatCompleted)
        completed = c.events(ConversationMessageCompleted)
        assert [m.data.type for m in completed] == ["answer", "verbose"], "no question message"
        assert completed[0].data.content == DEFAULT_PROLOGUE
        starts = [s.data.text for s in c.events(ConversationAudioSentenceStart)]
        assert " ".join(starts) == DEFAULT_PROLOGUE and len(starts) == 3
        assert len(c.audio()) > 24000, "the prologue is spoken"
        chat_id = c.events(ConversationChatCreated)[0].data.id
        assert {d.data.chat_id for d in c.events(ConversationAudioDelta)} == {chat_id}
        # Another chat.update on the same connection does not greet again.
        await c.configure(need_play_prologue=True)
        await c.say("Hello there")
        await c.chat_end()
        answers = [m for m in c.events(ConversationMessageCompleted) if m.data.type == "answer"]
        assert len(answers) == 2 and answers[1].data.content != DEFAULT_PROLOGUE


async def test_prologue_content_and_the_scenarios_own() -> None:
    scenario = parse_scenario('prologue = "Welcome {home}. Ready."\n[fallback]\nreply = ["ok"]\n', "p.toml")
    async with session(scenario=scenario) as (_emu, c):
        await c.configure(need_play_prologue=True)
        await c.chat_end()
        assert c.events(ConversationMessageCompleted)[0].data.content == "Welcome {home}. Ready."
    async with session(scenario=scenario) as (_emu, c):
        await c.configure(need_play_prologue=True, prologue_content="Hi! 你好。")
        await c.chat_end()
        assert c.events(ConversationMessageCompleted)[0].data.content == "Hi! 你好。"


async def test_prologue_shapes_are_configurable() -> None:
    async with session(prologue_shape="audio_only") as (_emu, c):
        await c.configure(need_play_prologue=True)
        done = await c.until(ConversationAudioCompleted)
        assert done.data is not None and done.data.chat_id == "0"
        assert not c.events(ConversationChatCreated) and len(c.audio()) > 24000
    async with session(prologue_shape="ignore") as (_emu, c):
        await c.configure(need_play_prologue=True)
        await c.say("Hello")
        await c.chat_end()
        assert len(c.events(ConversationChatCreated)) == 1


async def test_reply_text_streams_ahead_of_its_audio() -> None:
    async with session(scenario="long", time_scale=0.3, think_delay_ms=0) as (_emu, c):
        await c.configure()
        await c.say("story")
        answer = await c.until(ConversationMessageCompleted, 30, where=lambda m: m.data.type == "answer")
        starts = c.events(ConversationAudioSentenceStart)
        # Nine sentences: their whole text is out while the first few are still being spoken.
        assert len(starts) <= 4, f"text finished only after {len(starts)} sentence starts"
        assert answer.data.content.count(".") == 9
        types = c.types()
        assert types.index("conversation.message.delta") < types.index("conversation.audio.sentence_start")


@pytest.mark.parametrize("output", ["17:45", '"17:45"'])
async def test_plain_text_tool_output_is_spoken(output: str) -> None:
    async with session(scenario="demo") as (_emu, c):
        await c.configure()
        await c.say("What time is it?")
        action = await c.until(ConversationChatRequiresAction)
        outputs = [ToolOutput(tool_call_id=call.id, output=output) for call in action.data.tool_calls]
        await c.send(
            ConversationChatSubmitToolOutputs(
                data=SubmitToolOutputsData(chat_id=action.data.id, tool_outputs=outputs)
            )
        )
        await c.chat_end()
        answer = next(m for m in c.events(ConversationMessageCompleted) if m.data.type == "answer")
        assert answer.data.content == "It is 17:45."


@pytest.mark.parametrize(
    ("spelling", "present", "absent"),
    [
        ("count", {"input_count", "output_count"}, {"input_tokens", "output_tokens"}),
        ("tokens", {"input_tokens", "output_tokens"}, {"input_count", "output_count"}),
        ("both", {"input_count", "output_count", "input_tokens", "output_tokens"}, set()),
    ],
)
async def test_usage_spelling(spelling: str, present: set[str], absent: set[str]) -> None:
    async with session(scenario="echo", usage_spelling=spelling) as (_emu, c):
        await c.configure()
        await c.say("one two three")
        end = await c.chat_end()
        raw = json.loads(str(c.received[-1].raw))
        assert present <= set(raw["data"]["usage"]) and not absent & set(raw["data"]["usage"])
        usage = end.data.usage
        assert usage is not None and usage.output_token_count == 3 and usage.input_token_count
        assert usage.total_token_count == usage.token_count
