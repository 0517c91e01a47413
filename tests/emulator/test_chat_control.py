"""Tool calls, cancel codes, message.create during a reply, clear, generate_audio."""

from __future__ import annotations

import json

from tests.emulator.helpers import Client, session
from voiced.protocol.events import (
    ConversationAudioCompleted,
    ConversationAudioDelta,
    ConversationAudioSentenceStart,
    ConversationChatCancel,
    ConversationChatCanceled,
    ConversationChatCompleted,
    ConversationChatCreated,
    ConversationChatFailed,
    ConversationChatRequiresAction,
    ConversationChatSubmitToolOutputs,
    ConversationClear,
    ConversationCleared,
    ConversationMessageCompleted,
    ConversationMessageCreate,
    Error,
    GenerateAudioData,
    InputTextGenerateAudio,
    MessageCreateData,
    SubmitToolOutputsData,
)
from voiced.protocol.models import ToolOutput


def outputs_for(action: ConversationChatRequiresAction, values: dict[str, object]) -> SubmitToolOutputsData:
    return SubmitToolOutputsData(
        chat_id=action.data.id,
        tool_outputs=[
            ToolOutput(tool_call_id=t.id, output=json.dumps(values[t.function.name]))
            for t in action.data.tool_calls
        ],
    )


async def ask_time(c: Client, spoken: str) -> tuple[str, bytes]:
    await c.say("What time is it?")
    action = await c.until(ConversationChatRequiresAction)
    assert action.data.status == "requires_action"
    [call] = action.data.tool_calls
    assert call.function.name == "current_time" and json.loads(call.function.arguments) == {}
    await c.send(
        ConversationChatSubmitToolOutputs(
            data=outputs_for(action, {"current_time": {"spoken": spoken, "iso": "x"}})
        )
    )
    end = await c.chat_end()
    assert isinstance(end, ConversationChatCompleted) and end.data.id == action.data.id
    answer = [m for m in c.events(ConversationMessageCompleted) if m.data.type == "answer"][-1]
    return answer.data.content, c.audio(action.data.id)


async def test_tool_output_changes_reply_text_and_audio() -> None:
    async with session(scenario="demo") as (_emu, c):
        await c.configure()
        text_a, audio_a = await ask_time(c, "ten past nine")
        text_b, audio_b = await ask_time(c, "a quarter to midnight")
        assert text_a == "It is ten past nine."
        assert text_b == "It is a quarter to midnight."
        assert audio_a and audio_b and audio_a != audio_b
        assert len(audio_b) > len(audio_a), "the longer answer is longer speech"


async def test_two_tools_in_one_chat_and_unique_ids() -> None:
    async with session(scenario="tools") as (_emu, c):
        await c.configure()
        await c.say("status please")
        action = await c.until(ConversationChatRequiresAction)
        names = [t.function.name for t in action.data.tool_calls]
        assert names == ["current_time", "device_status"]
        assert len({t.id for t in action.data.tool_calls}) == 2
        values = {
            "current_time": {"spoken": "noon", "iso": "x"},
            "device_status": {"uptime_s": 42, "load_1m": 0.5, "cpu_temp_c": None},
        }
        await c.send(ConversationChatSubmitToolOutputs(data=outputs_for(action, values)))
        await c.chat_end()
        answer = [m for m in c.events(ConversationMessageCompleted) if m.data.type == "answer"][
            -1
        ].data.content
        assert (
            "It is noon." in answer
            and "42 seconds" in answer
            and "load of 0.5" in answer
            and "unknown degrees" in answer
        )


async def test_wrong_chat_id_or_missing_ids_are_error_4000_and_the_chat_keeps_waiting() -> None:
    async with session(scenario="tools") as (_emu, c):
        await c.configure()
        await c.say("status")
        action = await c.until(ConversationChatRequiresAction)
        good = outputs_for(action, {"current_time": {"spoken": "noon"}, "device_status": {"uptime_s": 1}})
        wrong_chat = good.model_copy(update={"chat_id": "123"})
        await c.send(ConversationChatSubmitToolOutputs(data=wrong_chat))
        assert (await c.until(Error)).data.code == 4000
        partial = good.model_copy(update={"tool_outputs": good.tool_outputs[:1]})
        await c.send(ConversationChatSubmitToolOutputs(data=partial))
        error = await c.until(Error)
        assert error.data.code == 4000 and action.data.tool_calls[1].id in error.data.msg
        await c.send(ConversationChatSubmitToolOutputs(data=good))
        assert isinstance(await c.chat_end(), ConversationChatCompleted)


async def test_tool_timeout_fails_the_chat() -> None:
    async with session(scenario="demo", tool_timeout_s=0.3) as (_emu, c):
        await c.configure()
        await c.say("what time is it")
        action = await c.until(ConversationChatRequiresAction)
        end = await c.chat_end()
        assert isinstance(end, ConversationChatFailed) and end.data.id == action.data.id
        assert end.data.status == "failed" and end.data.last_error and end.data.last_error.msg
        assert not c.events(ConversationAudioDelta)


async def test_cancel_stops_audio_with_code_2() -> None:
    async with session(scenario="long", time_scale=0.5) as (_emu, c):
        await c.configure()
        await c.say("story")
        first = await c.until(ConversationAudioDelta)
        await c.send(ConversationChatCancel())
        canceled = await c.until(ConversationChatCanceled)
        assert canceled.data is not None and canceled.data.code == 2
        # Give a late delta every chance to show up, then check none came.
        await c.say("story again")
        await c.until(ConversationChatCreated, where=lambda e: e.data.id != first.data.chat_id)
        index = [r.event for r in c.received].index(canceled)
        late = [
            r.event
            for r in c.received[index:]
            if isinstance(r.event, ConversationAudioDelta) and r.event.data.chat_id == first.data.chat_id
        ]
        assert late == []
        assert not [e for e in c.events(ConversationChatCompleted) if e.data.id == first.data.chat_id]


async def test_stale_delta_fault_sends_exactly_n_deltas_after_cancel() -> None:
    async with session(scenario="long", time_scale=0.5, faults={"stale_deltas_after_cancel": 3}) as (_emu, c):
        await c.configure()
        await c.say("story")
        first = await c.until(ConversationAudioDelta)
        await c.send(ConversationChatCancel())
        canceled = await c.until(ConversationChatCanceled)
        await c.send(ConversationClear())
        await c.until(ConversationCleared)
        index = [r.event for r in c.received].index(canceled)
        late = [r.event for r in c.received[index:] if isinstance(r.event, ConversationAudioDelta)]
        assert len(late) == 3 and {d.data.chat_id for d in late} == {first.data.chat_id}


async def test_message_create_during_reply_cancels_with_code_3_then_answers() -> None:
    async with session(scenario="echo", time_scale=0.5) as (_emu, c):
        await c.configure()
        await c.say("This is a rather long first sentence. And another one follows it here.")
        first = await c.until(ConversationAudioDelta)
        await c.say("Second question.")
        canceled = await c.until(ConversationChatCanceled)
        assert canceled.data is not None and canceled.data.code == 3
        end = await c.chat_end()
        assert isinstance(end, ConversationChatCompleted) and end.data.id != first.data.chat_id
        assert [m for m in c.events(ConversationMessageCompleted) if m.data.type == "answer"][
            -1
        ].data.content == "Second question."


async def test_assistant_message_only_adds_context_and_clear_is_acked() -> None:
    async with session() as (_emu, c):
        await c.configure()
        await c.send(
            ConversationMessageCreate(data=MessageCreateData(role="assistant", content="Earlier I said hi."))
        )
        await c.send(ConversationClear())
        await c.until(ConversationCleared)
        assert not c.events(ConversationChatCreated)


async def test_generate_audio_speaks_without_chat_events() -> None:
    async with session() as (_emu, c):
        await c.configure()
        await c.send(InputTextGenerateAudio(data=GenerateAudioData(mode="text", text="Are you still there?")))
        done = await c.until(ConversationAudioCompleted)
        assert done.data is not None and done.data.id == "0" and done.data.chat_id == "0"
        assert [s.data.text for s in c.events(ConversationAudioSentenceStart)] == ["Are you still there?"]
        deltas = c.events(ConversationAudioDelta)
        assert (
            deltas
            and {d.data.id for d in deltas} == {"0"}
            and {d.data.conversation_id for d in deltas} == {"0"}
        )
        assert not [
            t for t in c.types() if t.startswith("conversation.chat") or t == "conversation.message.completed"
        ]
        await c.send(InputTextGenerateAudio(data=GenerateAudioData(mode="text", text="x" * 1025)))
        assert (await c.until(Error)).data.code == 4000


async def test_event_subscriptions_filter_the_downlink() -> None:
    wanted = ["chat.updated", "conversation.chat.completed", "conversation.audio.delta"]
    async with session(scenario="echo") as (_emu, c):
        await c.configure(event_subscriptions=wanted)
        await c.say("Only some events, please.")
        await c.until(ConversationChatCompleted)
        assert set(c.types()) == {"chat.created", *wanted}
