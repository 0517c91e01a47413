"""The microphone path as a chain of stages, each with one small interface.

Every 20 ms frame goes through the stages in order. A stage may change the audio (an echo
canceller, a noise suppressor), swallow the frame, or report events (a wake word, speech start and
end) into the list it is handed. The turn detector is always the last stage; the conversation core
reads the events and decides what the audio means.

To add a stage: write a class with ``name``, ``process`` and ``reset``, register a factory with
:func:`register_stage` (or name it in the config as ``"package.module:factory"``), and list it in
``audio.stages``. Stages run on the event loop for every frame: constant work, no blocking, no I/O.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voiced.errors import ConfigError

if TYPE_CHECKING:
    from voiced.config import VoicedConfig


@dataclass(frozen=True, slots=True)
class StageFrame:
    """One 20 ms frame of 16 kHz mono s16le on its way through the mic path.

    ``captured_at_s`` is the capture time of its first sample (device clock, loop time).
    ``playback_active``: the device was playing reply audio; ``playback_level_dbfs`` its loudest
    recent level (None when silent). ``echo_cancelled``: a stage before this one removed the
    device's own voice, so speech heard now is the user's.
    """

    pcm: bytes
    captured_at_s: float
    playback_active: bool = False
    playback_level_dbfs: float | None = None
    echo_cancelled: bool = False


@dataclass(frozen=True, slots=True)
class WakeDetected:
    """A wake word was heard: ``model`` scored ``score`` on the frame captured at ``detected_at_s``."""

    model: str
    score: float
    detected_at_s: float


class MicStage(Protocol):
    """One step of the mic path.

    ``process`` returns the frame to hand on (the same object, or a changed copy made with
    ``dataclasses.replace``), or None to swallow it; it appends what it noticed to ``events``.
    ``reset`` forgets any state tied to the audio so far (called when the devices are reopened).
    """

    name: str

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame | None: ...

    def reset(self) -> None: ...


StageFactory = Callable[["VoicedConfig"], MicStage]

_registry: dict[str, StageFactory] = {}

#: Stages shipped with voiced, imported only when configured (their libraries are heavy).
_BUILTIN_MODULES: dict[str, str] = {
    "echo_cancel": "voiced.mic.echo",
    "noise_suppression": "voiced.mic.noise",
    "wake_word": "voiced.mic.wake",
}


def register_stage(name: str) -> Callable[[StageFactory], StageFactory]:
    """Decorator: register ``factory(config) -> MicStage`` under ``name`` for ``audio.stages``."""

    def decorate(factory: StageFactory) -> StageFactory:
        _registry[name] = factory
        return factory

    return decorate


def stage_factory(name: str) -> StageFactory:
    """The factory for ``name`` (a registered name, a built-in, or ``"module:attribute"``).

    Raises ConfigError naming the known stages when there is none.
    """
    if name in _registry:
        return _registry[name]
    module_name = _BUILTIN_MODULES.get(name)
    if module_name is not None:
        importlib.import_module(module_name)
        if name in _registry:
            return _registry[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"audio.stages: cannot load {name!r}: {exc}") from None
        if not callable(factory):
            raise ConfigError(f"audio.stages: {name!r} is not a class or function")
        return factory  # type: ignore[no-any-return]
    known = ", ".join(sorted({*_registry, *_BUILTIN_MODULES}))
    raise ConfigError(f"audio.stages: no stage named {name!r}; known stages: {known} (or 'module:factory')")


class MicPath:
    """The configured stages, in order, in front of the turn detector.

    Call :meth:`process` for every frame; it returns the frame the turn detector should see (None
    if a stage swallowed it) and fills ``events``.
    """

    def __init__(self, stages: list[MicStage]) -> None:
        self.stages = stages

    @classmethod
    def from_config(cls, config: VoicedConfig, names: list[str]) -> MicPath:
        """Build the stages ``names`` (see :func:`stage_factory`). Raises ConfigError."""
        return cls([stage_factory(name)(config) for name in names])

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame | None:
        """Run ``frame`` through every stage; None as soon as one swallows it."""
        current = frame
        for stage in self.stages:
            passed = stage.process(current, events)
            if passed is None:
                return None
            current = passed
        return current

    def reset(self) -> None:
        """Reset every stage (after a device reopen)."""
        for stage in self.stages:
            stage.reset()

    @property
    def names(self) -> list[str]:
        """The stages' names, in order."""
        return [stage.name for stage in self.stages]
