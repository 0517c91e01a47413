"""The baseline: a voice client built on the official ``cozepy`` SDK the way its realtime examples are.

What "the way its examples are" means here (protocol.md §6):

- ``AsyncWebsocketsChatClient`` with an ``AsyncWebsocketsChatEventHandler`` subclass; handlers run
  inline in cozepy's receive loop; the SDK's default connection options (permessage-deflate on);
- PCM up at 24 kHz, the microphone read in PyAudio-sized chunks of 1024 samples, each one
  ``input_audio_buffer_append`` as it is captured;
- a FIFO player: every decoded ``audio.delta`` is appended to an unbounded queue that a real-time
  device drains; playback starts on the first sample (no jitter buffer, no pre-roll);
- on ``speech_started`` / ``chat.canceled`` it prints and carries on: queued and late deltas still play;
- no reconnect: when the socket closes the client is done.

It runs in the SDK's own virtualenv (cozepy pins an older websockets than voiced runs on), started
by :mod:`benchmarks.baseline`. Run as ``python -m benchmarks.baseline --url ws://127.0.0.1:PORT
--bot-id ID --input-wav mic24k.wav --seconds 20 --stats-json out.json`` with ``COZE_API_TOKEN`` in
the environment. It sends ``READY=1`` to ``$NOTIFY_SOCKET`` once ``chat.updated`` arrives (as voiced
does), so start-up time is measured the same way for both. The measurements it writes are what the
benchmark compares with voiced.
"""

# No `from __future__ import annotations`: cozepy maps handlers to events by their annotations at run time.
import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cozepy import (
    AsyncTokenAuth,
    AsyncWebsocketsChatClient,
    AsyncWebsocketsChatEventHandler,
    ChatUpdatedEvent,
    ChatUpdateEvent,
    ConversationAudioCompletedEvent,
    ConversationAudioDeltaEvent,
    ConversationChatCanceledEvent,
    ConversationChatCompletedEvent,
    ConversationChatCreatedEvent,
    InputAudio,
    InputAudioBufferAppendEvent,
    InputAudioBufferSpeechStartedEvent,
    OutputAudio,
    PCMConfig,
)
from cozepy.request import Requester
from cozepy.websockets.ws import AsyncWebsocketsBaseClient, WebsocketsBaseClient

from benchmarks.baseline import percentile

RATE_HZ = 24000
MIC_CHUNK_SAMPLES = 1024
DEVICE_BLOCK_MS = 20


@dataclass
class BaselineStats:
    """What the baseline measured about itself (written as JSON at exit)."""

    mic_to_wire_ms: list[float] = field(default_factory=list)
    first_delta_to_first_sample_ms: list[float] = field(default_factory=list)
    uplink_frames: int = 0
    uplink_payload_bytes: int = 0
    uplink_audio_s: float = 0.0
    underruns: int = 0
    underrun_ms: float = 0.0
    played_ms: float = 0.0
    replies: int = 0
    interrupts: int = 0
    cancelled_played_ms: list[float] = field(default_factory=list)
    ready_s: float | None = None
    closed_early: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "mic_to_wire_ms": {
                "p50": percentile(self.mic_to_wire_ms, 50),
                "p99": percentile(self.mic_to_wire_ms, 99),
                "n": len(self.mic_to_wire_ms),
            },
            "first_delta_to_first_sample_ms": {
                "p50": percentile(self.first_delta_to_first_sample_ms, 50),
                "p99": percentile(self.first_delta_to_first_sample_ms, 99),
                "n": len(self.first_delta_to_first_sample_ms),
            },
            "uplink_frames": self.uplink_frames,
            "uplink_payload_bytes": self.uplink_payload_bytes,
            "uplink_audio_s": self.uplink_audio_s,
            "underruns": self.underruns,
            "underrun_ms": self.underrun_ms,
            "played_ms": self.played_ms,
            "replies": self.replies,
            "interrupts": self.interrupts,
            "cancelled_played_ms": self.cancelled_played_ms,
            "ready_s": self.ready_s,
            "closed_early": self.closed_early,
        }


class FifoPlayer:
    """The examples' player: one FIFO, drained by the device in real time from the first sample on."""

    def __init__(self, stats: BaselineStats) -> None:
        self.stats = stats
        self.block_bytes = RATE_HZ * DEVICE_BLOCK_MS // 1000 * 2
        self._fifo = bytearray()
        # Which chat each queued byte belongs to: (chat_id, bytes), in FIFO order (for measurement only).
        self._owners: deque[list[Any]] = deque()
        self._first_delta_s: dict[str, float] = {}
        self._first_sample_seen: set[str] = set()
        self.streaming_chat: str | None = None  # audio of this chat is still arriving
        self._starved = False
        # Per interrupt (the user talked over the device): ms played afterwards of the audio that was
        # queued or still arriving when it happened. The example never flushes, so all of it plays.
        self._interrupted_chats: dict[str, int] = {}
        self.interrupt_played_ms: list[float] = []

    def feed(self, chat_id: str, pcm: bytes) -> None:
        self._first_delta_s.setdefault(chat_id, time.monotonic())
        self.streaming_chat = chat_id
        self._fifo += pcm
        if self._owners and self._owners[-1][0] == chat_id:
            self._owners[-1][1] += len(pcm)
        else:
            self._owners.append([chat_id, len(pcm)])

    def _take_owner(self, n: int) -> str | None:
        owner = None
        while n > 0 and self._owners:
            head = self._owners[0]
            owner = owner or head[0]
            used = min(n, head[1])
            head[1] -= used
            n -= used
            if head[1] == 0:
                self._owners.popleft()
        return owner

    def _play_block(self) -> None:
        now = time.monotonic()
        n = min(self.block_bytes, len(self._fifo))
        if n:
            owner = self._take_owner(n)
            del self._fifo[:n]
            ms = n / 2 / RATE_HZ * 1000.0
            self.stats.played_ms += ms
            if owner is not None and owner not in self._first_sample_seen:
                self._first_sample_seen.add(owner)
                first_delta = self._first_delta_s.get(owner)
                if first_delta is not None:
                    self.stats.first_delta_to_first_sample_ms.append((now - first_delta) * 1000.0)
            interrupt = self._interrupted_chats.get(owner) if owner is not None else None
            if interrupt is not None:
                self.interrupt_played_ms[interrupt] += ms
        if n < self.block_bytes and self.streaming_chat is not None:
            # The reply is still arriving but the FIFO ran dry: the listener hears a gap.
            if not self._starved:
                self.stats.underruns += 1
                self._starved = True
            self.stats.underrun_ms += (self.block_bytes - n) / 2 / RATE_HZ * 1000.0
        else:
            self._starved = False

    async def run(self) -> None:
        """The sound card: one 20 ms block per period, real time."""
        period_s = DEVICE_BLOCK_MS / 1000.0
        start = time.monotonic()
        k = 0
        while True:
            k += 1
            delay = start + k * period_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._play_block()

    def finish(self) -> None:
        self.stats.cancelled_played_ms = list(self.interrupt_played_ms)

    def interrupted(self) -> bool:
        """The user spoke: if the device is talking, its queued and arriving audio counts as cancelled."""
        talking = {owner for owner, _ in self._owners}
        if self.streaming_chat is not None:
            talking.add(self.streaming_chat)
        talking -= set(self._interrupted_chats)
        if not talking:
            return False
        for chat in talking:
            self._interrupted_chats[chat] = len(self.interrupt_played_ms)
        self.interrupt_played_ms.append(0.0)
        return True


class MeasuredChatClient(AsyncWebsocketsChatClient):
    """cozepy's client unchanged, except that each sent frame is timed and counted (measurement only)."""

    def __init__(self, stats: BaselineStats, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = stats
        self.captured_at: deque[float] = deque()

    async def _send_event(self, event: Any = None) -> None:
        await super()._send_event(event)
        if isinstance(event, InputAudioBufferAppendEvent):
            now = time.monotonic()
            captured = self.captured_at.popleft() if self.captured_at else now
            self.stats.mic_to_wire_ms.append((now - captured) * 1000.0)
            self.stats.uplink_frames += 1
            self.stats.uplink_payload_bytes += len(event.model_dump_json(exclude_none=True))


class Handler(AsyncWebsocketsChatEventHandler):
    """The example's handler: print what happens, feed audio to the player, never cancel playback."""

    def __init__(self, player: FifoPlayer, stats: BaselineStats, started_s: float) -> None:
        self.player = player
        self.stats = stats
        self.started_s = started_s
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.current_chat: str | None = None

    async def on_chat_updated(self, cli: AsyncWebsocketsChatClient, event: ChatUpdatedEvent) -> None:
        self.stats.ready_s = time.monotonic() - self.started_s
        sd_notify("READY=1")
        self.ready.set()

    async def on_conversation_chat_created(
        self, cli: AsyncWebsocketsChatClient, event: ConversationChatCreatedEvent
    ) -> None:
        self.current_chat = event.data.id
        self.stats.replies += 1

    async def on_conversation_audio_delta(
        self, cli: AsyncWebsocketsChatClient, event: ConversationAudioDeltaEvent
    ) -> None:
        audio = event.data.get_audio()
        if audio:
            self.player.feed(event.data.chat_id or "", audio)

    async def on_conversation_audio_completed(
        self, cli: AsyncWebsocketsChatClient, event: ConversationAudioCompletedEvent
    ) -> None:
        self.player.streaming_chat = None

    async def on_conversation_chat_completed(
        self, cli: AsyncWebsocketsChatClient, event: ConversationChatCompletedEvent
    ) -> None:
        self.player.streaming_chat = None

    async def on_input_audio_buffer_speech_started(
        self, cli: AsyncWebsocketsChatClient, event: InputAudioBufferSpeechStartedEvent
    ) -> None:
        print("speech started", flush=True)
        self._interrupted()

    async def on_conversation_chat_canceled(
        self, cli: AsyncWebsocketsChatClient, event: ConversationChatCanceledEvent
    ) -> None:
        print("chat canceled", flush=True)
        self._interrupted()

    def _interrupted(self) -> None:
        if self.player.interrupted():
            self.stats.interrupts += 1

    async def on_closed(self, cli: AsyncWebsocketsBaseClient) -> None:
        self.closed.set()

    async def on_error(self, cli: AsyncWebsocketsBaseClient, e: Exception) -> None:
        print(f"error: {e}", file=sys.stderr, flush=True)

    async def on_client_error(self, cli: WebsocketsBaseClient, e: Exception) -> None:
        print(f"client error: {e}", file=sys.stderr, flush=True)
        self.closed.set()


def sd_notify(message: str) -> None:
    """One datagram to $NOTIFY_SOCKET, if set (the benchmark listens there for READY=1)."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def read_mic_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        if wav.getframerate() != RATE_HZ or wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise SystemExit(f"{path}: the baseline microphone needs 24 kHz mono s16 WAV")
        return wav.readframes(wav.getnframes())


async def stream_microphone(
    client: MeasuredChatClient, pcm: bytes, seconds: float, stats: BaselineStats
) -> None:
    """Capture in 1024-sample chunks at real time (silence after the file), appending each as it comes."""
    chunk_bytes = MIC_CHUNK_SAMPLES * 2
    chunk_s = MIC_CHUNK_SAMPLES / RATE_HZ
    start = time.monotonic()
    k = 0
    while (k + 1) * chunk_s <= seconds:
        k += 1
        due = start + k * chunk_s
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        offset = (k - 1) * chunk_bytes
        chunk = pcm[offset : offset + chunk_bytes]
        chunk = chunk + bytes(chunk_bytes - len(chunk))
        # Like voiced, from the capture of the chunk's first sample: the chunk length is latency too.
        client.captured_at.append(due - chunk_s)
        stats.uplink_audio_s += chunk_s
        await client.input_audio_buffer_append(InputAudioBufferAppendEvent.Data(delta=chunk))


async def run(
    url: str, bot_id: str, token: str, mic: bytes, *, seconds: float, turn_detection: str
) -> BaselineStats:
    started = time.monotonic()
    # SIGTERM ends the conversation early but still writes the measurements (the benchmark stops it so).
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stats = BaselineStats()
    player = FifoPlayer(stats)
    handler = Handler(player, stats, started)
    client = MeasuredChatClient(
        stats,
        base_url=url,
        requester=Requester(auth=AsyncTokenAuth(token)),
        bot_id=bot_id,
        on_event=handler,
    )
    await client.connect()
    device = asyncio.create_task(player.run())
    try:
        await client.chat_update(
            ChatUpdateEvent.Data.model_validate(
                {
                    "input_audio": InputAudio(
                        format="pcm", codec="pcm", sample_rate=RATE_HZ, channel=1, bit_depth=16
                    ),
                    "output_audio": OutputAudio(codec="pcm", pcm_config=PCMConfig(sample_rate=RATE_HZ)),
                    "turn_detection": ChatUpdateEvent.TurnDetection(type=turn_detection),
                }
            )
        )
        await asyncio.wait_for(handler.ready.wait(), 15)
        mic_task = asyncio.create_task(stream_microphone(client, mic, seconds, stats))
        closed = asyncio.create_task(handler.closed.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({mic_task, closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stats.closed_early = closed.done() and not mic_task.done()
        for task in (mic_task, closed, stopped):
            task.cancel()
        await asyncio.gather(mic_task, closed, stopped, return_exceptions=True)
    finally:
        device.cancel()
        await asyncio.gather(device, return_exceptions=True)
        player.finish()
        await client.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="ws://host:port of the emulator (or wss://ws.coze.cn)")
    parser.add_argument("--bot-id", required=True)
    parser.add_argument("--input-wav", type=Path, required=True, help="24 kHz mono s16 WAV (the microphone)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the conversation lasts")
    parser.add_argument("--turn-detection", default="server_vad", choices=["server_vad", "client_interrupt"])
    parser.add_argument("--stats-json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    token = os.environ.get("COZE_API_TOKEN", "")
    if not token:
        print("baseline: set COZE_API_TOKEN", file=sys.stderr)
        return 2
    stats = asyncio.run(
        run(
            args.url,
            args.bot_id,
            token,
            read_mic_wav(args.input_wav),
            seconds=args.seconds,
            turn_detection=args.turn_detection,
        )
    )
    if args.stats_json is not None:
        args.stats_json.write_text(json.dumps(stats.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["BaselineStats", "main", "run"]
