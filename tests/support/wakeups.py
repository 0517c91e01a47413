"""Wake-ups of the calling thread, as the kernel counts them."""

from __future__ import annotations

from pathlib import Path


def thread_wakeups() -> int:
    """Voluntary context switches of the calling thread so far: each is a sleep that ended in a
    wake-up (a timer, a socket, a thread-safe call into the event loop)."""
    for line in Path("/proc/thread-self/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise RuntimeError("no voluntary_ctxt_switches in /proc/thread-self/status")
