"""The turn detector as the last stage of the mic path."""

from __future__ import annotations

from voiced.audio.settings import VadSettings
from voiced.audio.vad import TurnDetector
from voiced.mic.stages import StageFrame

#: Voiced frames (of the start window) that start speech over the device's echo-cancelled voice: the
#: canceller ducks the first syllables of double talk, so the usual count would come a word late.
ECHO_CANCELLED_START_FRAMES = 3


class TurnDetectorStage:
    """webrtcvad turn detection; reports SpeechStarted / SpeechAudio / SpeechEnded events.

    While the device talks and no stage before it cancelled the echo, speech must beat the playback
    level by a margin (the detector's barge-in mode), so that the device's own voice does not count.
    While it talks and the echo was cancelled, fewer voiced frames start speech
    (:data:`ECHO_CANCELLED_START_FRAMES`), since the canceller ducks the user's first syllables.
    """

    name = "turn_detector"

    def __init__(self, settings: VadSettings) -> None:
        self.detector = TurnDetector(settings)

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        """Feed the detector; its events are appended to ``events``."""
        guarded = frame.playback_active and not frame.echo_cancelled
        level = frame.playback_level_dbfs if guarded else None
        start_frames = None
        if frame.playback_active and frame.echo_cancelled:
            start_frames = min(ECHO_CANCELLED_START_FRAMES, self.detector.settings.start_frames)
        events.extend(self.detector.feed(frame.pcm, frame.captured_at_s, level, start_frames=start_frames))
        return frame

    def reset(self) -> None:
        """Forget the utterance in progress and the pre-roll."""
        self.detector.reset()

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress."""
        return self.detector.in_speech
