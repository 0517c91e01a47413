"""Settings of the local Coze-compatible emulator: server, delivery pacing and fault injection.

All models are pydantic with ``extra="forbid"`` so a typo in a test or a scenario file is an error,
not a silently ignored knob. Units are in every field name. Build an :class:`EmulatorSettings` and
pass it to :func:`voiced.emulator.serve_emulator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voiced.emulator.faults import FaultSettings
from voiced.emulator.scenarios import Scenario, load_scenario


class EmulatorSettings(BaseModel):
    """Everything the emulator needs. ``port=0`` picks a free port: read it from ``Emulator.url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8790, ge=0, le=65535)
    token: str | None = Field(
        None, description="Expected `Authorization: Bearer` token; None accepts any non-empty token."
    )
    auth_failure: Literal["http", "event"] = Field(
        "http",
        description="How a bad token is refused (protocol.md §1, §5): HTTP 401 at the handshake, or accept "
        "then send `error` 4100 and close.",
    )
    scenario: Scenario = Field(default_factory=lambda: load_scenario("demo"))
    seed: int = Field(0, description="Seed of every random choice (jitter, loss, ids): runs are repeatable.")
    time_scale: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Multiplies every emulator-side delay (thinking, audio pacing). 0.1 = ten times faster.",
    )
    think_delay_ms: float = Field(
        250.0, ge=0, description="Delay between chat.in_progress and the first text delta (LLM latency)."
    )
    ping_interval_s: float = Field(15.0, ge=0, description="Server WebSocket pings (0 disables).")
    ping_max_unanswered: int = Field(4, ge=1, description="Close after this many unanswered pings.")
    burst_speed_factor: float = Field(
        6.0, gt=0, description="Unpaced PCM/G.711 is delivered this many times faster than real time."
    )
    burst_delta_ms: int = Field(250, ge=10, le=2000, description="Audio per delta in burst delivery.")
    burst_tail_ms: int = Field(300, ge=0, le=2000, description="All-zero chunk after each sentence (trace).")
    burst_fragments: bool = Field(
        True,
        description="Cut burst PCM as the trace does: a 90 % first delta, tiny 4-300-byte fragments after "
        "some full deltas, a 25 ms delta before the tail. False: equal deltas only.",
    )
    text_delta_interval_ms: float = Field(
        30.0,
        ge=0,
        description="LLM pace: one text delta per this much time (time_scale applies). A reply's text "
        "streams on its own, ahead of the audio, as in the trace.",
    )
    prologue_shape: Literal["chat", "audio_only", "ignore"] = Field(
        "chat",
        description="What need_play_prologue produces after chat.updated [guess, protocol.md §3.1a]: a chat "
        "whose answer is the prologue (text and audio, no user message), speech only (as "
        "input_text.generate_audio), or nothing.",
    )
    usage_spelling: Literal["count", "tokens", "both"] = Field(
        "count",
        description="Usage fields of conversation.chat.completed: input_count/output_count (trace), "
        "input_tokens/output_tokens (docs' examples), or both.",
    )
    tool_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Wait for submit_tool_outputs this long (not scaled by time_scale), then "
        "conversation.chat.failed.",
    )
    voice: Literal["auto", "espeak", "synthetic"] = Field(
        "auto", description="auto = espeak-ng when installed, else the deterministic synthetic voice."
    )
    max_frame_bytes: int = Field(
        1 << 20, ge=1024, description="Client frames larger than this get error 4000 (and are not parsed)."
    )
    close_on_malformed: bool = Field(
        False, description="Close on a malformed client frame (protocol.md §5) instead of error 4000."
    )
    tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain): serve wss:// instead of ws:// (needs tls_keyfile)."
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile.")
    faults: FaultSettings = Field(default_factory=FaultSettings)

    @model_validator(mode="after")
    def _check(self) -> EmulatorSettings:
        if self.token is not None and not self.token.strip():
            raise ValueError("token must be non-empty (or None to accept any token)")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self

    def scaled_s(self, ms: float) -> float:
        """An emulator-side delay of ``ms`` milliseconds, in seconds, after ``time_scale``."""
        return ms * self.time_scale / 1000.0
