"""The ``voiced`` command line: run, demo, check, devices, emulator, plugins."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from voiced import __version__, early_signals, restore_early_signals
from voiced.config import (
    COZE_TOKEN_ENV,
    VoicedConfig,
    find_config_file,
    load_config,
    parse_value,
    require_bot,
)
from voiced.errors import (
    EXIT_CONFIG,
    EXIT_DEVICE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOPERM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ConfigError,
    FatalError,
    VoicedError,
)
from voiced.log import configure as configure_logging
from voiced.log import get_logger, install_redacting_streams, register_secret

EXIT_CODES_HELP = f"""exit codes:
  0    done (or stopped by SIGTERM / SIGINT)
  {EXIT_FAILURE}    failure (a check failed, an unexpected error)
  {EXIT_USAGE}    usage: a wrong option or argument
  {EXIT_UNAVAILABLE}   the Coze account is out of credit (4027/4028)
  {EXIT_DEVICE}   an audio device that can never work as configured
  {EXIT_NOPERM}   the token is missing or refused (HTTP 401/403, 4100/4101)
  {EXIT_CONFIG}   invalid configuration
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

SIGNALS_HELP = """signals (voiced run):
  SIGTERM, SIGINT  stop gracefully (a second SIGINT stops at once)
  SIGHUP           re-read the config file (systemctl reload voiced)
  SIGUSR1/SIGUSR2  push-to-talk press / release"""

#: The path the Coze client appends to coze.base_url itself.
CHAT_PATH = "/v1/chat"


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default: $VOICED_CONFIG, /etc/voiced/voiced.toml, then ./config/voiced.toml)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, e.g. --set session.turn_detection=server_vad",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format",
        choices=["auto", "journal", "console", "json"],
        help="auto: journal lines under systemd's journal, console on a terminal, JSON lines otherwise",
    )


def _add_config_options_to_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let --config/--set also follow a sub-subcommand (`voiced plugins list --config F`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help="config file")
                child.add_argument(
                    "--set", metavar="KEY=VALUE", action="append", default=argparse.SUPPRESS, help="override"
                )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # Not echoed: a mistyped token setting would land on the terminal.
            raise ConfigError("--set needs KEY=VALUE, e.g. --set coze.bot_id=7496")
        if key.strip().lower() == "coze.token":
            # Not echoed either: the value is already on the command line, visible to every user in `ps`.
            raise ConfigError(
                "--set coze.token is refused: a command line is visible to every user (ps). Put the "
                "token in coze.token_file (chmod 600) or the COZE_API_TOKEN environment variable"
            )
        found[key.strip()] = parse_value(value.strip())
    if getattr(args, "log_level", None):
        found["log.level"] = args.log_level
    if getattr(args, "log_format", None):
        found["log.format"] = args.log_format
    return found


def load_cli_config(
    args: argparse.Namespace, extra: dict[str, Any] | None = None
) -> tuple[VoicedConfig, Path | None]:
    """The config from the file, environment and command line; logging configured; warnings logged."""
    path = find_config_file(args.config)
    warnings: list[str] = []
    overrides = {**_overrides(args), **(extra or {})}
    config = load_config(path, overrides=overrides, warn=warnings)
    configure_logging(config.log.level, config.log.format)
    if config.coze.token is not None:
        register_secret(config.coze.token.get_secret_value())
    log = get_logger("config")
    for line in warnings:
        log.warning(line)
    ignored = early_signals()
    if ignored:
        log.warning("signals ignored during start-up: the daemon was not ready for them", signals=ignored)
    base = config.coze.base_url.rstrip("/")
    if urlsplit(base).path.endswith(CHAT_PATH):
        # The emulator prints its full chat URL; voiced appends the path itself.
        config.coze.base_url = base[: -len(CHAT_PATH)]
        log.warning(
            f"coze.base_url ends with {CHAT_PATH}, which voiced appends itself: using {config.coze.base_url}"
        )
    return config, path


def require_token(config: VoicedConfig) -> None:
    """Raise (EXIT_NOPERM) when no token is configured: before any device is opened or waited for."""
    token = config.coze.token
    if token is None or not token.get_secret_value():
        raise FatalError(
            f"no Coze token: set coze.token_file, a coze-token credential or {COZE_TOKEN_ENV} "
            "(`voiced check` shows where voiced looks)",
            EXIT_NOPERM,
        )


def build_parser(command_name: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser. Given the command about to run, the argument modules of the demo and
    the emulator are imported only when needed: ``voiced run`` must not load the emulator."""
    full = command_name not in _LEAN_COMMANDS
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="voiced",
        description="A realtime voice-agent daemon for Coze bots on edge devices.",
        epilog=f"{SIGNALS_HELP}\n\n{EXIT_CODES_HELP}\n\n`voiced COMMAND --help` describes each command.",
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"voiced {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, summary: str, description: str, epilog: str = EXIT_CODES_HELP
    ) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, epilog=epilog, formatter_class=raw)

    run = command(
        "run",
        "run the daemon (microphone → Coze → speaker)",
        "Run the daemon until stopped: listen, stream your speech to the Coze bot, play its replies, "
        "answer its tool calls. Under systemd it reports READY and feeds the watchdog.",
        f"{SIGNALS_HELP}\n\n{EXIT_CODES_HELP}",
    )
    _add_config_options(run)
    run.add_argument("--input-wav", type=Path, help="use a WAV file as the microphone (then silence)")
    run.add_argument("--output-wav", type=Path, help="write the replies to a WAV file instead of a speaker")

    demo = command(
        "demo",
        "the daemon against the bundled emulator, a bundled utterance as mic",
        "One spoken turn with the daemon against the emulator in this process: no account, no network, "
        "no sound card needed. Progress is printed as the turn happens; the reply is written to "
        "./voiced-demo-reply.wav. --call TOOL --args JSON makes the bot call one of your plugins.",
    )
    _add_config_options(demo)
    if full:
        from voiced.demo import add_arguments as demo_arguments

        demo_arguments(demo)

    check = command(
        "check",
        "check config, token, devices and the server; non-zero on failure",
        "Every check as a table: the config file and token source in use, the bot id, the plugins, "
        "the microphone (and its level over two seconds: speak), the speaker, the server. "
        "Exits 1 if a row says FAIL; WARN rows do not fail it.",
    )
    _add_config_options(check)
    check.add_argument("--skip-devices", action="store_true", help="do not open the sound devices")
    check.add_argument("--tone", action="store_true", help="play a one-second test tone on the speaker")

    command(
        "devices",
        "list sound devices and the rates they support",
        "The sound devices PortAudio sees (defaults marked, with the rates each takes), then the sinks "
        "and sources of a running PulseAudio/PipeWire server by name. Choose one with "
        "audio.devices.input_device / audio.devices.output_device.",
    )

    kiosk = command(
        "kiosk",
        "print the Chromium command that shows the kiosk page full screen",
        "The kiosk page is served by `voiced run` at [control] host:port. This prints the Chromium "
        "command line for a Pi's desktop autostart; it starts nothing.",
    )
    kiosk.add_argument("-c", "--config", type=Path, help="config file (default: as voiced run finds it)")
    kiosk.add_argument("--browser", help="the browser binary (default: chromium)")

    config_cmd = command(
        "config",
        "show the effective configuration",
        "`voiced config show`: every setting with the value in effect and where it came from "
        "(default, file, environment, --set); the token is never shown.",
    )
    config_sub = config_cmd.add_subparsers(dest="config_command", metavar="{show}", required=True)
    show = config_sub.add_parser("show", help="every setting, its value and its source")
    _add_config_options(show)

    emulator = sub.add_parser(
        "emulator",
        help="serve the local Coze-compatible emulator",
        description="Serve the local Coze-compatible chat server until SIGINT/SIGTERM.",
        formatter_class=raw,
    )
    if full:
        from voiced.emulator.cli import SCENARIO_HELP
        from voiced.emulator.cli import add_arguments as emulator_arguments

        emulator.epilog = SCENARIO_HELP
        emulator_arguments(emulator)

    plugins = command(
        "plugins",
        "list, export or call the device-side plugins",
        "The tools the bot can call on this device: list them, print the schema to declare on the bot, "
        "or call one locally as the bot would.",
    )
    _add_config_options(plugins)
    from voiced.plugins.cli import add_arguments as plugin_arguments

    plugin_arguments(plugins)
    _add_config_options_to_subcommands(plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the process exit code."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((word for word in words if not word.startswith("-")), None))
    # Plugins print, and tracebacks quote values: neither may show the token on the console/journal.
    install_redacting_streams()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command not in _DAEMON_COMMANDS:
        restore_early_signals()
    try:
        return _dispatch(args)
    except VoicedError as exc:
        print(f"voiced: {exc}", file=sys.stderr)
        return exc.exit_code
    except UnicodeDecodeError as exc:
        # A config or token file in another encoding: say so in one line, not a traceback.
        print(
            f"voiced: a config or token file is not UTF-8 text ({exc.reason}): save it as UTF-8",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


# Commands whose parser needs neither the demo's nor the emulator's arguments (kept lean to start fast).
_LEAN_COMMANDS = frozenset({"run", "check", "devices", "plugins", "config", "kiosk"})

# Commands that install their own SIGHUP/SIGUSR1/SIGUSR2 handlers once they are ready.
_DAEMON_COMMANDS = frozenset({"run", "demo"})


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "run":
        from voiced.agent.run import run_command

        config, path = load_cli_config(args)
        require_bot(config)
        require_token(config)
        return asyncio.run(run_command(config, path, args.input_wav, args.output_wav, _overrides(args)))
    if command == "demo":
        from voiced.demo import run_demo

        return run_demo(args, _overrides(args))
    if command == "config":
        from voiced.config_show import render_config_sources

        config, path = load_cli_config(args)
        print(render_config_sources(config, path, _overrides(args)))
        return 0
    if command == "check":
        from voiced.agent.check import run_check

        config, path = load_cli_config(args)
        return asyncio.run(
            run_check(config, open_devices=not args.skip_devices, config_path=path, tone=args.tone)
        )
    if command == "devices":
        from voiced.devices.listing import (
            list_devices,
            list_server_devices,
            render_device_table,
            render_server_devices,
        )

        configure_logging("warning", "auto")
        try:
            print(render_device_table(list_devices()))
        except Exception as exc:
            print(f"voiced: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        server = list_server_devices()
        if server:
            print()
            print(render_server_devices(server))
        return 0
    if command == "kiosk":
        from voiced.control.kiosk import main as kiosk_main

        config_args = ["--config", str(args.config)] if args.config else []
        return kiosk_main(config_args + (["--browser", args.browser] if args.browser else []))
    if command == "emulator":
        from voiced.emulator.cli import run as run_emulator

        configure_logging("info", "auto")
        emulator_exit: int = run_emulator(args)
        return emulator_exit
    if command == "plugins":
        from voiced.plugins.cli import run as run_plugins

        config, _ = load_cli_config(args)
        return run_plugins(args, config.plugins)
    return EXIT_USAGE
