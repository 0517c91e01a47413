"""The ``voiced`` command line."""

from __future__ import annotations

import argparse

from voiced import __version__


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="voiced")
    parser.add_argument("--version", action="version", version=f"voiced {__version__}")
    parser.parse_args(argv)
    return 0
