"""The offline wake word: an engine behind a small interface, and the ``wake_word`` mic-path stage.

The engine (:class:`WakeEngine`) turns 16 kHz s16le audio into detections; the stage
(:class:`WakeWordStage`) adds what does not depend on the engine: the refractory period (one
utterance wakes once), no scoring while the device's own voice is in the mic (unless an echo
canceller removed it), and the time of each detection. Another engine (an open-vocabulary keyword
spotter, say) only has to implement :class:`WakeEngine` and be built in :func:`load_engine`.

The bundled engine is microWakeWord through ``pymicro-wakeword``: its wheel carries the models
(okay_nabu, hey_jarvis, hey_mycroft, alexa) and its own TFLite runtime, so nothing is downloaded.
A user's own model is its ``.json`` with the ``.tflite`` beside it, as microWakeWord publishes them.
Models load when the stage is built (a few ms each); a bad path is a ConfigError at start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from voiced.conversation.settings import ListenSettings, is_model_path, wake_word_name
from voiced.errors import ConfigError
from voiced.mic.stages import StageFrame, WakeDetected, register_stage

if TYPE_CHECKING:
    from voiced.config import VoicedConfig

#: The TFLite flatbuffer identifier (bytes 4..8 of every .tflite). Checked before loading: the
#: runtime does not survive a file that is not a model.
_TFLITE_MAGIC = b"TFL3"
_MAX_MODEL_BYTES = 50_000_000


@dataclass(frozen=True, slots=True)
class WakeScore:
    """``model`` heard: its windowed probability ``score`` exceeded its threshold."""

    model: str
    score: float


@dataclass(frozen=True, slots=True)
class WakeModelInfo:
    """What ``voiced check`` shows about one loaded model."""

    name: str
    phrase: str
    source: str
    threshold: float
    window: int


class WakeEngine(Protocol):
    """Detects wake words in a stream of 16 kHz mono s16le audio.

    Call :meth:`feed` with consecutive audio (any length, usually 20 ms); it returns the wake words
    detected in it (most often none). A detection is reported once, when the score rises through the
    threshold, not again for every frame it stays above it. Call :meth:`reset` when the audio is not
    continuous (after a gap, or when the device stopped talking): scores built up before it are
    forgotten.
    """

    @property
    def models(self) -> list[WakeModelInfo]: ...

    def feed(self, pcm: bytes) -> list[WakeScore]: ...

    def reset(self) -> None: ...


# -- microWakeWord -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _ModelSpec:
    name: str
    phrase: str
    json_path: Path
    tflite_path: Path
    threshold: float
    window: int
    languages: list[str]


def _bundled_dir() -> Path:
    import pymicro_wakeword  # noqa: PLC0415  (heavy: loaded only when a wake word is configured)

    return Path(pymicro_wakeword.__file__).resolve().parent


def bundled_models() -> list[str]:
    """Names of the models inside the installed pymicro-wakeword wheel."""
    return sorted(p.stem for p in (_bundled_dir() / "models").glob("*.json"))


def _model_json(entry: str) -> Path:
    if is_model_path(entry):
        path = Path(entry).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"listen.wake_words: no microWakeWord model at {entry!r}: give the path of the "
                "model's .json (with its .tflite beside it), or a bundled name such as okay_nabu"
            )
        return path
    path = _bundled_dir() / "models" / f"{entry}.json"
    if not path.is_file():
        raise ConfigError(
            f"listen.wake_words: no bundled wake word {entry!r}; bundled: {', '.join(bundled_models())} "
            "(or give the path of your own microWakeWord model's .json)"
        )
    return path


def _read_spec(entry: str, settings: ListenSettings) -> _ModelSpec:
    json_path = _model_json(entry)
    name = wake_word_name(entry)
    where = f"listen.wake_words: {str(json_path)[:200]!r}"
    try:
        raw: Any = json.loads(json_path.read_text(encoding="utf-8"))
        micro = raw["micro"]
        tflite_path = json_path.parent / str(raw["model"])
        threshold = float(settings.wake_thresholds.get(name, micro["probability_cutoff"]))
        window = int(settings.wake_windows.get(name, micro["sliding_window_size"]))
        phrase = str(raw.get("wake_word", name))[:80]
        languages = [str(x)[:16] for x in raw.get("trained_languages", [])][:32]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{where} is not a microWakeWord model description ({type(exc).__name__}: "
            f"{str(exc)[:120]}): it needs 'model' and 'micro.probability_cutoff/sliding_window_size'"
        ) from None
    if raw.get("type", "micro") != "micro":
        raise ConfigError(f"{where} is a {str(raw.get('type'))[:40]!r} model; only microWakeWord models work")
    try:
        size = tflite_path.stat().st_size
        with tflite_path.open("rb") as f:
            head = f.read(8)
    except OSError:
        raise ConfigError(
            f"{where}: its model file {str(tflite_path)[:200]!r} is missing: put the .tflite beside the .json"
        ) from None
    if head[4:8] != _TFLITE_MAGIC or size > _MAX_MODEL_BYTES:
        raise ConfigError(f"{where}: {str(tflite_path)[:200]!r} is not a TFLite model")
    if not 0.0 < threshold < 1.0 or not 1 <= window <= 100:
        raise ConfigError(f"{where}: threshold {threshold} or window {window} out of range")
    return _ModelSpec(name, phrase, json_path, tflite_path, threshold, window, languages)


class MicroWakeWordEngine:
    """Several microWakeWord models over one shared feature front end (features every 10 ms)."""

    def __init__(self, specs: list[_ModelSpec]) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures  # noqa: PLC0415

        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"listen.wake_words: a wake word is listed twice ({', '.join(names)})")
        runtime = next(iter((_bundled_dir() / "lib").glob("*tensorflowlite_c.*")), None)
        if runtime is None:
            raise ConfigError(
                "pymicro-wakeword has no TFLite runtime for this machine (it needs glibc >= 2.35 on "
                "x86_64 or aarch64): reinstall voiced, or set listen.mode to 'always'"
            )
        self._specs = specs
        self._features = MicroWakeWordFeatures()
        self._detectors = [
            MicroWakeWord(
                spec.name,
                wake_word=spec.phrase,
                tflite_model=spec.tflite_path,
                probability_cutoff=spec.threshold,
                sliding_window_size=spec.window,
                trained_languages=spec.languages,
                libtensorflowlite_c_path=runtime,
            )
            for spec in specs
        ]
        self._above = [False] * len(specs)
        # The model runs once per `stride` feature windows; in between it reports 0.0, which is not
        # a score and must not count as the score falling.
        self._since_run = [0] * len(specs)

    @property
    def models(self) -> list[WakeModelInfo]:
        """The loaded models with the threshold and window in force."""
        return [
            WakeModelInfo(s.name, s.phrase, str(s.json_path), s.threshold, s.window) for s in self._specs
        ]

    def feed(self, pcm: bytes) -> list[WakeScore]:
        """Score ``pcm`` (16 kHz s16le); the wake words whose windowed mean passed their threshold."""
        hits: list[WakeScore] = []
        for features in self._features.process_streaming(pcm):
            for i, (spec, detector) in enumerate(zip(self._specs, self._detectors, strict=True)):
                probability = detector.process_streaming_prob(features)
                self._since_run[i] += 1
                if self._since_run[i] < detector.stride:
                    continue
                self._since_run[i] = 0
                above = probability is not None and probability > spec.threshold
                if above and not self._above[i]:
                    hits.append(WakeScore(spec.name, round(float(probability or 0.0), 3)))
                self._above[i] = above
        return hits

    def reset(self) -> None:
        """Forget the audio so far (reloads each model's streaming state: ~1 ms per model)."""
        self._features.reset()
        self._above = [False] * len(self._specs)
        self._since_run = [0] * len(self._specs)
        for detector in self._detectors:
            detector.reset()


def load_engine(settings: ListenSettings) -> WakeEngine:
    """Load the configured wake words. Raises ConfigError with one line that says what to fix."""
    return MicroWakeWordEngine([_read_spec(entry, settings) for entry in settings.wake_words])


# -- the stage ---------------------------------------------------------------------------------------
class WakeWordStage:
    """Reports :class:`WakeDetected` events; hands every frame on unchanged.

    Scoring pauses while the device plays audio that no earlier stage cancelled (its own voice must
    not wake it); when playback ends the engine starts afresh, so nothing heard during it counts.
    After a detection every wake word is ignored for ``refractory_s`` of captured audio.
    """

    name = "wake_word"

    def __init__(self, engine: WakeEngine, refractory_s: float) -> None:
        self.engine = engine
        self.refractory_s = refractory_s
        self._quiet_until_s = float("-inf")
        self._suppressed = False
        self.detections = 0
        self.suppressed_frames = 0

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        """Score the frame unless the device's own voice is in it; append WakeDetected on a wake."""
        if frame.playback_active and not frame.echo_cancelled:
            self._suppressed = True
            self.suppressed_frames += 1
            return frame
        if self._suppressed:
            self._suppressed = False
            self.engine.reset()
        hits = self.engine.feed(frame.pcm)
        if hits and frame.captured_at_s >= self._quiet_until_s:
            best = max(hits, key=lambda hit: hit.score)
            self._quiet_until_s = frame.captured_at_s + self.refractory_s
            self.detections += 1
            events.append(WakeDetected(best.model, best.score, frame.captured_at_s))
        return frame

    def reset(self) -> None:
        """Forget the audio so far and any refractory period (the devices were reopened)."""
        self.engine.reset()
        self._quiet_until_s = float("-inf")
        self._suppressed = False


def build_stage(settings: ListenSettings) -> WakeWordStage:
    """The stage for these settings. Raises ConfigError."""
    return WakeWordStage(load_engine(settings), settings.wake_refractory_s)


@register_stage("wake_word")
def wake_word_stage(config: VoicedConfig) -> WakeWordStage:
    """Factory for ``stage_factory("wake_word")``: the wake words of ``[listen]``."""
    return build_stage(config.listen)


def wake_status(config: VoicedConfig) -> list[tuple[str, bool, str]]:
    """For ``voiced check``: one ``(name, ok, detail)`` row per configured wake word.

    Loads the models as the daemon would (a failing one is ``ok=False`` with the fix in ``detail``);
    when ``listen.mode`` is not ``wake_word`` the rows say the models are not used.
    """
    settings = config.listen
    unused = "" if settings.mode == "wake_word" else f" (not used: listen.mode is {settings.mode!r})"
    rows: list[tuple[str, bool, str]] = []
    for entry in settings.wake_words:
        label = f"wake word {wake_word_name(entry)}"
        try:
            engine = MicroWakeWordEngine([_read_spec(entry, settings)])
            engine.feed(np.zeros(1600, dtype=np.int16).tobytes())
        except ConfigError as exc:
            rows.append((label, False, str(exc)))
            continue
        except ImportError as exc:
            rows.append((label, False, f"pymicro-wakeword is not installed ({exc}): reinstall voiced"))
            continue
        info = engine.models[0]
        rows.append(
            (label, True, f"{info.phrase!r}, threshold {info.threshold:g}, window {info.window}{unused}")
        )
    return rows

