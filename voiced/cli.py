"""The ``voiced`` command line: run, demo, check, devices, emulator, plugins."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from voiced import __version__, early_signals, restore_early_signals
from voiced.config import VoicedConfig, find_config_file, load_config, parse_value, require_bot
from voiced.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, ConfigError, VoicedError
from voiced.log import configure as configure_logging
from voiced.log import get_logger, install_redacting_streams, register_secret


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
    parser.add_argument("--log-format", choices=["auto", "json", "console"])


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
    return config, path


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser. Given the `command` about to run, other subcommands' heavy argument modules
    (the emulator's) are not imported: `voiced run` need not load the emulator."""
    full = command not in ("run", "check", "devices", "plugins")
    parser = argparse.ArgumentParser(
        prog="voiced",
        description="A realtime voice-agent daemon for Coze bots on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"voiced {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (microphone → Coze → speaker)")
    _add_config_options(run)
    run.add_argument("--input-wav", type=Path, help="use a WAV file as the microphone (then silence)")
    run.add_argument("--output-wav", type=Path, help="write the replies to a WAV file instead of a speaker")

    demo = sub.add_parser("demo", help="the daemon against the bundled emulator, a bundled utterance as mic")
    if full:
        from voiced.demo import add_arguments as demo_arguments

        demo_arguments(demo)

    check = sub.add_parser("check", help="check config, token, devices and the server; non-zero on failure")
    _add_config_options(check)
    check.add_argument("--skip-devices", action="store_true", help="do not open the sound devices")

    sub.add_parser("devices", help="list sound devices and the rates they support")

    emulator = sub.add_parser("emulator", help="serve the local Coze-compatible emulator")
    if full:
        from voiced.emulator.cli import add_arguments as emulator_arguments

        emulator_arguments(emulator)

    plugins = sub.add_parser("plugins", help="list, export or call the device-side plugins")
    _add_config_options(plugins)
    from voiced.plugins.cli import add_arguments as plugin_arguments

    plugin_arguments(plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the process exit code."""
    # Plugins print, and tracebacks quote values: neither may show the token on the console/journal.
    install_redacting_streams()
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command not in _DAEMON_COMMANDS:
        restore_early_signals()
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"voiced: configuration error:\n{exc}", file=sys.stderr)
        return exc.exit_code
    except VoicedError as exc:
        print(f"voiced: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


# Commands that install their own SIGHUP/SIGUSR1/SIGUSR2 handlers once they are ready.
_DAEMON_COMMANDS = frozenset({"run", "demo"})


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "run":
        from voiced.agent.run import run_command

        config, path = load_cli_config(args)
        require_bot(config)
        return asyncio.run(run_command(config, path, args.input_wav, args.output_wav, _overrides(args)))
    if command == "demo":
        from voiced.demo import run_demo

        return run_demo(args)
    if command == "check":
        from voiced.agent.check import run_check

        config, _ = load_cli_config(args)
        require_bot(config)
        return asyncio.run(run_check(config, open_devices=not args.skip_devices))
    if command == "devices":
        from voiced.devices.listing import list_devices, render_device_table

        try:
            print(render_device_table(list_devices()))
        except Exception as exc:
            print(f"voiced: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return 0
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
