"""``voiced emulator``: serve the local Coze-compatible chat server until SIGINT/SIGTERM.

``voiced/cli.py`` calls :func:`add_arguments` on its ``emulator`` sub-parser and :func:`run` with the
parsed arguments; ``python -m voiced.emulator.cli`` works on its own too.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from voiced.emulator.faults import FaultSettings
from voiced.emulator.scenarios import ScenarioError, bundled_scenarios, load_scenario
from voiced.emulator.server import CHAT_PATH, serve_emulator
from voiced.emulator.settings import EmulatorSettings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SCENARIO_HELP = """scenario files (--scenario FILE.toml; voiced demo --scenario FILE.toml too):
  description = "what this bot does"      # optional
  loop = true                             # start over after the last turn
  [[turns]]                               # one per user turn, taken in order
  transcript = "Is the garage open?"      # what the emulated ASR "heard"
  keywords = ["garage"]                   # a typed (text) turn matching these takes this turn
  tool_calls = [ { name = "garage_state", arguments = { door = "left" } } ]
  reply = ["The garage is {garage_state.state}."]   # sentences spoken in order
  think_delay_ms = 400                    # optional: this turn's thinking time
  [fallback]                              # optional: the turn when nothing else matches
  reply = ["I have no answer for that."]

  Reply sentences are templates: {name} is a tool's output, {name.field} a field of its JSON
  output, {user_text} the user's words, {audio_ms} the length of their audio; {{ and }} are
  literal braces; a missing value is spoken as "unknown". A turn may instead say
  fail = { code = 5000 } to make the chat fail. Bundled: voiced/emulator/scenarios/*.toml."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``; pass the parsed namespace to :func:`run`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8790, help="port (default 8790; 0 picks a free one)")
    parser.add_argument("--token", default=None, help="required Bearer token (default: accept any token)")
    parser.add_argument(
        "--scenario",
        default="demo",
        help=f"bundled scenario ({', '.join(bundled_scenarios())}) or path of a .toml file (default demo)",
    )
    parser.add_argument(
        "--auth-failure",
        choices=["http", "event"],
        default="http",
        help="refuse a bad token with HTTP 401 (default) or with error 4100 after the upgrade",
    )
    parser.add_argument("--voice", choices=["auto", "espeak", "synthetic"], default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random fault decision")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply every delay (0.1 = 10x faster)"
    )
    parser.add_argument("--ping-interval-s", type=float, default=15.0, help="server pings (0 disables)")
    parser.add_argument("--tool-timeout-s", type=float, default=30.0, help="wait for tool outputs this long")
    parser.add_argument(
        "--tls-cert", type=Path, default=None, help="PEM certificate: serve wss:// (with --tls-key)"
    )
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--delay-ms", type=float, default=0.0, help="downlink latency per frame")
    faults.add_argument("--jitter-ms", type=float, default=0.0, help="extra random latency up to this")
    faults.add_argument(
        "--opus-loss-pct", type=float, default=0.0, help="Opus audio deltas not sent, percent"
    )
    faults.add_argument("--drop-after-frames", type=int, default=None, help="abort after N server frames")
    faults.add_argument("--drop-after-audio-deltas", type=int, default=None, help="abort mid-reply")
    faults.add_argument("--malformed-every", type=int, default=None, help="a non-JSON frame every N frames")
    faults.add_argument("--unknown-every", type=int, default=None, help="an unknown event every N frames")
    faults.add_argument("--error-code", type=int, default=None, help="send error CODE (4027/4028 then close)")
    faults.add_argument("--error-after-frames", type=int, default=1, help="when to send --error-code")
    faults.add_argument(
        "--stale-deltas-after-cancel", type=int, default=0, help="audio deltas after canceled"
    )
    faults.add_argument("--ignore-pings", action="store_true", help="stop answering the client's pings")


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """The settings the arguments describe. Raises ScenarioError or pydantic ValidationError."""
    faults: dict[str, Any] = {
        "downlink_delay_ms": args.delay_ms,
        "downlink_jitter_ms": args.jitter_ms,
        "opus_loss_pct": args.opus_loss_pct,
        "drop_after_frames": args.drop_after_frames,
        "drop_after_audio_deltas": args.drop_after_audio_deltas,
        "malformed_every_frames": args.malformed_every,
        "unknown_every_frames": args.unknown_every,
        "error_code": args.error_code,
        "error_after_frames": args.error_after_frames,
        "stale_deltas_after_cancel": args.stale_deltas_after_cancel,
        "ignore_pings": args.ignore_pings,
    }
    return EmulatorSettings(
        host=args.host,
        port=args.port,
        token=args.token,
        scenario=load_scenario(args.scenario),
        auth_failure=args.auth_failure,
        voice=args.voice,
        seed=args.seed,
        time_scale=args.time_scale,
        ping_interval_s=args.ping_interval_s,
        tool_timeout_s=args.tool_timeout_s,
        tls_certfile=args.tls_cert,
        tls_keyfile=args.tls_key,
        faults=FaultSettings(**faults),
    )


async def serve_until_signal(settings: EmulatorSettings) -> None:
    """Serve until SIGINT or SIGTERM; prints one line with the URL once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serve_emulator(settings) as emu:
            print(
                f"voiced emulator serving {emu.url}{CHAT_PATH} "
                f"(scenario {settings.scenario.name}, voice {emu.voice.engine})",
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    """Run the emulator from parsed arguments; returns the process exit status (0 after a signal)."""
    try:
        settings = settings_from_args(args)
    except ScenarioError as exc:
        print(f"voiced emulator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"voiced emulator: invalid option: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(serve_until_signal(settings))
    except ssl.SSLError as exc:
        print(f"voiced emulator: unusable TLS certificate or key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"voiced emulator: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m voiced.emulator.cli``)."""
    parser = argparse.ArgumentParser(
        prog="voiced emulator",
        description=__doc__.splitlines()[0],
        epilog=SCENARIO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
