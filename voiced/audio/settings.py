"""Settings models of the audio engine (pydantic v2). Units are in every field name.

The daemon's config loader builds these from the `[audio.*]` tables of voiced.toml; every field has a
default that works on a Raspberry Pi with a USB microphone, so an empty table is valid.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VadSettings(BaseModel):
    """Turn detection over webrtcvad on the 16 kHz mic path (see `voiced.audio.vad.TurnDetector`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggressiveness: int = Field(
        2, ge=0, le=3, description="webrtcvad aggressiveness: 0 lets most sound through, 3 is the strictest."
    )
    start_frames: int = Field(
        4, ge=1, description="Speech starts after this many voiced 20 ms frames within the start window."
    )
    start_window_frames: int = Field(
        6, ge=1, description="Length of the sliding window (frames) in which start_frames must be voiced."
    )
    preroll_ms: int = Field(
        300,
        ge=0,
        le=2000,
        description="Audio kept from before the start decision and sent with SpeechStarted, so the first "
        "syllable is never clipped.",
    )
    silence_ms: int = Field(
        700, ge=60, description="Speech ends after this much continuous non-speech."
    )
    warmup_ms: int = Field(
        200,
        ge=0,
        description="Frames in the first warmup_ms after start/reset are ignored: webrtcvad flags the "
        "first 80-150 ms of a stream as speech.",
    )
    max_utterance_ms: int = Field(
        30000, ge=500, description="An utterance longer than this is ended with reason 'max_length'."
    )
    barge_in_start_frames: int = Field(
        8,
        ge=1,
        description="While the device is talking: this many voiced frames within the window (stricter) "
        "are needed to start speech (barge-in).",
    )
    barge_in_margin_db: float = Field(
        6.0,
        description="While the device is talking, a frame only counts as voiced when the mic level exceeds "
        "the current playback level by this many dB (echo awareness).",
    )

    @model_validator(mode="after")
    def _window_holds_start(self) -> VadSettings:
        if self.start_frames > self.start_window_frames:
            raise ValueError("start_frames must be <= start_window_frames")
        if self.barge_in_start_frames < self.start_frames:
            raise ValueError("barge_in_start_frames must be >= start_frames (barge-in is stricter)")
        return self


class JitterSettings(BaseModel):
    """The adaptive playout buffer (see `voiced.audio.jitter.JitterBuffer`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_delay_ms: float = Field(40.0, ge=0, description="Lowest target delay before playback starts.")
    max_delay_ms: float = Field(200.0, ge=0, description="Highest target delay the adaptation may choose.")
    memory_cap_ms: float = Field(
        120000.0,
        gt=0,
        description="Hard bound on queued audio. A burst (faster than real time) is held whole up to this "
        "cap; beyond it the oldest audio is dropped and counted as overflow.",
    )
    block_ms: float = Field(20.0, gt=0, description="Nominal pull size of the playout pump.")
    fade_ms: float = Field(10.0, ge=0, description="Default fade-out applied by cancel/flush (no click).")
    paced_ceiling_ms: float = Field(
        400.0,
        gt=0,
        description="Ceiling on the part of the depth not explained by the sender running ahead of real "
        "time. Paced input that piles up beyond it (e.g. packets released together after a network "
        "stall) loses its oldest audio, counted as overflow, so latency cannot creep up. A burst "
        "(sender ahead of real time) is held whole up to memory_cap_ms.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> JitterSettings:
        if self.min_delay_ms > self.max_delay_ms:
            raise ValueError("min_delay_ms must be <= max_delay_ms")
        if self.paced_ceiling_ms < self.max_delay_ms:
            raise ValueError("paced_ceiling_ms must be >= max_delay_ms")
        return self


class OpusSettings(BaseModel):
    """The Opus encoder (VOIP application)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bitrate_bps: int = Field(24000, ge=6000, le=510000, description="Target bitrate in bits per second.")
    complexity: int = Field(
        0,
        ge=0,
        le=10,
        description="Encoder complexity 0-10 (CPU against quality). For speech at 16 kHz, 0 measures as well "
        "as 5 (log-spectral distance within 0.35 dB in a quiet room, equal in a noisy one) at half the CPU; "
        "see benchmarks/opus_bench.py.",
    )
    frame_ms: int = Field(
        20,
        description="Packet duration: 10, 20, 40 or 60 ms. 40/60 ms packets carry 2/3 mic frames: half or a "
        "third of the appends (less CPU and uplink bytes) for 20/40 ms more latency.",
    )
    fec: bool = Field(True, description="In-band forward error correction (recovers a single lost packet).")
    expected_loss_pct: int = Field(
        5, ge=0, le=100, description="Expected packet loss told to the encoder; drives how much FEC it adds."
    )

    @model_validator(mode="after")
    def _frame(self) -> OpusSettings:
        if self.frame_ms not in (10, 20, 40, 60):
            raise ValueError("frame_ms must be one of 10, 20, 40, 60")
        return self
