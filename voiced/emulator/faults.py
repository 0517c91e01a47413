"""Fault injection: the knobs (:class:`FaultSettings`) and the seeded decisions the downlink makes.

The emulator is the server the project is tested against, so it must be able to misbehave the way a
real network and the real service do (issue 2 §4): late and jittery frames, lost Opus packets, dropped
connections, garbage frames, error events, audio that arrives after a cancel, ignored pings. Every
random choice comes from a ``random.Random`` seeded per connection, so a failing test is repeatable.
"""

from __future__ import annotations

import json
import random
import uuid

from pydantic import BaseModel, ConfigDict, Field

#: protocol.md §5: these two codes mean the account cannot pay; the real server closes after them.
CLOSING_ERROR_CODES = frozenset({4027, 4028})


class FaultSettings(BaseModel):
    """Fault injection. Every knob defaults to "off"; the same model is used per scenario turn.

    Connection-wide faults come from :attr:`EmulatorSettings.faults`; a scenario turn's ``faults``
    table overrides the fields it sets while that turn's reply is being produced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    downlink_delay_ms: float = Field(0.0, ge=0, description="Added latency of every server frame.")
    downlink_jitter_ms: float = Field(
        0.0, ge=0, description="Uniform extra latency in [0, jitter] per frame (order is kept, like TCP)."
    )
    opus_loss_pct: float = Field(
        0.0, ge=0, le=100, description="Opus audio deltas silently not sent, in percent (seeded)."
    )
    drop_after_frames: int | None = Field(
        None, ge=1, description="Abort the TCP connection (no close frame) after this many server frames."
    )
    drop_after_audio_deltas: int | None = Field(
        None, ge=1, description="Abort the connection mid-reply, after this many audio deltas of a reply."
    )
    malformed_every_frames: int | None = Field(
        None, ge=1, description="After every N-th server frame, also send a frame that is not valid JSON."
    )
    unknown_every_frames: int | None = Field(
        None, ge=1, description="After every N-th server frame, also send a well-formed unknown event."
    )
    error_code: int | None = Field(
        None,
        description="Send an `error` event with this code (4000, 4100, 4101, 4027, ...). Connection-wide: "
        "after `error_after_frames` server frames; in a scenario turn: instead of that turn's reply.",
    )
    error_after_frames: int = Field(1, ge=1, description="See error_code (1 = right after chat.created).")
    error_close: bool | None = Field(
        None, description="Close after the injected error; None = only for 4027/4028 like the real server."
    )
    stale_deltas_after_cancel: int = Field(
        0,
        ge=0,
        description="Audio deltas of a cancelled chat sent AFTER conversation.chat.canceled (tests a "
        "client's stale-audio guard).",
    )
    ignore_pings: bool = Field(False, description="The server stops answering the client's pings.")

    def closes_after_error(self) -> bool:
        """Whether the injected error is followed by a close (explicit, or the real 4027/4028 rule)."""
        if self.error_close is not None:
            return self.error_close
        return self.error_code in CLOSING_ERROR_CODES


def merged_faults(base: FaultSettings, override: FaultSettings | None) -> FaultSettings:
    """``base`` with every field that ``override`` explicitly sets replaced (a scenario turn's faults)."""
    if override is None:
        return base
    return base.model_copy(update=override.model_dump(exclude_unset=True))


class FaultPlan:
    """The seeded per-connection decisions. Ask it about each frame; it never sends anything itself."""

    def __init__(self, seed: int, connection_index: int) -> None:
        self._rng = random.Random(f"{seed}:{connection_index}")

    def downlink_delay_s(self, faults: FaultSettings) -> float:
        """Latency to add to the next server frame."""
        jitter_ms = self._rng.uniform(0.0, faults.downlink_jitter_ms) if faults.downlink_jitter_ms else 0.0
        return (faults.downlink_delay_ms + jitter_ms) / 1000.0

    def lose_opus_packet(self, faults: FaultSettings) -> bool:
        """Whether the next Opus audio delta is "lost" (not sent)."""
        return faults.opus_loss_pct > 0 and self._rng.uniform(0.0, 100.0) < faults.opus_loss_pct

    def malformed_frame(self) -> str:
        """A text frame a client cannot parse: a JSON object cut in the middle."""
        whole = json.dumps(
            {"event_type": "conversation.audio.delta", "id": str(uuid.UUID(int=self._rng.getrandbits(128)))}
        )
        return whole[: self._rng.randint(5, len(whole) - 2)]

    def unknown_frame(self, logid: str) -> str:
        """A well-formed event of a type no client knows; clients must log and drop it (protocol.md §2)."""
        return json.dumps(
            {
                "event_type": "emulator.unknown_event",
                "id": str(uuid.UUID(int=self._rng.getrandbits(128))),
                "data": {"note": "injected by the voiced emulator", "n": self._rng.randint(0, 1 << 30)},
                "detail": {"logid": logid},
            }
        )
