"""The linear echo filter that hears double talk beside AEC3, on the simulated room (in memory)."""

from __future__ import annotations

import numpy as np

from tests.support.echo import RATE_HZ, Room, dbfs, place, replies, simulate, user_speech
from voiced.mic.linear_echo import LinearEchoFilter

BLOCK = 320


def _run(filt: LinearEchoFilter, mic: np.ndarray, played: np.ndarray) -> np.ndarray:
    blocks = min(mic.size, played.size) // BLOCK
    out = np.zeros(blocks * BLOCK)
    for k in range(blocks):
        span = slice(k * BLOCK, (k + 1) * BLOCK)
        out[span] = filt.process(mic[span].astype(np.float64), played[span].astype(np.float64))
    return out


def _loud(played: np.ndarray, start_s: float) -> np.ndarray:
    """Sample indices after ``start_s`` in 20 ms blocks where the device plays speech."""
    blocks = [
        k
        for k in range(int(start_s * RATE_HZ) // BLOCK, played.size // BLOCK)
        if dbfs(played[k * BLOCK : (k + 1) * BLOCK]) > -40.0
    ]
    return np.concatenate([np.arange(k * BLOCK, (k + 1) * BLOCK) for k in blocks])


def test_it_learns_a_linear_room_and_says_how_much_it_removes() -> None:
    played = replies(3)
    scene = simulate(played, Room(delay_ms=120.0, clip_drive=0.1, seed=3))
    filt = LinearEchoFilter()
    residual = _run(filt, scene.mic, played)
    late = _loud(played, 4.0)
    erle = dbfs(scene.mic[late]) - dbfs(residual[late])
    assert erle >= 15.0
    # Its own estimate (fed the blocks where only the device talked) agrees within a few dB.
    for k in late[::BLOCK] // BLOCK:
        span = slice(k * BLOCK, (k + 1) * BLOCK)
        filt.learn_erle(scene.mic[span].astype(np.float64), residual[span])
    assert abs(filt.erle_db - erle) < 6.0


def test_a_user_talking_over_the_device_stays_in_the_residual_and_does_not_unlearn_the_room() -> None:
    played = replies(4)
    room = Room(delay_ms=80.0, seed=4)
    voice = user_speech()
    at = int(6.0 * RATE_HZ)
    user = place(voice, played.size, at, gain_db=-3.0)
    scene = simulate(played, room, user)
    residual = _run(LinearEchoFilter(), scene.mic, played)
    # The user's voice is kept (the filter does not cancel what the speaker did not play).
    speech = slice(at, at + voice.size)
    assert abs(dbfs(residual[speech]) - dbfs(user[speech])) < 3.0
    # After the user stops, the echo is still removed as well as before they spoke.
    before = _loud(played, 3.0)
    before = before[before < at]
    after = _loud(played, (at + voice.size) / RATE_HZ + 0.5)
    erle_before = dbfs(scene.mic[before]) - dbfs(residual[before])
    erle_after = dbfs(scene.mic[after]) - dbfs(residual[after])
    assert erle_after >= erle_before - 3.0
    assert erle_after >= 10.0


def test_with_the_speaker_silent_the_microphone_passes_unchanged() -> None:
    filt = LinearEchoFilter()
    rng = np.random.default_rng(1)
    silence = np.zeros(BLOCK)
    near = rng.standard_normal(BLOCK) * 1000.0
    for _ in range(filt.partitions + 2):
        out = filt.process(near, silence)
    assert np.array_equal(out, near)


def test_reset_forgets_the_room() -> None:
    played = replies(2)
    scene = simulate(played, Room(seed=2))
    filt = LinearEchoFilter()
    residual = _run(filt, scene.mic, played)
    filt.learn_erle(scene.mic[:BLOCK].astype(np.float64) + 1.0, residual[:BLOCK])
    assert filt.erle_db != 0.0
    filt.reset()
    assert filt.erle_db == 0.0
    # With nothing learnt it predicts no echo: the first block after a reset is the microphone.
    block = scene.mic[8000 : 8000 + BLOCK].astype(np.float64)
    assert np.allclose(filt.process(block, played[8000 : 8000 + BLOCK].astype(np.float64)), block)
