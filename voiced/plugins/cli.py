"""``voiced plugins list | schema | call NAME --args JSON``.

``voiced/cli.py`` wires these in: ``add_arguments(plugins_parser)`` and, after parsing,
``run(args, settings.plugins)``; ``run`` returns the process exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from voiced.plugins.registry import PluginRegistry
from voiced.plugins.runner import ToolRunner
from voiced.plugins.settings import PluginSettings

EXIT_OK = 0
EXIT_TOOL_FAILED = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``list``, ``schema`` and ``call`` sub-subcommands to the ``plugins`` parser."""
    sub = parser.add_subparsers(dest="plugins_command", metavar="{list,schema,call}", required=True)
    listing = sub.add_parser("list", help="every tool found: enabled or not, and where it comes from")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_parser("schema", help="the JSON to paste when declaring the device plugins on the Coze bot")
    call = sub.add_parser("call", help="run one tool locally, as the bot would, and print its output")
    call.add_argument("name", help="the tool name")
    call.add_argument(
        "--args", default="{}", help="the arguments as a JSON object, e.g. '{\"volume_pct\": 30}'"
    )
    call.add_argument(
        "--allow-disabled", action="store_true", help="run it even if it is not in [plugins] enabled"
    )


def run(args: argparse.Namespace, settings: PluginSettings, out: TextIO | None = None) -> int:
    """Run the parsed sub-subcommand; returns the exit code (1 when a called tool failed)."""
    stream = out or sys.stdout
    command = args.plugins_command
    if command == "list":
        return _list(PluginRegistry.load(settings), bool(getattr(args, "json", False)), stream)
    if command == "schema":
        print(PluginRegistry.load(settings).schema_json(), file=stream)
        return EXIT_OK
    if command == "call":
        if args.allow_disabled and args.name not in settings.enabled:
            settings = settings.model_copy(update={"enabled": [*settings.enabled, args.name]})
        registry = PluginRegistry.load(settings)
        result = asyncio.run(ToolRunner(registry, settings).call(args.name, args.args))
        print(result.output.output, file=stream)
        return EXIT_OK if result.ok else EXIT_TOOL_FAILED
    print(f"unknown plugins command {command!r}: use list, schema or call", file=sys.stderr)
    return EXIT_USAGE


def _list(registry: PluginRegistry, as_json: bool, stream: TextIO) -> int:
    tools = registry.all()
    if as_json:
        rows = [
            {
                "name": info.name,
                "enabled": info.enabled,
                "source": info.source,
                "isolated": info.isolated,
                "timeout_s": info.timeout_s,
                "description": info.description,
            }
            for info in tools
        ]
        errors = [{"source": e.source, "error": e.message} for e in registry.errors]
        print(json.dumps({"tools": rows, "errors": errors}, indent=2, ensure_ascii=False), file=stream)
        return EXIT_OK
    width = max((len(info.name) for info in tools), default=4)
    for info in tools:
        state = "enabled " if info.enabled else "disabled"
        extra = f" isolated timeout={info.timeout_s:g}s" if info.isolated else f" timeout={info.timeout_s:g}s"
        print(f"{info.name:<{width}}  {state}  {info.source}{extra}", file=stream)
    for error in registry.errors:
        print(f"skipped: {error.source}: {error.message}", file=stream)
    if not any(info.enabled for info in tools):
        print("no tool is enabled: list the names in [plugins] enabled of config/voiced.toml", file=stream)
    return EXIT_OK
