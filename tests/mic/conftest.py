"""Fixtures of the mic-path tests: the private headless PulseAudio for the system echo route."""

from tests.support.pulse import pulse

__all__ = ["pulse"]
