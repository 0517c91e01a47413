"""wake_word mode end to end: the real daemon, the emulator over loopback, espeak-ng speech as the user.

The privacy guarantee (nothing leaves before a wake), a wake word and a command in one breath, the
follow-up window, the device's own voice played back into its microphone, where the turn starts
after the chime, the timeout back to sleep, and the wake word said over a reply. In-memory devices
cannot drive the real echo canceller here (its timeline needs device clocks), so the last test puts
a stage in front that stands for one that removed the echo and vouches for every frame.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.wake_corpus import negatives
from tests.agent.harness import Harness, daemon_config, rms, running_daemon, utterance_pcm
from voiced.agent.status import DeviceState
from voiced.audio.frames import Int16Array
from voiced.audio.resample import resample
from voiced.config import VoicedConfig
from voiced.conversation.states import TurnState
from voiced.devices.memory import MemorySource
from voiced.devices.wav import read_wav_mono
from voiced.emulator import Emulator, EmulatorSettings, load_scenario, serve_emulator
from voiced.mic.stages import StageFrame, register_stage
from voiced.protocol import events as ev

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]

WAKE_UTTERANCE = Path(__file__).resolve().parents[2] / "voiced" / "assets" / "wake_utterance_16k.wav"
#: In the wake utterance: "Okay Nabu" ends here; "what time is it?" follows after a breath.
WAKE_END_S = 1.31


def wake_pcm() -> Int16Array:
    pcm, rate = read_wav_mono(WAKE_UTTERANCE)
    assert rate == 16000
    return pcm


def appends(emu: object) -> list[object]:
    return [r.event for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend)]  # type: ignore[attr-defined]


def wake_config(emu: Emulator, **overrides: Any) -> VoicedConfig:
    return daemon_config(emu, **{"listen.mode": "wake_word", **overrides})


def state_times(h: Harness) -> list[tuple[float, DeviceState]]:
    """Every device state from now on, with the loop time it was entered."""
    seen: list[tuple[float, DeviceState]] = []
    h.daemon.status.subscribe(lambda state, detail: seen.append((asyncio.get_running_loop().time(), state)))
    return seen


@pytest.mark.parametrize("listen_during_cue", [False, True])
async def test_the_turn_starts_after_the_chime_and_never_with_the_wake_word(listen_during_cue: bool) -> None:
    # With the server's VAD every frame after the wake is streamed, so the first append shows where
    # the turn starts: after the chime (the mic must not hear it), or at once when told to listen.
    source = MemorySource(np.zeros(0, dtype=np.int16), paced=True, after_end="silence")
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu:
        config = wake_config(
            emu, **{"session.turn_detection": "server_vad", "listen.listen_during_cue": listen_during_cue}
        )
        async with running_daemon(config, source) as h:
            states = state_times(h)
            source.append(wake_pcm())
            await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferAppend), 10.0)
            assert h.daemon.cue_player is not None
            chime_s = h.daemon.cue_player.duration_s("wake")
            assert h.daemon.cue_player.played["wake"] == 1
    woken_s = next(t for t, state in states if state is DeviceState.LISTENING)
    first = next(r for r in emu.received if isinstance(r.event, ev.InputAudioBufferAppend))
    gap_s = first.at_monotonic_s - woken_s
    assert chime_s > 0.15
    if listen_during_cue:
        assert 0.0 < gap_s < chime_s / 2  # the next frame; the one carrying "nabu" is not sent
    else:
        assert 0.8 * chime_s < gap_s < chime_s + 0.3


async def test_no_speech_after_a_wake_goes_back_to_sleep_with_the_done_sound() -> None:
    okay_nabu_only = wake_pcm()[: int((WAKE_END_S + 0.3) * 16000)]
    source = MemorySource(okay_nabu_only, paced=True, after_end="silence")
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu:
        config = wake_config(emu, **{"listen.after_wake_timeout_s": 1.0})
        async with running_daemon(config, source) as h:
            states = state_times(h)
            await asyncio.sleep(WAKE_END_S + 0.3 + 1.0 + 1.0)
            cues = h.daemon.cue_player
            assert cues is not None and cues.played["wake"] == 1 and cues.played["done"] == 1
            assert h.daemon.status.state is DeviceState.SLEEPING
            assert h.daemon.agent is not None and h.daemon.agent.counters.wakes == 1
            assert not h.turns
    awake = [(t, state) for t, state in states if state in (DeviceState.LISTENING, DeviceState.SLEEPING)]
    # Asleep (the state at subscription), woken, then asleep again once the timeout passed.
    assert [state for _, state in awake] == [
        DeviceState.SLEEPING,
        DeviceState.LISTENING,
        DeviceState.SLEEPING,
    ]
    (woke_s, _), (slept_s, _) = awake[1:]
    assert 0.9 < slept_s - woke_s < 1.6
    assert appends(emu) == []


@pytest.mark.parametrize("turn_detection", ["client_interrupt", "server_vad"])
async def test_minutes_of_speech_without_the_wake_word_send_nothing(turn_detection: str) -> None:
    speech = negatives(quick=True)[0].pcm  # over two minutes of ordinary speech
    source = MemorySource(speech, paced=False, after_end="silence")  # seconds, not minutes
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu:
        config = wake_config(emu, **{"session.turn_detection": turn_detection})
        async with running_daemon(config, source) as h:
            while source.remaining_samples > 0:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert not h.turns
        assert appends(emu) == []


async def test_okay_nabu_what_time_is_it_calls_the_tool_and_the_reply_is_heard() -> None:
    source = MemorySource(wake_pcm(), paced=True, after_end="silence")
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu, running_daemon(wake_config(emu), source) as h:
        turn = await h.next_turn()
        await asyncio.sleep(0.5)
        heard = h.sink.audio()
    assert turn.tool_calls == ["current_time"]
    assert turn.reply.startswith("It is ")
    assert turn.played_ms > 500 and rms(heard) > 100
    # Only what followed the wake word was sent: at most the rest of the utterance (20 ms packets).
    sent = appends(emu)
    after_wake_s = wake_pcm().size / 16000 - WAKE_END_S
    assert 10 < len(sent) <= after_wake_s / 0.02 + 5


async def test_a_follow_up_needs_no_wake_word_inside_the_window_and_one_after_it() -> None:
    source = MemorySource(wake_pcm(), paced=True, after_end="silence")
    settings = EmulatorSettings(port=0, scenario=load_scenario("demo"))
    async with serve_emulator(settings) as emu:
        config = wake_config(emu, **{"listen.follow_up_s": 3.0})
        async with running_daemon(config, source) as h:
            await h.next_turn()
            source.append(utterance_pcm())  # "What time is it right now?" with no wake word, at once
            second = await h.next_turn(timeout_s=20.0)
            # A turn of its own, heard without a wake word (the demo bot answers it from its fallback).
            assert second.speech_start_s is not None and second.heard and not second.interrupted
            await asyncio.sleep(3.0 + 2.0)  # the window has closed: asleep again
            before = len(appends(emu))
            source.append(utterance_pcm())
            await asyncio.sleep(4.0)
            assert len(h.turns) == 2
            assert len(appends(emu)) == before


class LoopbackSink:
    """A speaker whose output is also heard by the microphone (an acoustic loop, no echo canceller)."""

    def __init__(self, inner: object, mic: MemorySource, gain: float) -> None:
        self.inner = inner
        self.mic = mic
        self.gain = gain
        self.sample_rate_hz: int = inner.sample_rate_hz  # type: ignore[attr-defined]
        self.block_samples: int = inner.block_samples  # type: ignore[attr-defined]
        self.tap = None

    async def start(self) -> None:
        await self.inner.start()  # type: ignore[attr-defined]

    def writable_samples(self) -> int:
        return int(self.inner.writable_samples())  # type: ignore[attr-defined]

    def queued_samples(self) -> int:
        return int(self.inner.queued_samples())  # type: ignore[attr-defined]

    def write(self, pcm: Int16Array) -> None:
        self.inner.write(pcm)  # type: ignore[attr-defined]
        echo = resample(pcm, self.sample_rate_hz, 16000).astype(np.float64) * self.gain
        # Heard now, over whatever the microphone is capturing, as in a room.
        self.mic.mix(np.clip(np.round(echo), -32768, 32767).astype(np.int16))

    def mark_idle(self) -> None:
        self.inner.mark_idle()  # type: ignore[attr-defined]

    def clear(self, fade_ms: float) -> None:
        self.inner.clear(fade_ms)  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self.inner.stop()  # type: ignore[attr-defined]

    def check(self) -> None:
        self.inner.check()  # type: ignore[attr-defined]


async def test_the_devices_own_voice_saying_the_wake_word_never_wakes_it(tmp_path: Path) -> None:
    from voiced.agent.daemon import Daemon
    from voiced.devices.memory import MemorySink

    scenario = tmp_path / "parrot.toml"
    scenario.write_text(
        'description = "Says the wake word."\n[fallback]\ntranscript = "Hello."\n'
        'reply = ["Okay Nabu. I said okay nabu. Okay Nabu, okay nabu."]\n'
    )
    source = MemorySource(wake_pcm(), paced=True, after_end="silence")
    turns: list[object] = []

    async def source_factory() -> MemorySource:
        await source.start()
        return source

    async def sink_factory(rate_hz: int) -> LoopbackSink:
        sink = LoopbackSink(MemorySink(rate_hz), source, gain=0.5)
        await sink.start()
        return sink

    settings = EmulatorSettings(port=0, scenario=load_scenario(scenario))
    async with serve_emulator(settings) as emu:
        config = wake_config(emu, **{"listen.follow_up_s": 0.0, "agent.barge_in": False})
        daemon = Daemon(
            config,
            source_factory,
            sink_factory,  # type: ignore[arg-type]
            install_signal_handlers=False,
            on_turn=turns.append,
        )
        task = asyncio.create_task(daemon.run())
        try:
            async with asyncio.timeout(30):
                while not turns:
                    await asyncio.sleep(0.05)
            first_turn_appends = len(appends(emu))
            await asyncio.sleep(8.0)  # the whole reply is played into the mic, then silence
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 10.0)
    assert len(turns) == 1
    assert len(appends(emu)) == first_turn_appends


class EchoFreeMic:
    """Stands in for an echo canceller that removed the device's voice (the microphone here never
    hears it): it vouches for every frame, as ``echo_cancel`` does once converged."""

    name = "test_echo_free"

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        return dataclasses.replace(frame, echo_cancelled=True)

    def reset(self) -> None:
        pass


register_stage("test_echo_free")(lambda config: EchoFreeMic())


@pytest.mark.parametrize("barge_in", [True, False])
async def test_with_echo_cancelled_okay_nabu_said_over_the_reply_interrupts_it(barge_in: bool) -> None:
    source = MemorySource(wake_pcm(), paced=True, after_end="silence")
    settings = EmulatorSettings(port=0, scenario=load_scenario("long"))
    async with serve_emulator(settings) as emu:
        config = wake_config(emu, **{"audio.stages": ["test_echo_free"], "agent.barge_in": barge_in})
        async with running_daemon(config, source) as h:
            agent, cues = h.daemon.agent, h.daemon.cue_player
            assert agent is not None and cues is not None
            async with asyncio.timeout(30):
                while agent.state not in (TurnState.SPEAKING, TurnState.GATED):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            assert agent.counters.wakes == 1 and agent.counters.interrupts == 0
            source.append(wake_pcm()[: int((WAKE_END_S + 0.3) * 16000)])  # the user: "Okay Nabu"
            async with asyncio.timeout(5):
                while agent.counters.interrupts == 0 or not h.turns:
                    await asyncio.sleep(0.02)
            turn = h.turns[0]
            if barge_in:
                # Plain speech interrupts first, as configured; the turn it opened goes on (the wake
                # word heard inside it changes nothing, no chime) and is sent when the user stops.
                assert agent.counters.interrupts_by_reason == {"barge-in": 1}
                async with asyncio.timeout(10):
                    while (
                        len([r for r in emu.received if isinstance(r.event, ev.InputAudioBufferComplete)]) < 2
                    ):
                        await asyncio.sleep(0.05)
                assert cues.played["wake"] == 1
            else:
                # Only the wake word may interrupt: it does, and the device listens for the request.
                assert agent.counters.interrupts_by_reason == {"wake word": 1}
                assert h.daemon.status.state is DeviceState.LISTENING
                assert cues.played["wake"] == 2
        assert turn.interrupted and 500 < turn.played_ms < 5000  # the long story, cut short
    cancels = [r for r in emu.received if isinstance(r.event, ev.ConversationChatCancel)]
    assert len(cancels) == 1
