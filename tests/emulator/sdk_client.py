"""A conversation held by the official Python SDK (cozepy), run by the SDK's own interpreter.

cozepy pins an older websockets than the daemon runs on, so it lives in a separate virtualenv and
this script is its only user in the tests: ``<sdk python> sdk_client.py PLAN.json`` reads a plan
(connection, steps), holds the conversation with cozepy's ``AsyncWebsocketsChatClient`` and prints
one JSON document: every event that reached a typed handler, what reached the error path, the SDK's
"unknown event" log lines and its dynamic-enum warnings. It imports nothing of the project.

Plan: ``{"base_url", "bot_id", "token", "tool_output", "steps": [...]}``; a step is one of
``{"wait": EVENT, "count": N}``, ``{"send": METHOD, "data": {...}}`` (a cozepy client method; its
event's typed data), ``{"send_open_update": {...}}`` (chat.update with fields cozepy 0.20 does not
model, through the SDK's own send queue), ``{"append_file": PATH, "chunk_bytes": N}``.
"""

# No `from __future__ import annotations`: pydantic resolves the open models' annotations at run time.
import asyncio
import json
import logging
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Optional

from cozepy import (
    AsyncCoze,
    AsyncTokenAuth,
    AsyncWebsocketsChatClient,
    AsyncWebsocketsChatEventHandler,
    ChatUpdateEvent,
    ConversationChatSubmitToolOutputsEvent,
    ConversationMessageCreateEvent,
    InputAudioBufferAppendEvent,
    InputTextGenerateAudioEvent,
    OutputAudio,
    ToolOutput,
)
from cozepy.request import Requester
from pydantic import ConfigDict

_DATA_OF = {
    "chat_update": ChatUpdateEvent.Data,
    "conversation_message_create": ConversationMessageCreateEvent.Data,
    "input_text_generate_audio": InputTextGenerateAudioEvent.Data,
}
_CONTENT_CHARS = 200


class _OpenTurnDetection(ChatUpdateEvent.TurnDetection):
    model_config = ConfigDict(extra="allow")


class _OpenAsrConfig(ChatUpdateEvent.ASRConfig):
    model_config = ConfigDict(extra="allow")


class _OpenOutputAudio(OutputAudio):
    model_config = ConfigDict(extra="allow")


class _OpenData(ChatUpdateEvent.Data):
    """chat.update data that keeps the fields this SDK version does not model."""

    model_config = ConfigDict(extra="allow")
    turn_detection: Optional[_OpenTurnDetection] = None  # noqa: UP045 - evaluated by pydantic at run time
    asr_config: Optional[_OpenAsrConfig] = None  # noqa: UP045
    output_audio: Optional[_OpenOutputAudio] = None  # noqa: UP045


class _OpenChatUpdate(ChatUpdateEvent):
    data: _OpenData


class _LogList(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:300])


class Recorder:
    """Wraps every typed handler of cozepy's chat handler; records what reaches each."""

    def __init__(self, tool_output: str, answer_tools: bool) -> None:
        self.typed: list[tuple[str, Any]] = []
        self.errors: list[str] = []
        self.closed = False
        self.arrived = asyncio.Event()
        self.tool_output = tool_output
        self.answer_tools = answer_tools

    def handlers(self) -> dict[Any, Any]:
        base = AsyncWebsocketsChatEventHandler().to_dict()
        return {kind: self._wrap(str(getattr(kind, "value", kind)), fn) for kind, fn in base.items()}

    def _wrap(self, name: str, original: Any) -> Any:
        async def handle(cli: Any, event: Any) -> None:
            if name in ("error", "client_error"):
                self.errors.append(f"{name}: {event}"[:500])
            else:
                self.typed.append((name, event))
            await original(cli, event)
            if name == "conversation.chat.requires_action" and self.answer_tools:
                await self._answer_tools(cli, event)
            self.arrived.set()

        async def closed(cli: Any) -> None:
            self.closed = True
            self.arrived.set()

        return closed if name == "closed" else handle

    async def _answer_tools(self, cli: Any, event: Any) -> None:
        calls = event.data.required_action.submit_tool_outputs.tool_calls
        outputs = [ToolOutput(tool_call_id=call.id, output=self.tool_output) for call in calls]
        await cli.conversation_chat_submit_tool_outputs(
            ConversationChatSubmitToolOutputsEvent.Data(chat_id=event.data.id, tool_outputs=outputs)
        )

    async def wait_for(self, name: str, count: int, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while len([n for n, _ in self.typed if n == name]) < count:
                if self.errors or self.closed:
                    raise RuntimeError(f"waiting for {name}: errors {self.errors}, closed {self.closed}")
                self.arrived.clear()
                await self.arrived.wait()


def _event_json(name: str, event: Any) -> dict[str, Any]:
    data: Any = getattr(event, "data", None)
    dumped: Any = data.model_dump(mode="json", exclude_none=True) if hasattr(data, "model_dump") else None
    if isinstance(dumped, dict) and name == "conversation.audio.delta":
        dumped["content"] = len(str(dumped.get("content", "")))
    elif isinstance(dumped, dict) and isinstance(dumped.get("content"), str):
        dumped["content"] = dumped["content"][:_CONTENT_CHARS]
    detail = getattr(event, "detail", None)
    return {"name": name, "data": dumped, "logid": getattr(detail, "logid", None)}


async def _run_steps(client: AsyncWebsocketsChatClient, recorder: Recorder, steps: list[Any]) -> None:
    for step in steps:
        if "wait" in step:
            await recorder.wait_for(step["wait"], step.get("count", 1), step.get("timeout_s", 20.0))
        elif "send_open_update" in step:
            event = _OpenChatUpdate(data=_OpenData.model_validate(step["send_open_update"]))
            await client._input_queue.put(event)  # the SDK's own send path, for a model it lacks
        elif "append_file" in step:
            pcm = await asyncio.to_thread(Path(step["append_file"]).read_bytes)
            size = step.get("chunk_bytes", 4800)
            for i in range(0, len(pcm), size):
                await client.input_audio_buffer_append(
                    InputAudioBufferAppendEvent.Data(delta=pcm[i : i + size])
                )
        else:
            method = getattr(client, step["send"])
            data_model = _DATA_OF.get(step["send"])
            await (method(data_model.model_validate(step["data"])) if data_model else method())


async def main(plan: dict[str, Any]) -> dict[str, Any]:
    recorder = Recorder(plan.get("tool_output", "{}"), plan.get("answer_tools", True))
    if plan.get("sdk_url"):
        coze = AsyncCoze(auth=AsyncTokenAuth(plan["token"]), base_url=plan["sdk_url"])
        client = coze.websockets.chat.create(bot_id=plan["bot_id"], on_event=recorder.handlers())
    else:
        # cozepy derives ws(s):// from an https:// REST base; a plain ws:// emulator is reached with
        # the same client class and the emulator URL as its base.
        client = AsyncWebsocketsChatClient(
            base_url=plan["base_url"],
            requester=Requester(auth=AsyncTokenAuth(plan["token"])),
            bot_id=plan["bot_id"],
            on_event=recorder.handlers(),
        )
    failure = None
    await client.connect()
    try:
        await _run_steps(client, recorder, plan["steps"])
    except Exception:
        failure = traceback.format_exc()[-2000:]
    finally:
        await client.close()
    return {
        "typed": [_event_json(name, event) for name, event in recorder.typed],
        "errors": recorder.errors,
        "failure": failure,
    }


if __name__ == "__main__":
    log = _LogList()
    logging.getLogger("cozepy").addHandler(log)
    logging.getLogger("cozepy").setLevel(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
    result["unknown_event_logs"] = [m for m in log.messages if "unknown event" in m]
    result["enum_warnings"] = sorted({str(w.message) for w in caught if "Unknown" in str(w.message)})
    print(json.dumps(result))
