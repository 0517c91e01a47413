"""``[audio.echo]``: how the device keeps its own voice out of what it hears."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EchoMode = Literal["off", "webrtc", "system"]


class EchoSettings(BaseModel):
    """Echo cancellation.

    ``off``: none; barge-in relies on ``agent.barge_in``'s level margin or ``agent.half_duplex``.
    ``webrtc``: WebRTC AEC3 in process, fed with exactly what the speaker played (the
    ``echo_cancel`` mic-path stage). ``system``: the sound server's echo-cancel module is configured
    (PipeWire or PulseAudio, see README "Echo cancellation"); open its source and sink as
    ``audio.devices.input_device`` / ``output_device``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mode: EchoMode = "off"
    delay_offset_ms: float = Field(
        20.0,
        ge=-100.0,
        le=500.0,
        description="Pair each mic frame with what the speaker played this much earlier than the device "
        "clocks say: a margin that keeps the echo after its reference; AEC3 finds the rest.",
    )
    converge_s: float = Field(
        2.0,
        ge=0.0,
        le=10.0,
        description="Seconds of the device's own voice the canceller must hear before its output "
        "counts as echo-free (and it must remove 25 dB of the echo; until then barge-in uses the level "
        "margin or half duplex).",
    )
    stall_ms: float = Field(
        200.0,
        gt=0.0,
        le=5000.0,
        description="No reference from the speaker this long while it plays: fall back to the level margin.",
    )
    max_process_ms: float = Field(
        8.0,
        gt=0.0,
        le=20.0,
        description="A 20 ms frame that takes longer than this to cancel counts as falling behind.",
    )
    residual_gate_db: float = Field(
        30.0,
        ge=0.0,
        le=60.0,
        description="A cancelled frame more than this below the loudest of what the speaker played in the "
        "last 400 ms is the device's own voice (the canceller's residual, the room's reverb): it is "
        "silenced further so that its faint remains do not sound like speech to the turn detector. "
        "Lower it if the device interrupts itself (a microphone far louder than the speaker), raise it "
        "if barge-in over the device is slow.",
    )
    double_talk_margin_db: float = Field(
        12.0,
        ge=0.0,
        le=30.0,
        description="A linear echo filter runs beside AEC3 to hear a user who talks over the device "
        "(AEC3 ducks their first syllables): where what it leaves is within this many dB of the loudest "
        "of what the speaker played, the user is talking. Raise it if barge-in over the device is "
        "slow, lower it if the device interrupts itself; 0 turns the filter off (less CPU while the "
        "device talks).",
    )
    noise_suppression: bool = Field(False, description="Add WebRTC noise suppression after the canceller.")
    noise_suppression_level: int = Field(1, ge=0, le=3, description="0..3: 6, 12, 18 or 21 dB.")
