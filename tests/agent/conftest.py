"""Fixtures of the daemon tests: the private headless PulseAudio for the real-PortAudio test."""

from tests.support.pulse import pulse

__all__ = ["pulse"]
