"""Fixtures of the device tests: the private headless PulseAudio (see tests/support/pulse.py)."""

from tests.support.pulse import pulse

__all__ = ["pulse"]
