"""The wake_word stage on real (synthesized) speech: espeak-ng audio through the bundled model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.wake_corpus import RATE_HZ, negatives, synthesize, with_condition
from voiced.audio.frames import Int16Array
from voiced.config import VoicedConfig, load_config
from voiced.conversation.settings import ListenSettings
from voiced.errors import EXIT_CONFIG, ConfigError
from voiced.mic.stages import StageFrame, WakeDetected, stage_factory
from voiced.mic.wake import WakeWordStage, build_stage, bundled_models, wake_status

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

FRAME = 320


def feed(
    stage: WakeWordStage,
    pcm: Int16Array,
    *,
    start_s: float = 0.0,
    playback_active: bool = False,
    echo_cancelled: bool = False,
) -> list[WakeDetected]:
    """Run 20 ms frames through the stage; the wakes it reported. Checks frames pass unchanged."""
    events: list[object] = []
    data = pcm.astype("<i2").tobytes()
    for i in range(0, len(data) - 2 * FRAME + 1, 2 * FRAME):
        frame = StageFrame(
            data[i : i + 2 * FRAME],
            start_s + i / 2 / RATE_HZ,
            playback_active=playback_active,
            playback_level_dbfs=-20.0 if playback_active else None,
            echo_cancelled=echo_cancelled,
        )
        assert stage.process(frame, events) is frame
    return [e for e in events if isinstance(e, WakeDetected)]


def silence(seconds: float) -> Int16Array:
    return np.zeros(int(seconds * RATE_HZ), dtype=np.int16)


@pytest.fixture(scope="module")
def okay_nabu() -> Int16Array:
    """'okay nabu', clear, 0.5 s lead and 0.8 s tail."""
    return with_condition(synthesize("okay nabu", "en-us", 165, 50), "clean", 1)


@pytest.fixture(scope="module")
def stage() -> WakeWordStage:
    return build_stage(ListenSettings())


@pytest.mark.parametrize(
    ("voice", "condition"),
    [("en-us", "clean"), ("en-gb", "clean"), ("en-gb-x-rp", "noise10db"), ("en-us", "reverb")],
)
def test_okay_nabu_wakes_it_once_at_the_end_of_the_phrase(
    stage: WakeWordStage, voice: str, condition: str
) -> None:
    speech = synthesize("okay nabu", voice, 165, 50)
    clip = with_condition(speech, condition, 3)
    stage.reset()
    wakes = feed(stage, clip, start_s=100.0)
    assert len(wakes) == 1
    assert wakes[0].model == "okay_nabu"
    assert 0.85 < wakes[0].score <= 1.0
    phrase_end_s = 100.0 + 0.5 + speech.size / RATE_HZ
    # Reported on the frame where the model is sure: after most of the phrase, well before 1 s later.
    assert phrase_end_s - 0.4 < wakes[0].detected_at_s < phrase_end_s + 1.0


def test_the_command_after_the_wake_word_does_not_wake_it_again(stage: WakeWordStage) -> None:
    clip = with_condition(synthesize("okay nabu, what time is it?", "en-us", 165, 50), "clean", 4)
    stage.reset()
    wakes = feed(stage, clip)
    assert [w.model for w in wakes] == ["okay_nabu"]


def test_minutes_of_ordinary_speech_never_wake_it(stage: WakeWordStage) -> None:
    speech = negatives(quick=True)[0]  # over two minutes, "okay" several times, never the wake word
    assert speech.seconds > 120
    stage.reset()
    assert feed(stage, speech.pcm) == []


def test_one_utterance_wakes_once_and_the_refractory_period_ends(okay_nabu: Int16Array) -> None:
    # The second phrase 1.5 s after the first ("okay nabu... okay nabu"), and 3.6 s after it.
    twice_close = np.concatenate([okay_nabu[: -RATE_HZ // 2], okay_nabu])
    twice_far = np.concatenate([okay_nabu, silence(1.5), okay_nabu])

    default = build_stage(ListenSettings())
    assert len(feed(default, twice_close)) == 1
    default.reset()
    far = feed(default, twice_far)
    assert len(far) == 2
    assert far[1].detected_at_s - far[0].detected_at_s > 3.0

    none = build_stage(ListenSettings(wake_refractory_s=0.0))
    assert len(feed(none, twice_close)) == 2

    longer = build_stage(ListenSettings(wake_refractory_s=6.0))
    assert len(feed(longer, twice_far)) == 1


def test_not_scored_while_the_device_talks_unless_the_echo_was_cancelled(
    stage: WakeWordStage, okay_nabu: Int16Array
) -> None:
    stage.reset()
    # The device says "okay nabu" itself: no echo canceller, so the phrase must not count...
    assert feed(stage, okay_nabu, playback_active=True) == []
    # ...not even its tail once playback ends: the engine starts afresh.
    half = okay_nabu.size // 2 + 4000
    assert feed(stage, okay_nabu[:half], playback_active=True) == []
    assert feed(stage, okay_nabu[half:], start_s=10.0) == []
    # The user says it after the reply: it wakes.
    assert len(feed(stage, okay_nabu, start_s=20.0)) == 1
    # With an echo canceller in front, what is heard during playback is the user: barge-in.
    stage.reset()
    assert len(feed(stage, okay_nabu, playback_active=True, echo_cancelled=True)) == 1


def copy_model(tmp_path: Path, name: str) -> Path:
    """The bundled okay_nabu model as a user's own model file ``name.json`` + ``name.tflite``."""
    import json

    import pymicro_wakeword

    models = Path(pymicro_wakeword.__file__).parent / "models"
    meta = json.loads((models / "okay_nabu.json").read_text())
    meta["model"] = f"{name}.tflite"
    shutil.copy(models / "okay_nabu.tflite", tmp_path / f"{name}.tflite")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(meta))
    return path


def test_a_users_own_model_by_path_with_its_own_threshold_beside_a_bundled_one(
    tmp_path: Path, okay_nabu: Int16Array
) -> None:
    path = copy_model(tmp_path, "my_word")
    config = VoicedConfig.model_validate(
        {"listen": {"wake_words": ["hey_jarvis", str(path)], "wake_thresholds": {"my_word": 0.6}}}
    )
    stage = stage_factory("wake_word")(config)
    assert isinstance(stage, WakeWordStage)
    assert [(m.name, m.threshold) for m in stage.engine.models] == [("hey_jarvis", 0.97), ("my_word", 0.6)]
    assert [w.model for w in feed(stage, okay_nabu)] == ["my_word"]


def test_a_threshold_above_every_score_never_fires(okay_nabu: Int16Array) -> None:
    stage = build_stage(ListenSettings(wake_thresholds={"okay_nabu": 0.999}, wake_windows={"okay_nabu": 20}))
    assert feed(stage, okay_nabu) == []


def test_a_missing_or_broken_model_is_one_config_error_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "my_word.json"
    config = VoicedConfig.model_validate({"listen": {"wake_words": [str(missing)]}})
    with pytest.raises(ConfigError) as caught:
        stage_factory("wake_word")(config)
    message = str(caught.value)
    assert "\n" not in message and "listen.wake_words" in message and str(missing) in message
    assert caught.value.exit_code == EXIT_CONFIG

    broken = copy_model(tmp_path, "broken")
    (tmp_path / "broken.tflite").write_bytes(b"this is not a model at all")
    with pytest.raises(ConfigError, match=r"is not a TFLite model"):
        build_stage(ListenSettings(wake_words=[str(broken)]))

    (tmp_path / "no_tflite.json").write_text('{"model": "absent.tflite", "micro": {}}')
    with pytest.raises(ConfigError, match=r"listen.wake_words") as caught:
        build_stage(ListenSettings(wake_words=[str(tmp_path / "no_tflite.json")]))
    assert "\n" not in str(caught.value)

    with pytest.raises(ConfigError, match=r"no bundled wake word 'okay_nabbu'.*okay_nabu"):
        build_stage(ListenSettings(wake_words=["okay_nabbu"]))


def test_tuning_must_name_a_configured_wake_word(tmp_path: Path) -> None:
    toml = tmp_path / "voiced.toml"
    toml.write_text('[listen]\nwake_words = ["okay_nabu"]\nwake_thresholds = { hey_jarvis = 0.9 }\n')
    with pytest.raises(ConfigError, match=r"hey_jarvis.*not one of the wake words"):
        load_config(toml, environ={})
    toml.write_text("[listen]\nwake_thresholds = { okay_nabu = 1.5 }\n")
    with pytest.raises(ConfigError, match=r"between 0 and 1"):
        load_config(toml, environ={})


def test_wake_status_reports_each_configured_model(tmp_path: Path) -> None:
    assert {"okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"} <= set(bundled_models())
    config = VoicedConfig.model_validate(
        {"listen": {"mode": "wake_word", "wake_words": ["okay_nabu", str(tmp_path / "gone.json")]}}
    )
    rows = wake_status(config)
    assert rows[0][:2] == ("wake word okay_nabu", True)
    assert "Okay Nabu" in rows[0][2] and "0.85" in rows[0][2] and "not used" not in rows[0][2]
    assert rows[1][:2] == ("wake word gone", False)
    assert "gone.json" in rows[1][2]
    idle = wake_status(VoicedConfig())
    assert idle[0][1] and "not used" in idle[0][2]


def test_the_demo_utterance_wakes_it_once_before_the_command_starts() -> None:
    from voiced.devices.wav import read_wav_mono

    pcm, rate = read_wav_mono(Path(__file__).resolve().parents[2] / "voiced/assets/wake_utterance_16k.wav")
    assert rate == RATE_HZ
    wakes = feed(build_stage(ListenSettings()), pcm)
    # "Okay Nabu" ends at 1.31 s and "what time is it?" starts at 1.76 s (scripts/make_wake_utterance.py).
    assert len(wakes) == 1
    assert 1.0 < wakes[0].detected_at_s + FRAME / RATE_HZ < 1.76 - 0.15


async def test_voiced_check_shows_the_loaded_models_or_why_there_are_none(tmp_path: Path) -> None:
    from voiced.agent.check import CheckContext, check_wake_word, render

    idle = await check_wake_word(CheckContext(VoicedConfig(), open_devices=False))
    assert [(r.name, r.status) for r in idle] == [("wake word", "skip")]
    assert "listen.mode is 'always'" in idle[0].detail

    config = VoicedConfig.model_validate(
        {"listen": {"mode": "wake_word", "wake_words": ["okay_nabu", "hey_jarvis"]}}
    )
    rows = await check_wake_word(CheckContext(config, open_devices=False))
    assert [(r.name, r.status) for r in rows] == [
        ("wake word okay_nabu", "ok"),
        ("wake word hey_jarvis", "ok"),
    ]
    assert "threshold 0.85" in rows[0].detail and "Hey Jarvis" in rows[1].detail
    assert "wake word okay_nabu" in render(rows)

    broken = VoicedConfig.model_validate(
        {"listen": {"mode": "wake_word", "wake_words": [str(tmp_path / "gone.json")]}}
    )
    [row] = await check_wake_word(CheckContext(broken, open_devices=False))
    assert row.status == "FAIL" and not row.ok and "gone.json" in row.detail
