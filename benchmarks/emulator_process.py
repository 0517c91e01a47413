"""The emulator in a process of its own, for measurements of a client's own event loop.

A daemon measured in-process next to an in-process emulator shares its event loop with the server:
the emulator's work (synthesising and encoding a reply, sending its deltas) lands on the same
boundaries as the daemon's microphone frames and shows up in the daemon's latencies. The baseline
client never shares a loop with its server, so for a symmetric comparison the end-to-end latency
table runs the emulator here, in a child process.

`async with emulator_process(...) as url:` starts ``python -m benchmarks.emulator_process`` and
yields its ``ws://`` URL once it listens; leaving the block terminates it (killed after a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from voiced.emulator import EmulatorSettings, FaultSettings, load_scenario, serve_emulator
from voiced.log import configure as configure_logging

REPO = Path(__file__).resolve().parents[1]
_READY_PREFIX = "serving "
#: Starting the child (interpreter, imports, espeak-ng probe) takes a second or two; a hung start fails.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class EmulatorProcessError(RuntimeError):
    """The emulator child did not start (its exit status and last output are in the message)."""


@contextlib.asynccontextmanager
async def emulator_process(
    scenario: str = "long", *, stale_deltas_after_cancel: int = 0, think_delay_ms: float = 100.0
) -> AsyncIterator[str]:
    """Serve ``scenario`` from a child process (no server pings); yield its ``ws://`` URL.

    Raises EmulatorProcessError when the child does not report its URL within START_TIMEOUT_S.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.emulator_process",
        "--scenario", scenario,
        "--stale-deltas-after-cancel", str(stale_deltas_after_cancel),
        "--think-delay-ms", str(think_delay_ms),
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)).decode()
        except TimeoutError:
            line = ""
        if not line.startswith(_READY_PREFIX):
            with contextlib.suppress(ProcessLookupError):  # it may have exited on its own already
                proc.kill()
            err = (await asyncio.wait_for(proc.stderr.read(), STOP_TIMEOUT_S)).decode(errors="replace")
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            raise EmulatorProcessError(
                f"the emulator process did not start (status {proc.returncode}): {err[-500:]!r}"
            )
        yield line[len(_READY_PREFIX) :].strip()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def _serve(settings: EmulatorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve_emulator(settings) as emu:
        print(f"{_READY_PREFIX}{emu.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Child entry point: serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_process")
    parser.add_argument("--scenario", default="long")
    parser.add_argument("--stale-deltas-after-cancel", type=int, default=0)
    parser.add_argument("--think-delay-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    # The emulator logs every connection; the benchmark prints tables, not logs.
    configure_logging("error", "json", stream=io.StringIO())
    settings = EmulatorSettings(
        port=0,
        scenario=load_scenario(args.scenario),
        faults=FaultSettings(stale_deltas_after_cancel=args.stale_deltas_after_cancel),
        think_delay_ms=args.think_delay_ms,
        ping_interval_s=0,
    )
    asyncio.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
