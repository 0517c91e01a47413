"""The bounded queue between the conversation and the socket: audio frames and end-of-turn markers.

When the socket is slow the oldest *audio* is dropped (and counted); an end-of-turn marker is never
dropped, so two turns can never merge into one. Markers are tiny and rare; they are bounded too
(``max_markers``), far above what a person can produce while a socket stalls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voiced.conversation.timeline import TurnTimeline


@dataclass(frozen=True, slots=True)
class AudioItem:
    """One encoded frame (a PCM frame or one Opus packet) and when its audio was captured."""

    payload: bytes
    captured_at_s: float
    live: bool = True  # sent as captured (False: a turn's pre-roll, held back until the turn opened)


@dataclass(frozen=True, slots=True)
class EndOfTurnItem:
    """Send ``input_audio_buffer.complete`` here: the user's turn ended at ``speech_end_s``."""

    speech_end_s: float
    turn: TurnTimeline | None


UplinkItem = AudioItem | EndOfTurnItem


class UplinkQueue:
    """FIFO of uplink items holding at most ``max_audio`` audio items and ``max_markers`` markers."""

    def __init__(self, max_audio: int, max_markers: int = 256) -> None:
        self.max_audio = max(1, max_audio)
        self.max_markers = max(1, max_markers)
        self._items: deque[UplinkItem] = deque()
        self._audio = 0
        self.dropped_audio = 0
        self.dropped_markers = 0

    def __len__(self) -> int:
        return len(self._items)

    def push_audio(self, item: AudioItem) -> bool:
        """Queue ``item``; returns False when the oldest queued audio had to be dropped for it."""
        dropped = False
        if self._audio >= self.max_audio:
            self._drop_oldest(AudioItem)
            self.dropped_audio += 1
            dropped = True
        self._items.append(item)
        self._audio += 1
        return not dropped

    def push_marker(self, item: EndOfTurnItem) -> None:
        """Queue an end-of-turn marker behind the audio of its turn."""
        if len(self._items) - self._audio >= self.max_markers:
            self._drop_oldest(EndOfTurnItem)
            self.dropped_markers += 1
        self._items.append(item)

    def pop(self) -> UplinkItem | None:
        """The oldest item, or None when empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, AudioItem):
            self._audio -= 1
        return item

    def clear(self) -> None:
        """Forget everything (a new connection starts from an empty input buffer)."""
        self._items.clear()
        self._audio = 0

    def _drop_oldest(self, kind: type[AudioItem] | type[EndOfTurnItem]) -> None:
        for index, item in enumerate(self._items):
            if isinstance(item, kind):
                del self._items[index]
                if kind is AudioItem:
                    self._audio -= 1
                return
