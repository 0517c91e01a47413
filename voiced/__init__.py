"""voiced — a realtime voice-agent daemon for edge devices speaking the Coze realtime chat protocol.

When this package is imported by the ``voiced`` command itself (the console script or
``python -m voiced``), the first thing it does is catch SIGHUP, SIGUSR1 and SIGUSR2: their default
action ends the process, and a push-to-talk button or a ``systemctl reload`` may send them while
the imports still run (a second or more on a Raspberry Pi), long before the daemon installs its own
handlers. Such an early signal is only counted; :func:`early_signals` tells the command line which
arrived so it can log them. A program that merely imports voiced keeps its own signal handling.
"""

import os as _os
import signal as _signal
import sys as _sys

__version__ = "0.1.0"

_EARLY_SIGNALS = (_signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2)
_early_counts: dict[int, int] = {}


def _count_early_signal(signum: int, _frame: object) -> None:
    _early_counts[signum] = _early_counts.get(signum, 0) + 1


def _launched_as_command() -> bool:
    argv = getattr(_sys, "orig_argv", _sys.argv)
    if "-m" in argv:
        index = argv.index("-m")
        return index + 1 < len(argv) and argv[index + 1] == "voiced"
    return len(argv) > 1 and _os.path.basename(argv[1]) == "voiced"


def early_signals() -> dict[str, int]:
    """Signals that arrived before the daemon's handlers existed, by name, with how many of each."""
    return {_signal.Signals(num).name: count for num, count in sorted(_early_counts.items())}


def restore_early_signals() -> None:
    """Give SIGHUP, SIGUSR1 and SIGUSR2 back their default action (for commands that are no daemon)."""
    for sig in _EARLY_SIGNALS:
        if _signal.getsignal(sig) is _count_early_signal:
            _signal.signal(sig, _signal.SIG_DFL)


if _launched_as_command():
    for _sig in _EARLY_SIGNALS:
        _signal.signal(_sig, _count_early_signal)
