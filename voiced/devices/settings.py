"""Which sound devices to open and with what block sizes: the ``[audio.devices]`` settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DeviceSettings(BaseModel):
    """Which sound devices to open and with what block sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_device: str | int | None = Field(
        None, description="Capture device: index, or a case-insensitive name substring; None = default."
    )
    output_device: str | int | None = Field(
        None, description="Playback device: index, or a case-insensitive name substring; None = default."
    )
    capture_block_ms: int = Field(20, description="Capture block: 10 or 20 ms (frames are 20 ms).")
    playback_block_ms: int = Field(20, ge=5, le=40, description="Playback callback block.")
    idle_read_ms: int = Field(
        100,
        ge=20,
        le=200,
        description="While nothing waits for the microphone (listening for speech or a wake word, "
        "nothing playing, no turn open) read it this many ms at a time, in 20 ms frames, each still "
        "analysed with its own capture time: fewer wake-ups, but speech and the wake word are noticed "
        "up to idle_read_ms - 20 ms later (no audio is lost: the pre-roll keeps the start). 20 reads "
        "every frame at once.",
    )
    playback_idle_close_ms: int = Field(
        1500,
        ge=0,
        le=60000,
        description="Close a sound-card speaker once it has had nothing to play for this long and reopen "
        "it on the next sound (an idle output stream costs two threads waking 100 times a second); "
        "0 keeps it open (for a card that clicks when opened). The WAV, memory and null speakers stop "
        "waking after the same time and record the silence when they resume.",
    )
    ring_ms: int = Field(
        200,
        ge=40,
        le=5000,
        description="Capacity of each ring between the event loop and the device callback. When the "
        "capture ring is full the callback drops the incoming block (counted as an overrun); the "
        "playback side never writes past writable_samples().",
    )

    @model_validator(mode="after")
    def _blocks(self) -> DeviceSettings:
        if self.capture_block_ms not in (10, 20):
            raise ValueError("capture_block_ms must be 10 or 20")
        if self.idle_read_ms % 20:
            raise ValueError("idle_read_ms must be a whole number of 20 ms frames (20, 40, 60, ...)")
        return self

    @property
    def idle_read_frames(self) -> int:
        """Frames per microphone read while idle (`idle_read_ms` in 20 ms frames)."""
        return self.idle_read_ms // 20
