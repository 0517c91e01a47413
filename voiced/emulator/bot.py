"""The emulated bot: turns a scenario turn into the server events of one chat, with real audio.

One :class:`ReplyRunner` produces one chat in the order of protocol.md §4.2::

    message.completed (user question) → chat.created → chat.in_progress
    [→ message.completed (function_call) → chat.requires_action … submit_tool_outputs
     → message.completed (tool_response) → chat.in_progress]
    → two streams at once, as in the recorded trace:
      text:  message.delta … (every sentence, at the LLM's pace) → empty message.delta
             → message.completed (answer) → message.completed (verbose generate_answer_finish)
      audio: per sentence, once its text is out: audio.sentence_start → audio.delta …
    → audio.completed → chat.completed (usage)

So all of a reply's text arrives long before its audio ends. Audio delivery follows the real server
(protocol.md §4.1): unpaced PCM / G.711 comes in bursts (``burst_speed_factor`` × real time,
``burst_delta_ms`` deltas mixed with tiny fragments, an all-zero tail per sentence); with
``frame_size_ms`` or ``limit_config`` set, and always for Opus, one frame per delta in real time.
The runner is cancelled by its session to stop a reply; everything it sends goes through the host.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from voiced.audio.codec import OPUS_RATES_HZ, Encoder, make_encoder
from voiced.audio.settings import OpusSettings
from voiced.emulator.faults import FaultPlan, FaultSettings
from voiced.emulator.scenarios import Turn, render_template
from voiced.emulator.settings import EmulatorSettings
from voiced.emulator.tts import Voice
from voiced.protocol.events import (
    ConversationAudioCompleted,
    ConversationAudioDelta,
    ConversationAudioSentenceStart,
    ConversationChatCompleted,
    ConversationChatCreated,
    ConversationChatFailed,
    ConversationChatInProgress,
    ConversationChatRequiresAction,
    ConversationMessageCompleted,
    ConversationMessageDelta,
    EventBase,
    SentenceStartData,
)
from voiced.protocol.models import (
    Chat,
    FunctionCall,
    LastError,
    LimitConfig,
    Message,
    OutputAudio,
    RequiredAction,
    SubmitToolOutputsAction,
    ToolCall,
    Usage,
)

CodecName = Literal["pcm", "opus", "g711a", "g711u"]
G711_RATE_HZ = 8000
DEFAULT_OPUS_FRAME_MS = 10
#: Frame sizes our Opus encoder can produce; the wire also allows 2.5 ms, which we round up to 5.
_OPUS_FRAME_MS = (5, 10, 20, 40, 60)
DEFAULT_PACED_FRAME_MS = 20
#: conversation.chat.failed code when the client never answers requires_action [guess: the real code
#: is not documented].
TOOL_TIMEOUT_ERROR_CODE = 5000
_VERBOSE_FINISH = json.dumps(
    {
        "msg_type": "generate_answer_finish",
        "data": json.dumps({"finish_reason": 0, "FinData": ""}, separators=(",", ":")),
        "from_module": None,
        "from_unit": None,
    },
    separators=(",", ":"),
)


class ReplyHost(Protocol):
    """What a reply needs from its connection (implemented by the emulator session)."""

    settings: EmulatorSettings
    voice: Voice
    plan: FaultPlan
    bot_id: str
    conversation_id: str
    section_id: str

    @property
    def faults(self) -> FaultSettings: ...

    async def send(self, event: EventBase) -> None: ...

    def new_numeric_id(self) -> str: ...

    async def wait_tool_outputs(self, chat: Chat, calls: list[ToolCall]) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class AudioPlan:
    """How reply audio is encoded and delivered, derived from the effective ``output_audio``."""

    codec: CodecName
    sample_rate_hz: int
    chunk_ms: int
    paced: bool
    min_spacing_s: float
    opus: OpusSettings | None = None

    @classmethod
    def from_config(cls, output: OutputAudio, settings: EmulatorSettings) -> AudioPlan:
        """The plan for ``output`` (the server's effective config, defaults already filled in)."""
        codec = cast(CodecName, output.codec if output.codec in ("pcm", "opus", "g711a", "g711u") else "pcm")
        pcm_config = output.pcm_config
        limit = None
        frame_ms: float | None = None
        if codec == "opus":
            opus_config = output.opus_config
            rate = (opus_config.sample_rate if opus_config else None) or 24000
            if rate not in OPUS_RATES_HZ:
                rate = 24000
            frame_ms = (opus_config.frame_size_ms if opus_config else None) or DEFAULT_OPUS_FRAME_MS
            frame = min((f for f in _OPUS_FRAME_MS if f >= frame_ms), default=60)
            limit = opus_config.limit_config if opus_config else None
            spacing = _limit_spacing_s(limit)
            bitrate = (opus_config.bitrate if opus_config else None) or 48000
            opus = OpusSettings(bitrate_bps=max(6000, min(510000, bitrate)), fec=False, expected_loss_pct=0)
            return cls("opus", rate, frame, True, spacing, opus)
        if codec in ("g711a", "g711u"):
            rate = G711_RATE_HZ
        else:
            rate = (pcm_config.sample_rate if pcm_config else None) or 24000
        if pcm_config is not None:
            frame_ms = pcm_config.frame_size_ms
            limit = pcm_config.limit_config
        paced = frame_ms is not None or limit is not None
        if paced:
            chunk = max(5, round(frame_ms or DEFAULT_PACED_FRAME_MS))
            return cls(codec, rate, chunk, True, _limit_spacing_s(limit))
        return cls(codec, rate, settings.burst_delta_ms, False, 0.0)

    def encoder(self) -> Encoder:
        """A fresh encoder for one reply (Opus keeps state between packets)."""
        return make_encoder(self.codec, self.sample_rate_hz, self.chunk_ms, self.opus)

    def chunk_samples(self) -> int:
        """Samples per delta."""
        return self.sample_rate_hz * self.chunk_ms // 1000


def _limit_spacing_s(limit: LimitConfig | None) -> float:
    # limit_config {period, max_frame_num}: at most max_frame_num deltas per period (protocol.md §3.1).
    if limit is None or not limit.period or not limit.max_frame_num:
        return 0.0
    return limit.period / limit.max_frame_num


class Pacer:
    """Keeps the delivery schedule of one reply: sleeps until each delta is due."""

    def __init__(self, settings: EmulatorSettings, plan: AudioPlan) -> None:
        self._settings = settings
        self._plan = plan
        self._due_s: float | None = None

    async def wait(self) -> None:
        """Sleep until the next delta may be sent, then book the one after it."""
        now = time.monotonic()
        if self._due_s is None or self._due_s < now - 0.5:
            # First delta, or we fell far behind (e.g. waiting on a slow client): restart the clock.
            self._due_s = now
        if self._due_s > now:
            await asyncio.sleep(self._due_s - now)
        chunk_s = self._plan.chunk_ms / 1000.0
        if self._plan.paced:
            step_s = max(chunk_s, self._plan.min_spacing_s)
        else:
            step_s = chunk_s / self._settings.burst_speed_factor
        self._due_s += step_s * self._settings.time_scale


def split_chunks(pcm: bytes, chunk_samples: int, pad: bool) -> list[bytes]:
    """``pcm`` cut into deltas of ``chunk_samples``; the last one zero-padded when ``pad``."""
    step = chunk_samples * 2
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    if pad and chunks and len(chunks[-1]) < step:
        chunks[-1] = chunks[-1] + bytes(step - len(chunks[-1]))
    return chunks


def text_pieces(sentence: str, words_per_delta: int = 2) -> list[str]:
    """A sentence as the small text increments an LLM streams; they concatenate to the sentence."""
    words = sentence.split(" ")
    pieces = []
    for i in range(0, len(words), words_per_delta):
        piece = " ".join(words[i : i + words_per_delta])
        pieces.append(piece if i + words_per_delta >= len(words) else piece + " ")
    return pieces


#: The trace's tiny deltas: an even byte count in this range, after about half of the full deltas.
_FRAGMENT_BYTES = (4, 300)
_FRAGMENT_CHANCE = 0.5
#: The trace ends each sentence's speech with a 25 ms delta, just before the all-zero tail.
_CLOSING_MS = 25


def burst_chunks(pcm: bytes, chunk_samples: int, rate_hz: int, rng: random.Random) -> list[bytes]:
    """Unpaced PCM cut as the real server cuts it (protocol.md §4.1): a first delta of 90 %, then full
    deltas each followed now and then by a tiny fragment, the rest, and a closing 25 ms delta.
    The pieces concatenate to ``pcm`` exactly; every piece has an even length.
    """
    step = chunk_samples * 2
    closing = rate_hz * _CLOSING_MS // 1000 * 2
    body_end = len(pcm) - closing if len(pcm) > step + closing else len(pcm)
    chunks: list[bytes] = []
    position = 0
    size = step * 9 // 10 // 2 * 2
    while position < body_end:
        take = min(size, body_end - position)
        chunks.append(pcm[position : position + take])
        position += take
        size = step
        if position < body_end and rng.random() < _FRAGMENT_CHANCE:
            low, high = _FRAGMENT_BYTES
            fragment = min(rng.randrange(low // 2, high // 2 + 1) * 2, body_end - position)
            chunks.append(pcm[position : position + fragment])
            position += fragment
    if position < len(pcm):
        chunks.append(pcm[position:])
    return chunks


@dataclass
class SpokenAudio:
    """Audio of one utterance being delivered; what is left of it feeds the stale-delta fault."""

    message: Message
    payloads: list[bytes] = field(default_factory=list)
    next_index: int = 0

    def upcoming(self, count: int) -> list[bytes]:
        """The next ``count`` payloads that were not sent (repeating the last one if the audio ends)."""
        left = self.payloads[self.next_index : self.next_index + count]
        while left and len(left) < count:
            left.append(left[-1])
        return left


class AudioSender:
    """Encodes sentences and sends them as ``conversation.audio.delta`` frames, paced per the plan."""

    def __init__(self, host: ReplyHost, plan: AudioPlan, message: Message, speech_rate: int) -> None:
        self._host = host
        self._plan = plan
        self._encoder = plan.encoder()
        self._pacer = Pacer(host.settings, plan)
        self._speech_rate = speech_rate
        self.message = message
        self.current: SpokenAudio | None = None
        self.deltas_sent = 0
        self._rng = random.Random(f"{host.settings.seed}:burst:{message.id}")

    async def speak(self, sentence: str) -> None:
        """Send ``sentence_start`` and the sentence's audio deltas."""
        settings = self._host.settings
        pcm = await self._host.voice.speak(sentence, self._plan.sample_rate_hz, self._speech_rate)
        tail = bytes(self._plan.sample_rate_hz * settings.burst_tail_ms // 1000 * 2)
        pad = self._plan.codec != "pcm"
        if self._plan.paced:
            chunks = split_chunks(pcm + tail, self._plan.chunk_samples(), pad=True)
        else:
            # The real server ends each sentence with its own all-zero chunk (protocol.md §4.1).
            if self._plan.codec == "pcm" and settings.burst_fragments:
                chunks = burst_chunks(pcm, self._plan.chunk_samples(), self._plan.sample_rate_hz, self._rng)
            else:
                chunks = split_chunks(pcm, self._plan.chunk_samples(), pad)
            if pad:
                chunks += split_chunks(tail, self._plan.chunk_samples(), pad)
            elif tail:
                chunks.append(tail)
        payloads = [self._encoder.encode(c) if self._plan.codec != "pcm" else c for c in chunks]
        self.current = SpokenAudio(self.message, payloads)
        await self._host.send(ConversationAudioSentenceStart(data=SentenceStartData(text=sentence)))
        for index, payload in enumerate(payloads):
            await self._pacer.wait()
            self.current.next_index = index + 1
            if self._plan.codec == "opus" and self._host.plan.lose_opus_packet(self._host.faults):
                continue
            await self._host.send(audio_delta(self.message, payload))
            self.deltas_sent += 1


def audio_delta(message: Message, payload: bytes) -> ConversationAudioDelta:
    """An audio delta carrying ``payload`` as part of ``message`` (same id as the text answer)."""
    data = message.model_copy(update={"content": base64.b64encode(payload).decode("ascii")})
    return ConversationAudioDelta(data=data)


def _now_s() -> int:
    return int(time.time())


class ReplyRunner:
    """Produces one chat for one user turn. Run :meth:`run` as a task; cancel it to stop the reply.

    After a cancel, the session reads :attr:`audio` to send stale deltas when that fault is on.
    """

    def __init__(
        self,
        host: ReplyHost,
        turn: Turn,
        *,
        user_text: str,
        audio_ms: int,
        output: OutputAudio,
        speech_rate: int = 0,
    ) -> None:
        self._host = host
        self._turn = turn
        self._user_text = user_text
        self._audio_ms = audio_ms
        self._plan = AudioPlan.from_config(output, host.settings)
        self._speech_rate = speech_rate
        self.chat_id = host.new_numeric_id()
        self.audio: AudioSender | None = None
        self._created_at = _now_s()

    def _chat(self, status: str, **extra: Any) -> Chat:
        host = self._host
        return Chat(
            id=self.chat_id,
            conversation_id=host.conversation_id,
            bot_id=host.bot_id,
            created_at=self._created_at,
            status=status,
            section_id=host.section_id,
            **extra,
        )

    def _message(
        self, role: str, kind: str, content: str, content_type: str = "text", **extra: Any
    ) -> Message:
        host = self._host
        return Message(
            id=extra.pop("id", None) or host.new_numeric_id(),
            conversation_id=host.conversation_id,
            bot_id=host.bot_id,
            role=role,
            type=kind,
            content=content,
            content_type=content_type,
            chat_id=self.chat_id,
            section_id=host.section_id,
            **extra,
        )

    async def run(self) -> None:
        """Send the whole chat. Returns when ``chat.completed`` / ``chat.failed`` has been queued."""
        host, turn = self._host, self._turn
        self._created_at = _now_s()
        zero = self._usage(0, 0)
        if self._user_text:
            await host.send(
                ConversationMessageCompleted(data=self._message("user", "question", self._user_text))
            )
        await host.send(ConversationChatCreated(data=self._chat("created", usage=zero)))
        await host.send(ConversationChatInProgress(data=self._chat("in_progress", usage=zero)))
        think_ms = turn.think_delay_ms if turn.think_delay_ms is not None else host.settings.think_delay_ms
        await asyncio.sleep(host.settings.scaled_s(think_ms))
        if turn.fail is not None:
            await self._fail(turn.fail.code, turn.fail.msg)
            return
        values: dict[str, Any] = {"user_text": self._user_text, "audio_ms": self._audio_ms}
        if turn.tool_calls:
            outputs = await self._call_tools()
            if outputs is None:
                return
            values.update(outputs)
        sentences = [render_template(s, values) for s in turn.reply]
        await self._answer(sentences)

    def _usage(self, input_count: int, output_count: int) -> Usage:
        spelling = self._host.settings.usage_spelling
        usage = Usage(token_count=input_count + output_count)
        if spelling in ("count", "both"):
            usage.input_count, usage.output_count = input_count, output_count
        if spelling in ("tokens", "both"):
            usage.input_tokens, usage.output_tokens = input_count, output_count
        return usage

    async def _fail(self, code: int, msg: str) -> None:
        failed = self._chat("failed", failed_at=_now_s(), last_error=LastError(code=code, msg=msg))
        await self._host.send(ConversationChatFailed(data=failed))

    async def _call_tools(self) -> dict[str, str] | None:
        host = self._host
        calls = [
            ToolCall(
                id=host.new_numeric_id(), function=FunctionCall(name=c.name, arguments=c.arguments_json())
            )
            for c in self._turn.tool_calls
        ]
        for call in calls:
            # [guess] the REST stream announces each call as a function_call message; the WS server
            # shares that backend. Clients must tolerate it either way.
            content = json.dumps({"name": call.function.name, "arguments": call.function.arguments})
            await host.send(
                ConversationMessageCompleted(data=self._message("assistant", "function_call", content))
            )
        action = RequiredAction(submit_tool_outputs=SubmitToolOutputsAction(tool_calls=calls))
        chat = self._chat("requires_action", required_action=action)
        await host.send(ConversationChatRequiresAction(data=chat))
        by_id = await host.wait_tool_outputs(chat, calls)
        if by_id is None:
            timeout_s = host.settings.tool_timeout_s
            await self._fail(
                TOOL_TIMEOUT_ERROR_CODE,
                f"no conversation.chat.submit_tool_outputs for chat {self.chat_id} within {timeout_s:g} s",
            )
            return None
        outputs: dict[str, str] = {}
        for call in calls:
            output = by_id[call.id]
            outputs.setdefault(call.function.name, output)
            await host.send(
                ConversationMessageCompleted(data=self._message("assistant", "tool_response", output))
            )
        await host.send(ConversationChatInProgress(data=self._chat("in_progress")))
        return outputs

    async def _answer(self, sentences: list[str]) -> None:
        host = self._host
        answer = self._message("assistant", "answer", "")
        audio_message = answer.model_copy(update={"content_type": "audio"})
        self.audio = AudioSender(host, self._plan, audio_message, self._speech_rate)
        # The text streams at the LLM's pace; each sentence is spoken once its text is out.
        written = [asyncio.Event() for _ in sentences]
        full_text: list[str] = []
        async with asyncio.TaskGroup() as group:
            group.create_task(self._stream_text(answer, sentences, written, full_text))
            for index, sentence in enumerate(sentences):
                await written[index].wait()
                await self.audio.speak(sentence)
        await host.send(ConversationAudioCompleted(data=audio_message))
        text = "".join(full_text)
        input_count = max(1, len(self._user_text.split())) + 10
        usage = self._usage(input_count, max(1, len(text.split())))
        await host.send(
            ConversationChatCompleted(data=self._chat("completed", completed_at=_now_s(), usage=usage))
        )

    async def _stream_text(
        self, answer: Message, sentences: list[str], written: list[asyncio.Event], full_text: list[str]
    ) -> None:
        host = self._host
        interval_s = host.settings.scaled_s(host.settings.text_delta_interval_ms)
        for index, sentence in enumerate(sentences):
            for piece in text_pieces((" " if index else "") + sentence):
                full_text.append(piece)
                await host.send(ConversationMessageDelta(data=answer.model_copy(update={"content": piece})))
                if interval_s > 0:
                    await asyncio.sleep(interval_s)
            written[index].set()
        await self._finish_text(answer, "".join(full_text))

    async def _finish_text(self, answer: Message, full_text: str) -> None:
        # The trace ends the text with an empty delta, the full answer, then a verbose finish packet,
        # while the last sentence's audio is still to come (protocol.md §4.2).
        host = self._host
        await host.send(ConversationMessageDelta(data=answer.model_copy(update={"content": ""})))
        await host.send(ConversationMessageCompleted(data=answer.model_copy(update={"content": full_text})))
        verbose = self._message("assistant", "verbose", _VERBOSE_FINISH)
        await host.send(ConversationMessageCompleted(data=verbose))


def generated_speech_sender(host: ReplyHost, output: OutputAudio, speech_rate: int = 0) -> AudioSender:
    """The sender for ``input_text.generate_audio``: no chat, every id "0" (like the recorded trace)."""
    message = Message(
        id="0",
        conversation_id="0",
        bot_id="0",
        role="assistant",
        type="answer",
        content="",
        content_type="audio",
        chat_id="0",
        section_id="0",
    )
    return AudioSender(host, AudioPlan.from_config(output, host.settings), message, speech_rate)


async def generate_audio(host: ReplyHost, sender: AudioSender, text: str) -> None:
    """Speak ``text``: sentence_start, audio deltas, audio.completed — and no chat events."""
    await sender.speak(text)
    await host.send(ConversationAudioCompleted(data=sender.message))
