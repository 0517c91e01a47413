"""WebRTC noise suppression as the ``noise_suppression`` mic-path stage (after the echo canceller).

It lowers steady noise (fans, hum) before the turn detector and the uplink; speech passes. Each
20 ms frame is two 10 ms WebRTC frames. It keeps ``echo_cancelled`` and every other field as it
found them. On a failure of the native library it hands the frame on unchanged, logged once.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

import numpy as np

from voiced.audio.frames import Int16Array
from voiced.log import get_logger
from voiced.mic.stages import StageFrame, register_stage

if TYPE_CHECKING:
    from voiced.config import VoicedConfig

log = get_logger("noise")

RATE_HZ = 16000
_BLOCK_SAMPLES = 160  # 10 ms


class Suppressor(Protocol):
    """What the stage needs: ``process`` on 10 ms int16 frames, and ``reset``."""

    def process(self, audio: Int16Array) -> Int16Array: ...

    def reset(self) -> None: ...


def webrtc_suppressor(level: int) -> Suppressor:
    """WebRTC NS at 16 kHz mono; ``level`` 0..3 suppresses 6, 12, 18 or 21 dB."""
    from pywebrtc_audio import NoiseSuppressor  # noqa: PLC0415  (a native library: load only when used)

    suppressor: Suppressor = NoiseSuppressor(sample_rate=RATE_HZ, num_channels=1, level=level)
    return suppressor


class NoiseSuppressionStage:
    """The ``noise_suppression`` stage: ``process`` returns the frame with its noise lowered."""

    name = "noise_suppression"

    def __init__(self, level: int = 1) -> None:
        self._suppressor = webrtc_suppressor(level)
        self.failures = 0

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        """Suppress noise in ``frame`` (unchanged on failure)."""
        pcm = np.frombuffer(frame.pcm, dtype=np.int16)
        try:
            cleaned = np.concatenate(
                [
                    self._suppressor.process(pcm[:_BLOCK_SAMPLES]),
                    self._suppressor.process(pcm[_BLOCK_SAMPLES:]),
                ]
            ).astype(np.int16, copy=False)
        except Exception as exc:  # a native library: fall back to the raw frame, never crash the path
            self.failures += 1
            if self.failures == 1:
                log.warning("noise_suppression_failed", error=f"{type(exc).__name__}: {str(exc)[:120]}")
            return frame
        return dataclasses.replace(frame, pcm=cleaned.tobytes())

    def reset(self) -> None:
        """Forget the noise estimate (the mic was reopened)."""
        self._suppressor.reset()


@register_stage("noise_suppression")
def noise_suppression_stage(config: VoicedConfig) -> NoiseSuppressionStage:
    """Factory for ``audio.echo.noise_suppression = true``."""
    return NoiseSuppressionStage(config.audio.echo.noise_suppression_level)
