"""``[listen]``: when the device listens, and for how long after a wake or a reply."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ListenMode = Literal["always", "wake_word", "push_to_talk"]


class ListenSettings(BaseModel):
    """How a turn may start.

    ``always``: any speech opens a turn. ``wake_word``: only speech after a wake word (no audio leaves
    the device before it). ``push_to_talk``: only a button press (the signals, the control API).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mode: ListenMode = "always"
    after_wake_timeout_s: float = Field(
        5.0, gt=0, le=60, description="No speech this long after a wake: back to sleep."
    )
    follow_up_s: float = Field(
        4.0,
        ge=0,
        le=60,
        description="After a reply, listen this long without a wake word (0: sleep at once).",
    )
    unanswered_timeout_s: float = Field(
        15.0, gt=0, le=300, description="A turn with no reply after this long is logged and given up."
    )
