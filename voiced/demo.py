"""``voiced demo``: the real daemon against the bundled emulator, with a bundled utterance as the mic.

It starts the emulator in this process, runs the daemon on a WAV source (or the real microphone with
``--live``) and a WAV sink (or the real speaker with ``--play``), prints what happens as it happens
(listening, wake word, heard, thinking, tool called, speaking), waits for the first reply to finish
playing, prints the turn's timeline and exits 0. ``--call TOOL --args JSON`` makes the emulated bot
call one of your own plugins instead of following a scenario.

The demo listens as a speaker does: for the wake word first (``--listen wake_word``, the default with
the bundled utterance "Okay Nabu, what time is it?" or ``--live``), so the reply WAV holds the wake
chime, then the reply. ``--listen always`` skips the wake word; it is the default with ``--input``,
whose recording is unlikely to start with one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
import time
import wave
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from voiced.agent.daemon import Daemon
from voiced.audio.codec import CodecUnavailable
from voiced.config import VoicedConfig, find_config_file, load_config
from voiced.conversation.timeline import TurnTimeline
from voiced.devices.base import AudioSink, AudioSource, DeviceError
from voiced.devices.factory import open_sink, open_source
from voiced.devices.portaudio import reinitialise
from voiced.devices.wav import read_wav_mono
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.emulator.scenarios import Scenario, ScenarioError, ToolCallSpec, Turn
from voiced.errors import EXIT_CONFIG, EXIT_DEVICE, EXIT_FAILURE, EXIT_USAGE, FatalError
from voiced.log import configure as configure_logging
from voiced.log import register_secret

#: Written to the current directory unless --out says otherwise.
DEFAULT_OUTPUT = Path("voiced-demo-reply.wav")
#: How long a real microphone or speaker may take to open before the demo gives up on it.
DEVICE_PROBE_TIMEOUT_S = 5.0
#: While the reply plays, a progress line this often (a long reply must not look like a hang).
SPEAKING_PROGRESS_S = 5.0
_TEMPLATE_NAME = re.compile(r"[A-Za-z_]\w*")


#: The wake word the bundled wake utterance says (a model inside pymicro-wakeword).
DEMO_WAKE_WORD = "okay_nabu"


def bundled_utterance(listen_mode: str = "always") -> Path:
    """The WAV the demo speaks into the daemon (16 kHz mono): "Okay Nabu, what time is it?" in
    ``wake_word`` mode, "What time is it right now?" otherwise."""
    name = "wake_utterance_16k.wav" if listen_mode == "wake_word" else "utterance_16k.wav"
    return Path(str(resources.files("voiced") / "assets" / name))


def listen_mode(args: argparse.Namespace) -> str:
    """The listening mode of this demo: ``--listen``, else wake_word unless ``--input`` is given."""
    chosen: str | None = getattr(args, "listen", None)
    if chosen is not None:
        return chosen
    return "always" if getattr(args, "input", None) is not None and not args.live else "wake_word"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (``voiced/cli.py`` adds --config/--set to the same parser)."""
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
        "--scenario",
        default="demo",
        help="emulator scenario: demo, echo, tools, long, or a .toml file (format: voiced emulator --help)",
    )
    parser.add_argument(
        "--call", metavar="TOOL", help="make the bot call this plugin tool of yours (instead of --scenario)"
    )
    parser.add_argument(
        "--args", metavar="JSON", default="{}", help="the arguments of --call, a JSON object (default {})"
    )
    parser.add_argument(
        "--listen",
        choices=["wake_word", "always"],
        help="wake_word: the turn is what follows 'Okay Nabu' (default); always: any speech is a turn "
        "(default with --input)",
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

    print("the turn")
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


class DemoError(FatalError):
    """A demo that cannot start: one line for the user, and the exit code."""


def call_scenario(tool: str, args_json: str) -> Scenario:
    """A one-turn scenario whose bot calls ``tool`` with ``args_json`` and reads its output aloud."""
    try:
        arguments = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise DemoError(
            f'--args is not JSON ({exc.msg}): pass an object, e.g. --args \'{{"room": "kitchen"}}\'',
            EXIT_USAGE,
        ) from None
    if not isinstance(arguments, dict):
        raise DemoError("--args must be a JSON object, e.g. --args '{}'", EXIT_USAGE)
    reply = f"{tool} answered: {{{tool}}}." if _TEMPLATE_NAME.fullmatch(tool) else "The tool answered."
    turn = Turn(
        transcript=f"Please run {tool}.",
        tool_calls=[ToolCallSpec(name=tool, arguments=arguments)],
        reply=[reply],
    )
    return Scenario(name=f"call {tool}", turns=[turn], loop=True)


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.call:
        return call_scenario(args.call, args.args)
    try:
        return load_scenario(args.scenario)
    except ScenarioError as exc:
        raise DemoError(f"{exc}", EXIT_USAGE) from None


def _check_tool(config: VoicedConfig, tool: str) -> None:
    from voiced.plugins import PluginRegistry  # noqa: PLC0415  (imports every installed plugin)

    info = PluginRegistry.load(config.plugins).get(tool)
    if info is None:
        raise DemoError(
            f"no plugin tool named {tool!r}: install its package or add its module to plugins.modules "
            "(`voiced plugins list` shows what is found)",
            EXIT_CONFIG,
        )
    if not info.enabled:
        raise DemoError(
            f"{tool!r} is not in plugins.enabled: add it there (or --set plugins.enabled=[...])", EXIT_CONFIG
        )


def _check_out(path: Path) -> None:
    """Fail now, not after the turn, when the reply WAV cannot be written."""
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        raise DemoError(
            f"cannot write the reply to {path}: {exc.strerror}; pass --out FILE somewhere writable",
            EXIT_USAGE,
        ) from None


def _check_input(path: Path) -> None:
    try:
        read_wav_mono(path)
    except DeviceError as exc:
        raise DemoError(str(exc), EXIT_USAGE) from None
    except (ValueError, OSError) as exc:
        raise DemoError(
            f"{path} is not a usable 16-bit PCM WAV ({exc}); convert it: sox {path.name} -b 16 -c 1 out.wav",
            EXIT_USAGE,
        ) from None


async def probe_devices(config: VoicedConfig, *, microphone: bool, speaker: bool, rate_hz: int) -> None:
    """Open and close the real devices the demo will use; a DemoError (EXIT_DEVICE) in seconds if not.

    The daemon waits for a missing device forever (right for a service); a demo must say at once.
    """
    devices = config.audio.devices
    checks: list[tuple[str, str, Callable[[], Any]]] = []
    if microphone:
        checks.append(("microphone", "input_device", lambda: open_source(devices, "portaudio")))
    if speaker:
        checks.append(("speaker", "output_device", lambda: open_sink(devices, "portaudio", rate_hz)))
    for what, key, build in checks:
        try:
            device = build()
            async with asyncio.timeout(DEVICE_PROBE_TIMEOUT_S):
                await device.start()
            await device.stop()
        except (DeviceError, TimeoutError) as exc:
            reason = str(exc) or f"it did not open within {DEVICE_PROBE_TIMEOUT_S:.0f} s"
            raise DemoError(
                f"the {what} does not work: {reason}. List the devices with `voiced devices` and choose one "
                f"with --set audio.devices.{key}=NAME",
                EXIT_DEVICE,
            ) from None


class Progress:
    """Prints one line per step of the turn as the emulator sees it happen (polls its counters)."""

    def __init__(
        self, emu: Any, daemon: Daemon, scenario: Scenario, source_text: str, *, wake_word: bool = False
    ) -> None:
        self.emu = emu
        self.daemon = daemon
        self.turn = scenario.turns[0] if scenario.turns else scenario.fallback
        self.source_text = source_text
        self.wake_word = wake_word
        self.printed: set[str] = set()
        self.speaking_since_s: float | None = None
        self.next_speaking_line_s = 0.0

    def _sent(self, event_type: str) -> bool:
        return any(counts[event_type] > 0 for counts in self.emu.sent_event_types.values())

    def _say(self, step: str, line: str) -> None:
        if step not in self.printed:
            self.printed.add(step)
            print(f"  {line}", flush=True)

    def tick(self) -> None:
        """Print whatever happened since the last call."""
        if self.daemon.ready.is_set():
            waiting = "listening for the wake word" if self.wake_word else "listening"
            self._say("listening", f"{waiting} ({self.source_text})")
        agent = self.daemon.agent
        if agent is not None and agent.counters.wakes > 0:
            self._say("wake", "wake word heard: the chime plays, what follows it is the turn")
        if self._sent("input_audio_buffer.completed") or self._sent("input_audio_buffer.speech_stopped"):
            self._say("thinking", "end of speech: the bot is thinking")
        if self._sent("conversation.audio_transcript.completed"):
            heard = self.turn.transcript if self.turn is not None and self.turn.transcript else "(speech)"
            self._say("heard", f"heard: {heard}")
        if self._sent("conversation.chat.requires_action"):
            names = ", ".join(c.name for c in self.turn.tool_calls) if self.turn is not None else "?"
            self._say("tools", f"tool called on this device: {names}")
        if self._sent("conversation.audio.delta"):
            now = time.monotonic()
            if self.speaking_since_s is None:
                self.speaking_since_s = now
                self.next_speaking_line_s = now + SPEAKING_PROGRESS_S
                self._say("speaking", "speaking: the reply is playing")
            elif now >= self.next_speaking_line_s:
                self.next_speaking_line_s = now + SPEAKING_PROGRESS_S
                print(f"  still speaking ({now - self.speaking_since_s:.0f} s)", flush=True)

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            self.tick()
            await asyncio.sleep(0.05)


def demo_config(args: argparse.Namespace, overrides: dict[str, Any], url: str, token: str) -> VoicedConfig:
    """The user's file and --set, with the emulator's address, bot and token forced on top."""
    path = find_config_file(getattr(args, "config", None))
    environ = {k: v for k, v in os.environ.items() if k.startswith("VOICED_") and k != "VOICED_CONFIG"}
    forced = {
        "coze.base_url": url,
        "coze.bot_id": "7000000000000000001",
        "coze.token": token,
        "coze.token_file": None,
        "session.turn_detection": args.turn_detection,
        "listen.mode": listen_mode(args),
        "log.level": "info" if args.verbose else "warning",
        "log.format": "console",
    }
    if forced["listen.mode"] == "wake_word" and not args.live and args.input is None:
        # The bundled utterance says this wake word: the user's own must not make the demo deaf to it.
        forced.update(
            {"listen.wake_words": [DEMO_WAKE_WORD], "listen.wake_thresholds": {}, "listen.wake_windows": {}}
        )
    return load_config(path, environ=environ, overrides={**overrides, **forced})


async def demo(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> int:
    """Run the demo; returns the exit code. ``overrides`` are the --set values."""
    configure_logging("info" if args.verbose else "warning", "console")
    try:
        return await _demo(args, overrides or {})
    except DemoError as exc:
        print(f"voiced demo: {exc}", file=sys.stderr)
        return exc.exit_code


async def _demo(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    scenario = _scenario(args)
    if not args.play:
        _check_out(args.out)
    if args.input is not None and not args.live:
        _check_input(args.input)
    token = "demo-" + secrets.token_urlsafe(16)
    register_secret(token)
    emulator_settings = EmulatorSettings(host="127.0.0.1", port=0, token=token, scenario=scenario)
    async with serve_emulator(emulator_settings) as emu:
        config = demo_config(args, overrides, emu.url, token)
        if args.call:
            _check_tool(config, args.call)
        devices = config.audio.devices
        mode = config.listen.mode
        utterance = args.input or bundled_utterance(mode)
        rate_hz = (
            8000
            if config.session.output_codec in ("g711a", "g711u")
            else config.session.output_sample_rate_hz
        )
        if args.live or args.play:
            await probe_devices(config, microphone=args.live, speaker=args.play, rate_hz=rate_hz)

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
        print(f"voiced demo: one turn with the bundled Coze emulator (scenario {scenario.name})", flush=True)
        daemon = Daemon(config, source, sink, on_turn=on_turn, rescan_devices=rescan)
        said = "speak now" if args.live else f"{utterance.name} as the microphone"
        if mode == "wake_word" and args.live:
            said = "say 'Okay Nabu', then your question"
        watcher = Progress(emu, daemon, scenario, said, wake_word=mode == "wake_word")
        progress = asyncio.create_task(watcher.run(), name="progress")
        runner = asyncio.create_task(daemon.run(), name="daemon")
        try:
            waiter: asyncio.Future[TurnTimeline] = finished
            watched: set[asyncio.Future[Any]] = {runner, waiter}
            done, _ = await asyncio.wait(watched, timeout=args.timeout_s, return_when="FIRST_COMPLETED")
            if waiter not in done:
                waiter.cancel()
                if runner in done:
                    return runner.result() or EXIT_FAILURE
                hint = ""
                if mode == "wake_word" and "wake" not in watcher.printed:
                    hint = " (no wake word was heard: say it first, or pass --listen always)"
                print(f"voiced demo: no reply within {args.timeout_s:.0f} s{hint}", file=sys.stderr)
                return EXIT_FAILURE
            turn = waiter.result()
        except (DeviceError, CodecUnavailable) as exc:
            print(f"voiced demo: {exc}", file=sys.stderr)
            return EXIT_DEVICE
        finally:
            progress.cancel()
            daemon.request_stop()
            try:
                exit_code = await asyncio.wait_for(runner, timeout=10.0)
            except (DeviceError, CodecUnavailable) as exc:
                print(f"voiced demo: {exc}", file=sys.stderr)
                exit_code = EXIT_DEVICE
        print_timeline(turn, None if args.play else args.out)
        return exit_code


def run_demo(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> int:
    """Entry point of ``voiced demo``; ``overrides`` are the --set values."""
    return asyncio.run(demo(args, overrides))
