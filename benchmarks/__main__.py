"""Run every `*_bench.py` module of this package, print the tables, merge results.json."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import os
import pkgutil
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import BenchReport

HERE = Path(__file__).resolve().parent
#: Exit code of a benchmark module that overran its time limit (a hung run).
EXIT_HUNG = 3


class Watchdog:
    """Ends the process with a message and every thread's stack when a module overruns `limit_s`.

    A hung benchmark (a subprocess or an await that never returns) then fails loudly instead of
    idling; the stacks show where it hung.
    """

    def __init__(self, name: str, limit_s: float) -> None:
        self._timer = threading.Timer(limit_s, self._fire, args=(name, limit_s))
        self._timer.daemon = True

    @staticmethod
    def _fire(name: str, limit_s: float) -> None:
        print(
            f"benchmark {name} hung: no result after {limit_s:.0f} s (raise --timeout-s if the machine "
            "is just slow); the stacks of every thread follow",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(EXIT_HUNG)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def discover() -> list[str]:
    """Module names of the benchmark modules, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.endswith("_bench"))


def merge_results(path: Path, new: dict[str, Any]) -> None:
    """Update `path` (JSON object) with `new`, key by key; keep other modules' results."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                existing = loaded
        except json.JSONDecodeError:
            existing = {}
    existing.update(new)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (the whole suite < 30 s)")
    parser.add_argument("--only", action="append", default=[], help="run only this module (repeatable)")
    parser.add_argument(
        "--output", type=Path, default=HERE / "results.json", help="results JSON to merge into"
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="fail a module that runs longer than this (default 180 s quick, 1500 s full)",
    )
    parser.add_argument(
        "--device",
        action="store_true",
        help="measure voiced on this machine's sound card instead (see benchmarks/device.py; "
        "options after --device go to it)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.device:
        from benchmarks.device import main as device_main

        return device_main(rest, args.output)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    names = [
        n for n in discover() if not args.only or n in args.only or n.removesuffix("_bench") in args.only
    ]
    if not names:
        print(f"no benchmark modules matched {args.only}; available: {discover()}", file=sys.stderr)
        return 2
    collected: dict[str, Any] = {}
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        limit_s = args.timeout_s or (180.0 if args.quick else 1500.0)
        with Watchdog(name, limit_s):
            report: BenchReport = module.run(quick=args.quick)
        elapsed_s = time.perf_counter() - started
        print(f"== {name} ({elapsed_s:.1f} s{', quick' if args.quick else ''}) ==")
        for table in report.tables:
            print(table.render())
            print()
        data = dict(report.data)
        data["_meta"] = {
            "quick": args.quick,
            "elapsed_s": round(elapsed_s, 2),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        collected[module.NAME] = data
    merge_results(args.output, collected)
    print(f"results merged into {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
