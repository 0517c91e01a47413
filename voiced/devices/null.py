"""A speaker that plays into the void at real time (a headless device, or the daemon without audio)."""

from __future__ import annotations

from voiced.devices.memory import ClockedSink


class NullSink(ClockedSink):
    """Drains its ring at real time and discards the audio; see `ClockedSink`."""

    def _emit_silence(self, first_at_s: float, count: int) -> None:
        """Nothing to record: the idle silence is only counted."""
