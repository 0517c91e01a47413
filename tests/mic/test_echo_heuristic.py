"""Why the level heuristic interrupts itself at mic-path level and not in the daemon (in memory):
its speech starts are the room's echo tail after the reply, heard once the device no longer says it
plays. The mic-path harness reports playing until 100 ms after the last syllable (the benchmark's
replies are trimmed to their speech); the daemon reports it until the last sample of the reply's
audio is played, and the emulator's espeak-ng sentences end in about 0.3 s of quiet, which covers
the tail."""

from __future__ import annotations

import numpy as np

from tests.support.echo import RATE_HZ, Room, replies, reply_speech, run_mic_path, simulate

REPLIES = 30
GAP_S = 0.6


def heuristic_starts(trailing_quiet_s: float) -> list[float]:
    """Speech starts of the heuristic over REPLIES replies that are reported playing for
    ``trailing_quiet_s`` past their last syllable (an inaudible -90 dBFS tail, as a TTS's quiet end)."""
    quiet = np.zeros(int(trailing_quiet_s * RATE_HZ), dtype=np.int16)
    quiet[::2] = 1
    played = replies(REPLIES, gap_s=GAP_S, reply=np.concatenate([reply_speech(), quiet]))
    scene = simulate(played, Room(delay_ms=120.0, seed=5))
    return run_mic_path(played, scene.mic, "heuristic").started_at_s


def test_the_heuristics_self_interrupts_are_the_echo_tail_after_the_reply() -> None:
    starts = heuristic_starts(0.0)
    assert len(starts) >= 3  # about one reply in four
    reply_s = reply_speech().size / RATE_HZ
    period_s = reply_s + GAP_S
    # Every one of them comes after the reply's last syllable, within the room's delay + reverb.
    for at_s in starts:
        after_end_s = at_s % period_s - reply_s
        assert 0.0 < after_end_s < 0.4, after_end_s


def test_reporting_playback_through_a_tts_sentences_quiet_end_covers_the_tail() -> None:
    assert heuristic_starts(0.2) == []
