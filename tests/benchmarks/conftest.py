"""Fixtures of the benchmark tests: the private headless PulseAudio for the PortAudio floor."""

from tests.support.pulse import pulse

__all__ = ["pulse"]
