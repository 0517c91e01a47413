"""Fixed per-frame workloads for counting instructions under valgrind (see instructions_bench.py).

    python -m benchmarks.instr_workload N

runs each operation N times between two calls of os.getppid(); callgrind started with
`--dump-before=getppid` writes one profile per interval, so the instruction count of every interval
is exact and free of interpreter start-up. Setup of each operation happens in its own interval.
The operation order is OPS; an empty loop runs first so its per-iteration cost can be subtracted.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "tests" / "fixtures" / "audio" / "lights_16k.wav"


def _speech_frames(rate_hz: int, n: int) -> list[bytes]:
    from voiced.audio.resample import resample

    with wave.open(str(SPEECH)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    x = resample(x, 16000, rate_hz)
    rng = np.random.default_rng(1)
    x = np.clip(x + rng.normal(0, 60, x.size), -32768, 32767).astype("<i2")
    block = rate_hz // 50
    frames = [x[i : i + block].tobytes() for i in range(0, x.size - block + 1, block)]
    return [frames[i % len(frames)] for i in range(n)]


def _setups(n: int) -> list[tuple[str, Callable[[], Callable[[int], None]]]]:
    """(name, setup) pairs; setup returns `step(i)` doing one frame's work."""

    def empty() -> Callable[[int], None]:
        def step(i: int) -> None:
            pass

        return step

    def detector() -> Callable[[int], None]:
        from voiced.audio.settings import VadSettings
        from voiced.audio.vad import TurnDetector

        frames = _speech_frames(16000, n)
        td = TurnDetector(VadSettings())

        def step(i: int) -> None:
            td.feed(frames[i], i * 0.02)

        return step

    def opus_encode(complexity: int) -> Callable[[], Callable[[int], None]]:
        def setup() -> Callable[[int], None]:
            from voiced.audio.codec import make_encoder
            from voiced.audio.settings import OpusSettings

            frames = _speech_frames(16000, n)
            enc = make_encoder("opus", 16000, 20, OpusSettings(complexity=complexity))

            def step(i: int) -> None:
                enc.encode(frames[i])

            return step

        return setup

    def append_template() -> Callable[[int], None]:
        from voiced.protocol.append import append_frame, new_append_id

        payload = bytes(60)

        def step(i: int) -> None:
            append_frame(payload, new_append_id())

        return step

    def append_model() -> Callable[[int], None]:
        from voiced.protocol.events import InputAudioBufferAppend, new_event_id

        payload = bytes(60)

        def step(i: int) -> None:
            InputAudioBufferAppend.from_audio(payload, event_id=new_event_id()).to_frame()

        return step

    def _delta_frame() -> str:
        return json.dumps(
            {
                "id": "evt-1",
                "event_type": "conversation.audio.delta",
                "detail": {"logid": "20250101000000ABCDEF"},
                "data": {
                    "id": "msg-1", "conversation_id": "conv-1", "bot_id": "bot", "chat_id": "chat-1",
                    "role": "assistant", "type": "answer", "content_type": "audio",
                    "content": base64.b64encode(bytes(60)).decode(),
                },
            }
        )  # fmt: skip

    def parse_fast() -> Callable[[int], None]:
        from voiced.protocol.parse import parse_server_frame_fast

        frame = _delta_frame()

        def step(i: int) -> None:
            parse_server_frame_fast(frame)

        return step

    def parse_two_pass() -> Callable[[int], None]:
        from voiced.protocol.events import parse_server_frame

        frame = _delta_frame()

        def step(i: int) -> None:
            parse_server_frame(frame)

        return step

    def opus_decode() -> Callable[[int], None]:
        from voiced.audio.codec import make_decoder, make_encoder

        enc = make_encoder("opus", 24000, 20)
        packets = [enc.encode(f) for f in _speech_frames(24000, n)]
        dec = make_decoder("opus", 24000)

        def step(i: int) -> None:
            dec.decode(packets[i])

        return step

    def jitter() -> Callable[[int], None]:
        from voiced.audio.jitter import JitterBuffer
        from voiced.audio.settings import JitterSettings

        frames = _speech_frames(24000, n)
        jb = JitterBuffer(24000, JitterSettings())

        def step(i: int) -> None:
            jb.push("c", frames[i], i * 0.02)
            jb.pull(480, i * 0.02)

        return step

    def resample_up() -> Callable[[int], None]:
        from voiced.audio.frames import as_int16
        from voiced.audio.resample import StreamResampler

        blocks = [as_int16(f) for f in _speech_frames(24000, n)]
        rs = StreamResampler(24000, 48000)

        def step(i: int) -> None:
            rs.process(blocks[i])

        return step

    def resample_down() -> Callable[[int], None]:
        from voiced.audio.frames import as_int16
        from voiced.audio.resample import StreamResampler

        blocks = [as_int16(f) for f in _speech_frames(48000, n)]
        rs = StreamResampler(48000, 16000)

        def step(i: int) -> None:
            rs.process(blocks[i])

        return step

    return [
        ("empty loop", empty),
        ("turn detector feed", detector),
        ("opus encode 16 kHz, complexity 0", opus_encode(0)),
        ("opus encode 16 kHz, complexity 1", opus_encode(1)),
        ("opus encode 16 kHz, complexity 5", opus_encode(5)),
        ("append, template", append_template),
        ("append, pydantic + uuid4 (before)", append_model),
        ("parse Opus delta, one pass", parse_fast),
        ("parse Opus delta, two passes (before)", parse_two_pass),
        ("opus decode 24 kHz", opus_decode),
        ("jitter push + pull 20 ms", jitter),
        ("resample 24 -> 48 kHz (playback)", resample_up),
        ("resample 48 -> 16 kHz (capture)", resample_down),
    ]


OPS = [name for name, _ in _setups(0)]


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 200
    for _, setup in _setups(n):
        step = setup()
        step(0)  # warm: first-call costs (imports, caches) belong to setup
        os.getppid()  # interval boundary: what follows is the operation alone
        for i in range(n):
            step(i)
        os.getppid()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
