"""The baseline client, started in the official SDK's own virtualenv.

The baseline (:mod:`benchmarks.baseline_client`) is a voice client built on ``cozepy`` the way its
realtime examples are. cozepy pins an older websockets than voiced runs on, so it is installed in a
virtualenv of its own (``.venv-sdk``, built by ``scripts/setup.sh --test``; ``VOICED_SDK_PYTHON``
names another interpreter) and this module only hands over to it::

    python -m benchmarks.baseline --url ws://127.0.0.1:PORT --bot-id ID --input-wav mic24k.wav \\
        --seconds 20 --stats-json out.json      # COZE_API_TOKEN in the environment

Arguments, exit code and outputs are the client's own. :func:`percentile` is shared with the
benchmark so that both sides compute percentiles the same way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXIT_NO_SDK = 2


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty); same rule as voiced's LatencyStats."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def sdk_python() -> Path:
    """The interpreter of the SDK's virtualenv (it may not exist: check before running it)."""
    chosen = os.environ.get("VOICED_SDK_PYTHON")
    return Path(chosen) if chosen else REPO / ".venv-sdk" / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    """Replace this process with the baseline client under the SDK's interpreter."""
    python = sdk_python()
    if not python.exists():
        print(f"baseline: no SDK interpreter at {python}: run scripts/setup.sh --test", file=sys.stderr)
        return EXIT_NO_SDK
    args = sys.argv[1:] if argv is None else argv
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    os.execve(python, [str(python), "-m", "benchmarks.baseline_client", *args], env)


if __name__ == "__main__":
    sys.exit(main())
