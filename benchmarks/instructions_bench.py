"""Instructions per 20 ms frame for each hot-path operation, counted by valgrind (callgrind).

Counts do not depend on a noisy neighbour or the CPU's clock. `perf stat -e instructions` would be
cheaper, but virtual machines rarely expose the counter (the run records whether it is); callgrind
counts every user-space instruction of a fixed workload (`benchmarks.instr_workload`) instead.
Each operation runs N times between two markers, so start-up and setup are excluded, and the empty
loop's cost per iteration is subtracted.

From the counts: a per-frame budget of full-duplex Opus conversation (capture resample, turn
detector, encode, append; parse, decode, jitter buffer, playback resample: 50 frames/s each way),
and a Cortex-A53/A72 estimate that adds what instruction counts leave out (see benchmarks/README.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import BenchReport, Table
from benchmarks.instr_workload import OPS

NAME = "instructions"
REPO = Path(__file__).resolve().parents[1]
FRAMES_PER_S = 50
#: Full-duplex conversation with Opus both ways: what one 20 ms frame costs each way.
BUDGET: tuple[tuple[str, str], ...] = (
    ("uplink", "resample 48 -> 16 kHz (capture)"),
    ("uplink", "turn detector feed"),
    ("uplink", "opus encode 16 kHz, complexity 0"),
    ("uplink", "append, template"),
    ("downlink", "parse Opus delta, one pass"),
    ("downlink", "opus decode 24 kHz"),
    ("downlink", "jitter push + pull 20 ms"),
    ("downlink", "resample 24 -> 48 kHz (playback)"),
)
#: Cores to estimate for: (name, clock GHz, IPC on this kind of code when its caches are warm).
CORES: tuple[tuple[str, float, float], ...] = (
    ("Cortex-A53 1.0 GHz (Pi Zero 2 W)", 1.0, 0.7),
    ("Cortex-A53 1.2 GHz (Pi 3)", 1.2, 0.7),
    ("Cortex-A72 1.5 GHz (Pi 4)", 1.5, 1.3),
)
#: What a wake-up costs beyond the frame work it does, in cycles of a small ARM core: ~100k user-space
#: instructions (an event-loop iteration or a PortAudio callback into Python; 12.6 M instructions/s
#: for ~120 wake-ups/s of an idle daemon counted under qemu) at IPC 0.7, plus ~15k cycles of kernel
#: (epoll/futex/timer and the context switch).
WAKEUP_CYCLES = 160_000
#: Cache and branch-predictor misses after every sleep make a call in the live process cost 2-25x
#: its hot-loop time on this VM: the estimate brackets the whole frame's work with 2x and 5x.
COLD_FACTORS = (2.0, 5.0)
WAKEUPS_PER_S = (140, 100)


def perf_counts_instructions() -> bool:
    """True when `perf stat -e instructions` works here (it is '<not supported>' in most VMs)."""
    perf = shutil.which("perf")
    if perf is None:
        return False
    try:
        out = subprocess.run(
            [perf, "stat", "-x,", "-e", "instructions:u", "true"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "not supported" not in out.stderr and "instructions" in out.stderr


def _callgrind_intervals(n: int, timeout_s: float) -> list[int]:
    """Instructions of every interval between markers (see instr_workload)."""
    with tempfile.TemporaryDirectory(prefix="voiced-cg-") as tmp:
        out = Path(tmp) / "cg.out"
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-before=getppid",
            sys.executable, "-m", "benchmarks.instr_workload", str(n),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                argv, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"valgrind did not finish the workload within {timeout_s:.0f} s") from None
        if done.returncode != 0:
            raise RuntimeError(f"valgrind failed ({done.returncode}): {done.stderr[-1000:]}")
        counts: list[int] = []
        k = 1
        while (dump := Path(f"{out}.{k}")).exists():
            for line in dump.read_text().splitlines():
                if line.startswith("summary:"):
                    counts.append(int(line.split()[1]))
                    break
            k += 1
        return counts


def run(quick: bool) -> BenchReport:
    """Count; `quick` runs each operation 60 times instead of 300."""
    perf_ok = perf_counts_instructions()
    if shutil.which("valgrind") is None:
        note = Table(
            "Instruction counts", ["note"], [["valgrind not installed: sudo apt-get install valgrind"]]
        )
        return BenchReport(tables=[note], data={"available": False, "perf_instructions": perf_ok})
    n = 60 if quick else 300
    intervals = _callgrind_intervals(n, timeout_s=600.0)
    runs = intervals[1::2]  # setup, run, setup, run, ...
    if len(runs) < len(OPS):
        raise RuntimeError(f"expected {len(OPS)} measured intervals, callgrind wrote {len(runs)}")
    empty = runs[0] / n
    per_frame = {op: max(0.0, runs[i] / n - empty) for i, op in enumerate(OPS)}
    ops_table = Table(
        f"Instructions per call (callgrind, x86-64, {n} calls each, empty-loop cost {empty:.0f} subtracted)",
        ["operation", "instructions"],
        [[op, round(per_frame[op])] for op in OPS[1:]],
    )
    budget = Table(
        "Per-frame instruction budget, full duplex Opus (50 frames/s each way)",
        ["direction", "operation", "k instr / frame", "M instr / s"],
    )
    total = 0.0
    for direction, op in BUDGET:
        budget.rows.append(
            [direction, op, round(per_frame[op] / 1000, 1), round(per_frame[op] * FRAMES_PER_S / 1e6, 2)]
        )
        total += per_frame[op]
    budget.rows.append(["both", "total", round(total / 1000, 1), round(total * FRAMES_PER_S / 1e6, 2)])
    estimates = Table(
        "Share of one core, full duplex, estimated from the instruction counts (work / IPC x cold "
        "factor + wake-ups x 160k cycles)",
        [
            "core",
            "hot loop %",
            *(f"cold x{c:g}, {w} wake-ups/s %" for c in COLD_FACTORS for w in WAKEUPS_PER_S),
        ],
    )
    est_rows: list[dict[str, Any]] = []
    for core, ghz, ipc in CORES:
        cycles_per_s = ghz * 1e9
        work = total * FRAMES_PER_S / ipc
        shares = [100 * work / cycles_per_s]
        shares += [
            100 * (work * cold + wakeups * WAKEUP_CYCLES) / cycles_per_s
            for cold in COLD_FACTORS
            for wakeups in WAKEUPS_PER_S
        ]
        estimates.rows.append([core, *(round(v, 1) for v in shares)])
        est_rows.append({"core": core, "ghz": ghz, "ipc": ipc, "share_pct": [round(v, 2) for v in shares]})
    return BenchReport(
        tables=[ops_table, budget, estimates],
        data={
            "available": True,
            "perf_instructions": perf_ok,
            "calls_per_op": n,
            "empty_loop_instructions": round(empty),
            "instructions_per_call": {op: round(v) for op, v in per_frame.items()},
            "full_duplex_instructions_per_frame": round(total),
            "full_duplex_minstr_per_s": round(total * FRAMES_PER_S / 1e6, 3),
            "estimates": est_rows,
            "wakeup_cycles": WAKEUP_CYCLES,
            "cold_factors": list(COLD_FACTORS),
            "wakeups_per_s": list(WAKEUPS_PER_S),
        },
    )


if __name__ == "__main__":
    for t in run(quick=True).tables:
        print(t.render())
