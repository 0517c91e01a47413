"""One representative instance of every event type, both directions."""

from __future__ import annotations

from voiced.protocol import events as ev
from voiced.protocol.models import (
    AsrConfig,
    Chat,
    ChatConfig,
    EmotionConfig,
    ErrorData,
    FunctionCall,
    InputAudio,
    InterruptConfig,
    LastError,
    LimitConfig,
    Message,
    OpusConfig,
    OutputAudio,
    PcmConfig,
    RequiredAction,
    SessionConfig,
    SubmitToolOutputsAction,
    ToolCall,
    ToolOutput,
    TurnDetection,
    Usage,
    VoicePrintConfig,
)

DETAIL = ev.Detail(logid="0217abc", respond_at="1752474748918")

FULL_CONFIG = SessionConfig(
    chat_config=ChatConfig(
        conversation_id="7526",
        user_id="u1",
        meta_data={"k": "v"},
        custom_variables={"name": "Ada"},
        extra_params={"latitude": "39.98", "longitude": "116.30"},
        auto_save_history=True,
        parameters={"CONVERSATION_NAME": "x"},
    ),
    input_audio=InputAudio(format="pcm", codec="opus", sample_rate=16000, channel=1, bit_depth=16),
    output_audio=OutputAudio(
        codec="opus",
        pcm_config=PcmConfig(
            sample_rate=24000, frame_size_ms=20, limit_config=LimitConfig(period=1, max_frame_num=18)
        ),
        opus_config=OpusConfig(
            bitrate=16000, use_cbr=False, frame_size_ms=60, limit_config=LimitConfig(period=1)
        ),
        speech_rate=10,
        loudness_rate=-5,
        voice_id="v1",
        emotion_config=EmotionConfig(emotion="happy", emotion_scale=3.5),
    ),
    turn_detection=TurnDetection(
        type="server_vad",
        prefix_padding_ms=600,
        silence_duration_ms=500,
        interrupt_config=InterruptConfig(mode="keyword_prefix", keywords=["coze"]),
    ),
    asr_config=AsrConfig(
        hot_words=["voiced"], context="ctx", user_language="en", enable_ddc=True, enable_itn=False
    ),
    event_subscriptions=["conversation.audio.delta"],
    need_play_prologue=True,
    prologue_content="Hi",
    voice_print_config=VoicePrintConfig(group_id="g", score=40, reuse_voice_info=True),
)

CHAT = Chat(
    id="7526821559890198568",
    conversation_id="7526821722323025972",
    bot_id="7496347519799787557",
    created_at=1752474749,
    status="in_progress",
    usage=Usage(token_count=0, output_count=0, input_count=0),
    section_id="7526821722323025972",
)
TOOL_CHAT = CHAT.model_copy(
    update={
        "status": "requires_action",
        "required_action": RequiredAction(
            type="submit_tool_outputs",
            submit_tool_outputs=SubmitToolOutputsAction(
                tool_calls=[ToolCall(id="call_1", function=FunctionCall(name="current_time", arguments="{}"))]
            ),
        ),
    }
)
MESSAGE = Message(
    id="7526821714748293172",
    conversation_id=CHAT.conversation_id,
    bot_id=CHAT.bot_id,
    chat_id=CHAT.id,
    section_id=CHAT.section_id,
    role="assistant",
    type="answer",
    content="是啊",
    content_type="text",
)
AUDIO_MESSAGE = MESSAGE.model_copy(update={"content": "AAABAAIA", "content_type": "audio"})

SERVER_SAMPLES: list[ev.EventBase] = [
    ev.ChatCreated(id="e1", detail=DETAIL),
    ev.ChatUpdated(id="e2", data=FULL_CONFIG, detail=DETAIL),
    ev.ConversationChatCreated(id="e3", data=CHAT.model_copy(update={"status": "created"}), detail=DETAIL),
    ev.ConversationChatInProgress(id="e4", data=CHAT, detail=DETAIL),
    ev.ConversationMessageDelta(id="e5", data=MESSAGE, detail=DETAIL),
    ev.ConversationMessageCompleted(id="e6", data=MESSAGE, detail=DETAIL),
    ev.ConversationAudioSentenceStart(id="e7", data=ev.SentenceStartData(text="是啊。"), detail=DETAIL),
    ev.ConversationAudioDelta(id="e8", data=AUDIO_MESSAGE, detail=DETAIL),
    ev.ConversationAudioCompleted(
        id="e9", data=AUDIO_MESSAGE.model_copy(update={"content": ""}), detail=DETAIL
    ),
    ev.ConversationChatRequiresAction(id="e10", data=TOOL_CHAT, detail=DETAIL),
    ev.ConversationChatCompleted(
        id="e11",
        data=CHAT.model_copy(update={"status": "completed", "completed_at": 1752474750}),
        detail=DETAIL,
    ),
    ev.ConversationChatFailed(
        id="e12",
        data=CHAT.model_copy(
            update={
                "status": "failed",
                "failed_at": 1,
                "last_error": LastError(code=5000, msg="model failed"),
            }
        ),
        detail=DETAIL,
    ),
    ev.ConversationChatCanceled(
        id="e13", data=ev.CanceledData(code=2, msg="canceled by client"), detail=DETAIL
    ),
    ev.ConversationCleared(id="e14", detail=DETAIL),
    ev.InputAudioBufferCompleted(id="e15", detail=DETAIL),
    ev.InputAudioBufferCleared(id="e16", detail=DETAIL),
    ev.InputAudioBufferSpeechStarted(id="e17", detail=DETAIL),
    ev.InputAudioBufferSpeechStopped(id="e18", detail=DETAIL),
    ev.ConversationAudioTranscriptUpdate(id="e19", data=ev.TranscriptData(content="what ti"), detail=DETAIL),
    ev.ConversationAudioTranscriptCompleted(
        id="e20", data=ev.TranscriptData(content="what time"), detail=DETAIL
    ),
    ev.Error(
        id="e21",
        data=ErrorData(code=4000, msg="invalid parameter"),
        detail=ev.Detail(logid="x", origin_message='{"event_type":"input_audio_buffer.append"}'),
    ),
    ev.DumpAudio(id="e22", data=ev.DumpAudioData(url="https://example.invalid/a.wav"), detail=DETAIL),
]

CLIENT_SAMPLES: list[ev.EventBase] = [
    ev.ChatUpdate(id="c1", data=FULL_CONFIG),
    ev.InputAudioBufferAppend.from_audio(b"\x01\x02\x03", event_id="c2"),
    ev.InputAudioBufferComplete(id="c3"),
    ev.InputAudioBufferClear(id="c4"),
    ev.ConversationMessageCreate(id="c5", data=ev.MessageCreateData(role="user", content="今天天气真不错")),
    ev.ConversationClear(id="c6"),
    ev.ConversationChatSubmitToolOutputs(
        id="c7",
        data=ev.SubmitToolOutputsData(
            chat_id="7526", tool_outputs=[ToolOutput(tool_call_id="call_1", output='{"spoken": "noon"}')]
        ),
    ),
    ev.ConversationChatCancel(id="c8"),
    ev.InputTextGenerateAudio(id="c9", data=ev.GenerateAudioData(mode="text", text="亲，你怎么不说话了。")),
]
