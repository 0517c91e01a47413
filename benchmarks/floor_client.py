"""The floor: the least code that does the work a voice client physically has to do, per mode.

It talks to the same chat URL as voiced, with the same token, bot id and `chat.update`, and then
does only what no client can skip, on one timer per 20 ms boundary (a `loop.call_at` chain, no task
per frame; in `idle`, one per `--idle-read-ms` boundary handling that many 20 ms frames in order, as
voiced reads its microphone while nothing waits for it):

- read the next 20 ms of the microphone (a WAV held in memory, paced by the loop clock like voiced's
  `--input-wav`; silence after its end) and run webrtcvad on it;
- `pcm` / `opus`: encode it (Opus: VOIP, 24 kb/s, complexity 0, FEC for 5 % loss, as voiced's
  defaults) or not, base64 it into a preformatted `input_audio_buffer.append` envelope and hand it
  to the socket straight from the timer;
- write the block due on that boundary (20 ms at 24 kHz, silence when nothing is queued) to the
  speaker: a WAV file written in place, one `os.write` per block, its header sized at the end.

One receive loop json-parses every frame, base64-decodes audio deltas, Opus-decodes them in `opus`
mode and queues them (a bounded FIFO, no jitter buffer); `input_audio_buffer.speech_started`
flushes the queue and drops the rest of that reply. `idle` is connected and listening (mic + VAD)
but sends nothing and has no speaker; `--device portaudio` (idle only) captures from PortAudio's
default input in 20 ms blocks with a callback that only collects them and hands the loop
`--idle-read-ms` of them at once.

Sends `READY=1` to `$NOTIFY_SOCKET` when `chat.updated` arrives, as voiced does, so the benchmark
measures both the same way. Run `python -m benchmarks.floor_client --help`; SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import wave
from base64 import b64decode, b64encode
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import webrtcvad
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

MIC_RATE_HZ = 16000
SPEAKER_RATE_HZ = 24000
FRAME_S = 0.020
MIC_FRAME_BYTES = MIC_RATE_HZ // 50 * 2
#: voiced's `audio.devices.idle_read_ms` default: idle, both read the mic this much per wake-up.
IDLE_READ_MS = 100
SPEAKER_BLOCK_BYTES = SPEAKER_RATE_HZ // 50 * 2
#: Queued reply audio beyond this (60 s at 24 kHz) is dropped from the front: the FIFO is bounded.
SPEAKER_QUEUE_MAX_BYTES = 60 * SPEAKER_RATE_HZ * 2
#: Frames are dropped, not queued, while the socket's write buffer holds more than this.
SEND_BUFFER_MAX_BYTES = 256 * 1024
MODES = ("idle", "pcm", "opus")
DEVICES = ("wav", "portaudio")
#: Rates webrtcvad takes directly: the PortAudio capture is opened at one of them, no resampling.
_VAD_RATES_HZ = (16000, 48000, 32000, 8000)
_ENVELOPE_HEAD = b'{"event_type":"input_audio_buffer.append","id":"floor-'
_ENVELOPE_MIDDLE = b'","data":{"delta":"'
_ENVELOPE_TAIL = b'"}}'
_CONNECT_TIMEOUT_S = 10.0
_UPDATED_TIMEOUT_S = 10.0


def chat_update_frame(mode: str) -> str:
    """The `chat.update` voiced sends for the same settings: `idle` is client-side turn detection
    (Opus), `pcm` / `opus` are server VAD with that codec both ways."""
    codec = "pcm" if mode == "pcm" else "opus"
    output: dict[str, Any] = {"codec": codec}
    if codec == "opus":
        output["opus_config"] = {"bitrate": 32000, "frame_size_ms": 20.0, "sample_rate": SPEAKER_RATE_HZ}
    else:
        output["pcm_config"] = {"sample_rate": SPEAKER_RATE_HZ}
    turn: dict[str, Any] = {"type": "client_interrupt"}
    if mode != "idle":
        turn = {"type": "server_vad", "prefix_padding_ms": 600, "silence_duration_ms": 500}
    data = {
        "input_audio": {
            "format": "pcm",
            "codec": codec,
            "sample_rate": MIC_RATE_HZ,
            "channel": 1,
            "bit_depth": 16,
        },
        "output_audio": output,
        "turn_detection": turn,
    }
    return json.dumps({"event_type": "chat.update", "data": data}, separators=(",", ":"))


@dataclass
class FloorStats:
    """What the client did; written as JSON at exit (`--stats-json`)."""

    mode: str
    device: str
    mic_frames: int = 0
    mic_wakes: int = 0  # wake-ups that handled mic frames (one per idle read, else one per frame)
    voiced_frames: int = 0
    appends_sent: int = 0
    appends_dropped: int = 0
    frames_received: int = 0
    audio_deltas: int = 0
    deltas_dropped: int = 0
    speaker_blocks: int = 0
    audible_blocks: int = 0
    late_ticks: int = 0
    server_errors: int = 0
    capture_rate_hz: int = 0


def _notify_ready() -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", "\0" + path[1:] if path.startswith("@") else path)


def _read_mic(path: Path) -> bytes:
    with wave.open(str(path)) as wav:
        if (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) != (MIC_RATE_HZ, 2, 1):
            raise SystemExit(f"{path}: the floor client reads 16 kHz 16-bit mono WAV; convert it first")
        return bytes(wav.readframes(wav.getnframes()))


class WavSpeaker:
    """A 24 kHz mono WAV written one block at a time; `close()` writes the real sizes in the header."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._bytes = 0
        os.write(self._fd, self._header(0))

    @staticmethod
    def _header(data_bytes: int) -> bytes:
        return struct.pack(
            "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1,
            SPEAKER_RATE_HZ, SPEAKER_RATE_HZ * 2, 2, 16, b"data", data_bytes,
        )  # fmt: skip

    def write(self, block: bytes) -> None:
        self._bytes += os.write(self._fd, block)

    def close(self) -> None:
        os.pwrite(self._fd, self._header(self._bytes), 0)
        os.close(self._fd)


class FloorClient:
    """One connection doing one mode's necessary work. Call `run()`; `stop()` ends it."""

    def __init__(
        self,
        ws: ClientConnection,
        mode: str,
        mic: bytes,
        speaker: WavSpeaker | None,
        stats: FloorStats,
        *,
        idle_read_ms: int = IDLE_READ_MS,
    ) -> None:
        self.ws = ws
        #: 20 ms frames handled per wake-up: several while idle (nothing waits for them), else one.
        self.frames_per_wake = max(1, idle_read_ms // 20) if mode == "idle" else 1
        self.mode = mode
        self.mic = mic
        self.speaker = speaker
        self.stats = stats
        self.vad = webrtcvad.Vad(2)
        self.encoder: Any = None
        self.decoder: Any = None
        if mode == "opus":
            # Imported here: only the Opus mode pays for libopus.
            import opuslib
            import opuslib.api.ctl
            import opuslib.api.encoder

            self.encoder = opuslib.Encoder(MIC_RATE_HZ, 1, "voip")
            self.encoder.bitrate = 24000
            self.encoder.complexity = 0
            # opuslib's inband_fec setter drops its argument: call the ctl directly, as voiced does.
            ctl, enc_ctl = opuslib.api.ctl, opuslib.api.encoder.encoder_ctl
            enc_ctl(self.encoder.encoder_state, ctl.set_inband_fec, 1)
            enc_ctl(self.encoder.encoder_state, ctl.set_packet_loss_perc, 5)
            self.decoder = opuslib.Decoder(SPEAKER_RATE_HZ, 1)
        self.queue = bytearray()
        self.silence = bytes(SPEAKER_BLOCK_BYTES)
        self.dropped_chat: str | None = None
        self.playing_chat: str | None = None
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._frame = 0

    # -- the 20 ms boundary ------------------------------------------------------------------------

    def start_clock(self) -> None:
        """Start the boundary timer: frame k is due once its last sample is captured, t0 + (k+1) x 20 ms."""
        self._t0 = self.loop.time()
        self._timer = self.loop.call_at(self._t0 + self.frames_per_wake * FRAME_S, self._tick)

    def _tick(self) -> None:
        due = int((self.loop.time() - self._t0) / FRAME_S)
        step = self.frames_per_wake
        self.stats.mic_wakes += 1
        if due - self._frame > step:
            self.stats.late_ticks += 1
        while self._frame < due:
            self._boundary(self._frame)
            self._frame += 1
        self._timer = self.loop.call_at(self._t0 + (self._frame + step) * FRAME_S, self._tick)

    def _boundary(self, k: int) -> None:
        start = k * MIC_FRAME_BYTES
        frame = self.mic[start : start + MIC_FRAME_BYTES]
        if len(frame) < MIC_FRAME_BYTES:
            frame = bytes(MIC_FRAME_BYTES)
        self.on_mic_frame(frame, MIC_RATE_HZ)
        if self.speaker is not None:
            self._play()

    def on_mic_block(self, block: bytes, rate_hz: int) -> None:
        """Consecutive 20 ms mic frames read at once: each handled in order."""
        self.stats.mic_wakes += 1
        frame_bytes = rate_hz // 50 * 2
        for start in range(0, len(block) - frame_bytes + 1, frame_bytes):
            self.on_mic_frame(block[start : start + frame_bytes], rate_hz)

    def on_mic_frame(self, frame: bytes, rate_hz: int) -> None:
        """One 20 ms mic frame: VAD, and (streaming modes) encode and send it."""
        self.stats.mic_frames += 1
        if self.vad.is_speech(frame, rate_hz):
            self.stats.voiced_frames += 1
        if self.mode == "idle":
            return
        payload = frame if self.encoder is None else self.encoder.encode(frame, MIC_RATE_HZ // 50)
        ws = self.ws
        if (
            ws.protocol.state is not State.OPEN
            or ws.transport.get_write_buffer_size() > SEND_BUFFER_MAX_BYTES
        ):
            self.stats.appends_dropped += 1
            return
        self.stats.appends_sent += 1
        envelope = b"".join(
            (
                _ENVELOPE_HEAD,
                str(self.stats.appends_sent).encode(),
                _ENVELOPE_MIDDLE,
                b64encode(payload),
                _ENVELOPE_TAIL,
            )
        )
        # What `await ws.send(text)` does inside, minus its async context: frame (and mask) it, then
        # write it to the transport; no task or coroutine per frame.
        ws.protocol.send_text(envelope)
        ws.send_data()

    def _play(self) -> None:
        assert self.speaker is not None
        self.stats.speaker_blocks += 1
        if len(self.queue) >= SPEAKER_BLOCK_BYTES:
            block = bytes(self.queue[:SPEAKER_BLOCK_BYTES])
            del self.queue[:SPEAKER_BLOCK_BYTES]
            self.stats.audible_blocks += 1
            self.speaker.write(block)
        else:
            self.speaker.write(self.silence)

    # -- the downlink ------------------------------------------------------------------------------

    async def receive(self) -> None:
        """Parse every server frame until the connection closes."""
        async for message in self.ws:
            self.stats.frames_received += 1
            event = json.loads(message)
            kind = event.get("event_type")
            if kind == "conversation.audio.delta":
                self._on_delta(event["data"])
            elif kind == "input_audio_buffer.speech_started":
                # The user talks over the reply: drop what is queued and the rest of that reply.
                self.queue.clear()
                self.dropped_chat = self.playing_chat
            elif kind == "error":
                self.stats.server_errors += 1

    def _on_delta(self, data: dict[str, Any]) -> None:
        self.stats.audio_deltas += 1
        chat_id = data.get("chat_id")
        if chat_id is not None and chat_id == self.dropped_chat:
            self.stats.deltas_dropped += 1
            return
        self.playing_chat = chat_id
        payload = b64decode(data["content"])
        if self.decoder is not None:
            payload = self.decoder.decode(payload, SPEAKER_RATE_HZ * 120 // 1000)
        self.queue += payload
        if len(self.queue) > SPEAKER_QUEUE_MAX_BYTES:
            del self.queue[: len(self.queue) - SPEAKER_QUEUE_MAX_BYTES]

    def stop(self) -> None:
        """End `run()` (safe from a signal handler)."""
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _capture_rate_hz(sd: Any) -> int:
    # As voiced: 16 kHz when the device takes it, else the device's own rate (webrtcvad reads it).
    default_hz = int(sd.query_devices(kind="input")["default_samplerate"])
    for rate in dict.fromkeys((MIC_RATE_HZ, default_hz, *_VAD_RATES_HZ)):
        if rate not in _VAD_RATES_HZ:
            continue
        try:
            sd.check_input_settings(samplerate=rate, channels=1, dtype="int16")
        except Exception:  # PortAudio refuses a format with a bare PortAudioError
            continue
        return rate
    raise SystemExit("the default input device takes none of 8/16/32/48 kHz for 16-bit mono; pick another")


def _open_capture(client: FloorClient) -> Any:
    """A PortAudio input stream of 20 ms blocks whose callback only collects them and hands the loop
    the client's frames per wake-up at once.

    The device block stays 20 ms, as voiced's: a client that must stream each frame as it is captured
    the moment a turn opens cannot listen through a longer device period (a larger block would cost
    fewer PortAudio and sound-server wake-ups, but only a client that never streams could use it).
    """
    import sounddevice as sd  # here: only the PortAudio device pays for PortAudio's start-up

    rate = _capture_rate_hz(sd)
    client.stats.capture_rate_hz = rate
    loop, on_block = client.loop, client.on_mic_block
    wake_bytes = rate // 50 * 2 * client.frames_per_wake
    pending = bytearray()

    def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
        pending.extend(indata)
        if len(pending) >= wake_bytes:
            loop.call_soon_threadsafe(on_block, bytes(pending), rate)
            pending.clear()

    block = rate // 50
    stream = sd.RawInputStream(samplerate=rate, channels=1, dtype="int16", blocksize=block, callback=callback)
    stream.start()
    return stream


async def run_floor(
    url: str,
    bot_id: str,
    token: str,
    mode: str,
    *,
    device: str = "wav",
    input_wav: Path | None = None,
    output_wav: Path | None = None,
    seconds: float | None = None,
    idle_read_ms: int = IDLE_READ_MS,
    on_ready: Callable[[], None] = _notify_ready,
) -> FloorStats:
    """Connect, configure, run the mode until `seconds` pass (or SIGTERM, or the server closes).

    `url` is the server's base (`ws://host:port`); the path and query are added as voiced adds them.
    """
    if mode not in MODES or device not in DEVICES:
        raise ValueError(f"mode must be one of {MODES} and device one of {DEVICES}")
    if device == "portaudio" and mode != "idle":
        raise ValueError("the PortAudio floor is measured idle only")
    if device == "wav" and input_wav is None:
        raise ValueError("--input-wav is required with the wav device")
    stats = FloorStats(mode, device)
    mic = _read_mic(input_wav) if input_wav is not None else b""
    chat_url = url.rstrip("/") + "/v1/chat?" + urlencode({"bot_id": bot_id})
    async with asyncio.timeout(_CONNECT_TIMEOUT_S):
        ws = await connect(
            chat_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            proxy=None,
            open_timeout=_CONNECT_TIMEOUT_S,
            ping_interval=10.0,
        )
    speaker = WavSpeaker(output_wav) if output_wav is not None and mode != "idle" else None
    client = FloorClient(ws, mode, mic, speaker, stats, idle_read_ms=idle_read_ms)
    stream: Any = None
    receiver: asyncio.Task[None] | None = None
    try:
        await ws.send(chat_update_frame(mode))
        async with asyncio.timeout(_UPDATED_TIMEOUT_S):
            while True:
                event = json.loads(await ws.recv())
                if event.get("event_type") == "chat.updated":
                    break
                if event.get("event_type") == "error":
                    raise RuntimeError(f"the server refused chat.update: {str(event.get('data'))[:200]}")
        receiver = asyncio.create_task(client.receive())
        receiver.add_done_callback(lambda _t: client.stop())
        # The device opens before READY, as voiced's does: PortAudio's start-up is not in the window.
        if device == "portaudio":
            stream = await asyncio.to_thread(_open_capture, client)
        else:
            client.start_clock()
        on_ready()
        with _stop_on_sigterm(client):
            if seconds is None:
                await client.done
            else:
                await asyncio.wait([client.done], timeout=seconds)
    finally:
        client.close()
        if stream is not None:
            await asyncio.to_thread(stream.close)
        if receiver is not None:
            receiver.cancel()
        await asyncio.wait_for(ws.close(), 5.0)
        if receiver is not None:
            await asyncio.gather(receiver, return_exceptions=True)
        if speaker is not None:
            speaker.close()
    return stats


class _stop_on_sigterm:  # noqa: N801  (used as a context manager, named like one)
    def __init__(self, client: FloorClient) -> None:
        self._client = client
        self._installed = False

    def __enter__(self) -> None:
        try:
            self._client.loop.add_signal_handler(signal.SIGTERM, self._client.stop)
            self._installed = True
        except (RuntimeError, ValueError):  # not the main thread (an in-process test): nothing to do
            pass

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            self._client.loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor_client", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. ws://127.0.0.1:8765")
    parser.add_argument("--bot-id", required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--device", choices=DEVICES, default="wav")
    parser.add_argument("--input-wav", type=Path, help="16 kHz mono 16-bit WAV (the wav device)")
    parser.add_argument("--output-wav", type=Path, help="the speaker (pcm / opus on the wav device)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: until SIGTERM)")
    parser.add_argument(
        "--idle-read-ms",
        type=int,
        default=IDLE_READ_MS,
        help=f"idle: ms of mic per wake-up, in 20 ms frames (voiced's: {IDLE_READ_MS}; 20: every frame)",
    )
    parser.add_argument("--stats-json", type=Path, help="write what the client did here at exit")
    args = parser.parse_args(argv)
    token = os.environ.get("COZE_API_TOKEN", "")
    if not token:
        print("set COZE_API_TOKEN (the emulator accepts any non-empty token)", file=sys.stderr)
        return 2
    stats = asyncio.run(
        run_floor(
            args.url, args.bot_id, token, args.mode, device=args.device, input_wav=args.input_wav,
            output_wav=args.output_wav, seconds=args.seconds, idle_read_ms=args.idle_read_ms,
        )
    )  # fmt: skip
    if args.stats_json is not None:
        args.stats_json.write_text(json.dumps(asdict(stats)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
