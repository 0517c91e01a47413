"""``voiced demo``: the real daemon against the bundled emulator, with a bundled utterance as the mic.

It starts the emulator in this process, runs the daemon on a WAV source (or the real microphone with
``--live``) and a WAV sink (or the real speaker with ``--play``), waits for the first reply to finish
playing, prints the turn's timeline and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import wave
from importlib import resources
from pathlib import Path
from typing import Any

from voiced.agent.daemon import Daemon
from voiced.audio.codec import CodecUnavailable
from voiced.config import load_config
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.base import AudioSink, AudioSource, DeviceError
from voiced.devices.factory import open_sink, open_source
from voiced.devices.portaudio import reinitialise
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.errors import EXIT_FAILURE
from voiced.log import configure as configure_logging
from voiced.log import register_secret

DEFAULT_OUTPUT = Path("voiced-demo-reply.wav")


def bundled_utterance() -> Path:
    """The WAV the demo speaks into the daemon ("What time is it right now?", 16 kHz mono)."""
    return Path(str(resources.files("voiced") / "assets" / "utterance_16k.wav"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--live", action="store_true", help="use the real microphone instead of the bundled utterance"
    )
    parser.add_argument(
        "--play", action="store_true", help="play the reply on the speaker instead of writing a WAV"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUTPUT, help=f"reply WAV (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument("--input", type=Path, help="speak this WAV file instead of the bundled utterance")
    parser.add_argument(
        "--scenario", default="demo", help="emulator scenario: demo, echo, tools, long, or a file"
    )
    parser.add_argument(
        "--turn-detection", choices=["client_interrupt", "server_vad"], default="client_interrupt"
    )
    parser.add_argument("--timeout-s", type=float, default=60.0, help="give up after this long")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the daemon's log")


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


def print_timeline(turn: TurnTimeline, out: Path | None) -> None:
    """The human-readable account of one turn, on stdout."""
    s = turn.summary()

    def ms(key: str) -> str:
        value = s[key]
        return "-" if value is None else f"{value:.0f} ms"

    print("voiced demo: one turn with the bundled Coze emulator")
    print(f"  you said (as the emulator's ASR heard it): {turn.heard or '-'}")
    if turn.tool_calls:
        print(f"  the bot called device plugins:             {', '.join(turn.tool_calls)}")
    print(f"  the bot replied:                           {turn.reply or '-'}")
    print("  timeline")
    print(f"    end of your speech -> complete sent:      {ms('speech_end_to_complete_ms')}")
    print(f"    end of your speech -> first reply audio:  {ms('speech_end_to_first_delta_ms')}")
    print(f"    first reply audio  -> first sample played:{ms('first_delta_to_first_sample_ms'):>8}")
    print(f"    end of your speech -> you hear the reply: {ms('speech_end_to_first_sample_ms')}")
    print(
        f"    reply played: {turn.played_ms / 1000:.2f} s, underruns: {turn.underruns}, "
        f"interrupted: {turn.interrupted}"
    )
    if out is not None and out.exists():
        print(f"  reply audio written to {out} ({_wav_seconds(out):.2f} s)")


async def demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    configure_logging("info" if args.verbose else "warning", "console")
    token = "demo-" + secrets.token_urlsafe(16)
    register_secret(token)
    emulator_settings = EmulatorSettings(
        host="127.0.0.1", port=0, token=token, scenario=load_scenario(args.scenario)
    )
    async with serve_emulator(emulator_settings) as emu:
        config = load_config(
            None,
            environ={},
            overrides={
                "coze.base_url": emu.url,
                "coze.bot_id": "7000000000000000001",
                "coze.token": token,
                "session.turn_detection": args.turn_detection,
                "log.level": "info" if args.verbose else "warning",
            },
        )
        devices = config.audio.devices
        utterance = args.input or bundled_utterance()

        async def source() -> AudioSource:
            if args.live:
                src = open_source(devices, "portaudio")
            else:
                src = open_source(devices, "wav", path=utterance, paced=True, after_end="silence")
            await src.start()
            return src

        async def sink(sample_rate_hz: int) -> AudioSink:
            out = (
                open_sink(devices, "portaudio", sample_rate_hz)
                if args.play
                else open_sink(devices, "wav", sample_rate_hz, path=args.out)
            )
            await out.start()
            return out

        finished: asyncio.Future[TurnTimeline] = asyncio.get_running_loop().create_future()

        def on_turn(turn: TurnTimeline) -> None:
            if not finished.done() and turn.chat_id is not None:
                finished.set_result(turn)

        rescan = None
        if args.live or args.play:
            rescan = reinitialise
        daemon = Daemon(config, source, sink, on_turn=on_turn, rescan_devices=rescan)
        runner = asyncio.create_task(daemon.run(), name="daemon")
        try:
            waiter: asyncio.Future[TurnTimeline] = finished
            watched: set[asyncio.Future[Any]] = {runner, waiter}
            done, _ = await asyncio.wait(watched, timeout=args.timeout_s, return_when="FIRST_COMPLETED")
            if waiter not in done:
                waiter.cancel()
                if runner in done:
                    return runner.result() or EXIT_FAILURE
                print(f"voiced demo: no reply within {args.timeout_s:.0f} s", file=sys.stderr)
                return EXIT_FAILURE
            turn = waiter.result()
        except (DeviceError, CodecUnavailable) as exc:
            print(f"voiced demo: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            daemon.request_stop()
            try:
                exit_code = await asyncio.wait_for(runner, timeout=10.0)
            except (DeviceError, CodecUnavailable) as exc:
                print(f"voiced demo: {exc}", file=sys.stderr)
                exit_code = EXIT_FAILURE
        print_timeline(turn, None if args.play else args.out)
        return exit_code


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of ``voiced demo``."""
    return asyncio.run(demo(args))
