"""``[listen]``: when the device listens, for how long after a wake or a reply, which wake words wake it
and which sounds it makes."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ListenMode = Literal["always", "wake_word", "push_to_talk"]
#: The feedback sounds: woken, back to sleep, connection lost, cannot work (token or config).
CueKind = Literal["wake", "done", "offline", "fatal"]


class ListenSettings(BaseModel):
    """How a turn may start.

    ``always``: any speech opens a turn. ``wake_word``: only speech after a wake word (no audio leaves
    the device before it). ``push_to_talk``: only a button press (the signals, the control API).

    The built-in mode is ``always``: it needs no wake word runtime and suits an embedding or a kiosk;
    the config file the service installs on a speaker says ``wake_word``.
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

    # -- wake word (listen.mode = "wake_word") ---------------------------------------------------
    wake_words: list[str] = Field(
        default_factory=lambda: ["okay_nabu"],
        min_length=1,
        max_length=8,
        description="Wake words listened for at once: a bundled model (okay_nabu, hey_jarvis, "
        "hey_mycroft, alexa) or the path of your own microWakeWord model's .json (its .tflite beside it).",
    )
    wake_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per wake word (its name, or a model file's name without .json): the probability "
        "(0..1) its sliding-window mean must exceed. Unset: the model's own probability_cutoff.",
    )
    wake_windows: dict[str, int] = Field(
        default_factory=dict,
        description="Per wake word: how many model outputs (30 ms each) the mean is taken over. Unset: "
        "the model's own sliding_window_size.",
    )
    wake_refractory_s: float = Field(
        2.0,
        ge=0,
        le=30,
        description="After a detection, ignore every wake word this long (one utterance, one wake).",
    )
    listen_during_cue: bool = Field(
        False, description="Stream the mic while a feedback sound plays (false: the turn starts after it)."
    )
    # -- feedback sounds ---------------------------------------------------------------------------
    cues: bool = Field(True, description="Play the feedback sounds (wake, done, offline, fatal).")
    cue_volume_pct: int = Field(60, ge=0, le=100, description="Volume of the feedback sounds.")
    cue_files: dict[CueKind, Path] = Field(
        default_factory=dict,
        description="Replace a bundled sound by a WAV file (16-bit PCM, mono or stereo, any rate).",
    )

    @field_validator("wake_thresholds")
    @classmethod
    def _thresholds_are_probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            if not 0.0 < threshold < 1.0:
                raise ValueError(f"wake_thresholds.{name} = {threshold}: use a probability between 0 and 1")
        return value

    @field_validator("wake_windows")
    @classmethod
    def _windows_are_small_counts(cls, value: dict[str, int]) -> dict[str, int]:
        for name, window in value.items():
            if not 1 <= window <= 100:
                raise ValueError(f"wake_windows.{name} = {window}: use a count of outputs from 1 to 100")
        return value

    @model_validator(mode="after")
    def _tuning_names_a_wake_word(self) -> ListenSettings:
        names = {wake_word_name(word) for word in self.wake_words}
        for key in (*self.wake_thresholds, *self.wake_windows):
            if key not in names:
                raise ValueError(
                    f"{key!r} is not one of the wake words ({', '.join(sorted(names))}): "
                    "name a wake word as listed in wake_words (a model file by its name without .json)"
                )
        return self


def wake_word_name(entry: str) -> str:
    """The name a ``wake_words`` entry is known by: a bundled model's name, or a model file's stem."""
    if is_model_path(entry):
        return PurePath(entry).name.removesuffix(".json")
    return entry


def is_model_path(entry: str) -> bool:
    """Whether a ``wake_words`` entry names a model file (rather than a bundled model)."""
    return entry.endswith(".json") or "/" in entry or entry.startswith("~")
