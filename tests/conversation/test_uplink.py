"""The uplink queue: a slow socket costs the oldest audio, never an end of turn."""

from __future__ import annotations

from voiced.conversation.uplink import AudioItem, EndOfTurnItem, UplinkQueue


def audio(n: int) -> AudioItem:
    return AudioItem(n.to_bytes(4, "big"), captured_at_s=n / 50)


def drain(queue: UplinkQueue) -> list[AudioItem | EndOfTurnItem]:
    items: list[AudioItem | EndOfTurnItem] = []
    while (item := queue.pop()) is not None:
        items.append(item)
    return items


def test_a_full_queue_drops_the_oldest_audio_and_says_so() -> None:
    queue = UplinkQueue(max_audio=3)
    assert [queue.push_audio(audio(n)) for n in range(5)] == [True, True, True, False, False]
    assert queue.dropped_audio == 2
    assert [item.payload for item in drain(queue) if isinstance(item, AudioItem)] == [
        audio(n).payload for n in (2, 3, 4)
    ]
    assert queue.pop() is None and len(queue) == 0


def test_markers_survive_any_number_of_audio_drops_in_order() -> None:
    queue = UplinkQueue(max_audio=5)
    ends = [EndOfTurnItem(speech_end_s=float(turn), turn=None) for turn in range(3)]
    for turn, end in enumerate(ends):
        for n in range(turn * 10_000, turn * 10_000 + 10_000):
            queue.push_audio(audio(n))
        queue.push_marker(end)
    assert queue.dropped_audio == 30_000 - 5 and queue.dropped_markers == 0
    items = drain(queue)
    assert [item for item in items if isinstance(item, EndOfTurnItem)] == ends
    # Only the newest audio is left, and it still sits in front of the last end of turn.
    assert len(items) == 5 + 3 and items[-1] is ends[-1]
    assert [item.payload for item in items if isinstance(item, AudioItem)] == [
        audio(n).payload for n in range(29_995, 30_000)
    ]


def test_audio_after_a_marker_never_overtakes_it() -> None:
    queue = UplinkQueue(max_audio=2)
    queue.push_audio(audio(0))
    end = EndOfTurnItem(speech_end_s=0.0, turn=None)
    queue.push_marker(end)
    for n in range(1, 100):
        queue.push_audio(audio(n))
    # The first turn's audio went; its end stayed first, so the turns cannot merge into one.
    assert drain(queue) == [end, audio(98), audio(99)]


def test_markers_are_bounded_too_and_clear_forgets_everything() -> None:
    queue = UplinkQueue(max_audio=2, max_markers=4)
    for n in range(10):
        queue.push_marker(EndOfTurnItem(speech_end_s=float(n), turn=None))
    assert queue.dropped_markers == 6 and len(queue) == 4
    queue.push_audio(audio(1))
    queue.clear()
    assert len(queue) == 0 and queue.pop() is None
    assert [queue.push_audio(audio(n)) for n in range(2)] == [True, True], "the audio count was reset"
