"""The turn detector as the last stage of the mic path."""

from __future__ import annotations

from voiced.audio.settings import VadSettings
from voiced.audio.vad import TurnDetector
from voiced.mic.stages import StageFrame


class TurnDetectorStage:
    """webrtcvad turn detection; reports SpeechStarted / SpeechAudio / SpeechEnded events.

    While the device talks and no stage before it cancelled the echo, speech must beat the playback
    level by a margin (the detector's barge-in mode), so that the device's own voice does not count.
    """

    name = "turn_detector"

    def __init__(self, settings: VadSettings) -> None:
        self.detector = TurnDetector(settings)

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        """Feed the detector; its events are appended to ``events``."""
        guarded = frame.playback_active and not frame.echo_cancelled
        level = frame.playback_level_dbfs if guarded else None
        events.extend(self.detector.feed(frame.pcm, frame.captured_at_s, level))
        return frame

    def reset(self) -> None:
        """Forget the utterance in progress and the pre-roll."""
        self.detector.reset()

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress."""
        return self.detector.in_speech
