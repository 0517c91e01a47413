"""Benchmarks of voiced (not timed tests). Run `python -m benchmarks [--quick]`.

Every module named `*_bench.py` in this package is discovered and must define:

    NAME: str                                   the key of its results in results.json
    def run(quick: bool) -> BenchReport         measure; `quick` must keep the whole suite to a minute or two

`python -m benchmarks` prints each report's tables and merges `{NAME: report.data}` into
benchmarks/results.json, leaving other modules' keys alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A titled table of rows (already formatted cells or numbers)."""

    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def render(self) -> str:
        """Plain-text rendering with right-aligned numbers."""

        def cell(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
            return str(v)

        body = [[cell(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in [self.headers, *body]) for i in range(len(self.headers))]
        lines = [self.title, "  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        for row in body:
            lines.append(
                "  ".join(
                    c.rjust(w) if c[:1].isdigit() or c[:1] == "-" else c.ljust(w)
                    for c, w in zip(row, widths, strict=True)
                )
            )
        return "\n".join(lines)


@dataclass
class BenchReport:
    """What a benchmark module returns: tables to print and JSON-able data to store."""

    tables: list[Table]
    data: dict[str, Any]


def run_within(measure: Awaitable[BenchReport], limit_s: float, what: str) -> BenchReport:
    """Run a benchmark's coroutine on a new loop; a run past ``limit_s`` fails with a message naming
    ``what`` instead of idling (every await inside has its own limit; this catches what slips)."""

    async def guarded() -> BenchReport:
        try:
            async with asyncio.timeout(limit_s):
                return await measure
        except TimeoutError:
            raise RuntimeError(f"the {what} hung: no result after {limit_s:.0f} s") from None

    return asyncio.run(guarded())
