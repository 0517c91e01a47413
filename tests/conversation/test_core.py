"""The conversation core driven with a fake clock and no event loop: real session, real turn detector."""

from __future__ import annotations

import base64
import itertools
import wave
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.protocol.samples import CHAT, TOOL_CHAT
from voiced.config import VoicedConfig, load_config
from voiced.conversation.core import (
    MAX_TRACKED_CHATS,
    Action,
    CancelTools,
    Conversation,
    EndTurn,
    Flush,
    Play,
    Playback,
    PlayCue,
    Reconnect,
    SendAudio,
    SendControl,
    StartTools,
    StateChanged,
    Stop,
    TurnEnded,
)
from voiced.conversation.notices import Notice, NoticeKind
from voiced.conversation.states import TRANSITIONS, Target, Trigger, TurnState
from voiced.devices.base import MicFrame
from voiced.errors import EXIT_CONFIG, EXIT_NOPERM, EXIT_UNAVAILABLE
from voiced.mic.stages import MicPath, StageFrame, WakeDetected, register_stage
from voiced.mic.turn import TurnDetectorStage
from voiced.protocol import events as ev
from voiced.protocol.models import ErrorData, SessionConfig, ToolOutput
from voiced.protocol.session import ClientSession

UTTERANCE = Path(__file__).resolve().parents[2] / "voiced" / "assets" / "utterance_16k.wav"
FRAME_BYTES = 640
SILENCE = bytes(FRAME_BYTES)


def utterance_frames() -> list[bytes]:
    with wave.open(str(UTTERANCE), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def step(self, seconds: float = 0.02) -> float:
        self.now_s += seconds
        return self.now_s


class Rig:
    """A conversation with its session, a clock and every action it returned."""

    def __init__(self, **overrides: Any) -> None:
        base: dict[str, Any] = {"session.input_codec": "pcm"}
        base.update(overrides)
        self.config: VoicedConfig = load_config(None, environ={}, overrides=base)
        self.session = ClientSession(self.config.session_config())
        stages = MicPath.from_config(self.config, list(self.config.audio.stages))
        self.conv = Conversation(self.config, self.session, stages, TurnDetectorStage(self.config.audio.vad))
        self.clock = Clock()
        self.actions: list[Action] = []
        self.playback = Playback()

    def run(self, actions: list[Action]) -> list[Action]:
        self.actions += actions
        return actions

    def receive(self, *frames: str) -> list[Action]:
        out: list[Action] = []
        for frame in frames:
            out += self.conv.received(self.session.receive(frame), self.playback, self.clock.step(0.001))
        return self.run(out)

    def connect(self) -> None:
        self.receive(ev.ChatCreated().to_frame(), ev.ChatUpdated(data=SessionConfig()).to_frame())

    def mic(self, frames: Iterable[bytes]) -> list[Action]:
        out: list[Action] = []
        for pcm in frames:
            now = self.clock.step()
            out += self.conv.mic_frame(MicFrame(pcm, now - 0.02), self.playback, now)
        return self.run(out)

    def tick(self, seconds: float = 0.0) -> list[Action]:
        return self.run(self.conv.tick(self.playback, self.clock.step(seconds)))

    def of(self, kind: type[Any], actions: list[Action] | None = None) -> list[Any]:
        return [a for a in (self.actions if actions is None else actions) if isinstance(a, kind)]

    def state(self) -> TurnState:
        return self.conv.state

    def states(self) -> list[TurnState]:
        return [a.new for a in self.of(StateChanged)]


def audio(chat_id: str, value: int, ms: int) -> str:
    pcm = np.full(24 * ms, value, dtype=np.int16).tobytes()
    return ev.ConversationAudioDelta(
        data=ev.Message(chat_id=chat_id, content_type="audio", content=base64.b64encode(pcm).decode())
    ).to_frame()


def chat_created(chat_id: str) -> str:
    return ev.ConversationChatCreated(
        data=CHAT.model_copy(update={"id": chat_id, "status": "created"})
    ).to_frame()


def chat_completed(chat_id: str) -> str:
    return ev.ConversationChatCompleted(
        data=CHAT.model_copy(update={"id": chat_id, "status": "completed"})
    ).to_frame()


# --- the table ----------------------------------------------------------------------------------------


def test_every_state_is_reachable_and_every_move_lands_on_a_state() -> None:
    reached = {TurnState.SLEEPING, TurnState.IDLE}
    for _ in range(len(TurnState)):
        for (state, _trigger), target in TRANSITIONS.items():
            if state in reached and isinstance(target, TurnState):
                reached.add(target)
    assert reached == set(TurnState)
    assert all(isinstance(t, TurnState | Target) for t in TRANSITIONS.values())
    # Every state can lose its connection without an illegal move.
    assert all((state, Trigger.CONNECTION_LOST) in TRANSITIONS for state in TurnState)


def test_an_illegal_move_is_reported_and_not_acted_on() -> None:
    @register_stage("test_always_wakes")
    def _always_wakes(config: VoicedConfig) -> Any:
        class AlwaysWakes:
            name = "test_always_wakes"

            def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
                events.append(WakeDetected("test", 0.99, frame.captured_at_s))
                return frame

            def reset(self) -> None:
                pass

        return AlwaysWakes()

    rig = Rig(**{"agent.half_duplex": True, "audio.stages": ["test_always_wakes"]})
    rig.connect()
    rig.receive(chat_created("A"), audio("A", 1000, 100))
    assert rig.state() is TurnState.GATED
    rig.playback = Playback(active=True, level_dbfs=-20.0, chat_id="A")
    rig.mic([SILENCE])
    notices = [n for n in rig.of(Notice) if n.kind is NoticeKind.ILLEGAL_MOVE]
    assert notices and notices[0].fields == {"state": "gated", "trigger": "wake word"}
    assert rig.state() is TurnState.GATED
    assert rig.conv.counters.illegal_moves == 1
    assert not rig.of(Flush)


# --- turns ---------------------------------------------------------------------------------------------


def test_a_spoken_turn_streams_its_audio_then_ends_and_the_reply_plays() -> None:
    rig = Rig()
    rig.connect()
    sent = rig.mic(utterance_frames() + [SILENCE] * 50)
    audio_bytes = sum(len(a.pcm) for a in rig.of(SendAudio, sent))
    assert audio_bytes > 0.8 * sum(len(f) for f in utterance_frames()[:50])
    ends = rig.of(EndTurn, sent)
    assert len(ends) == 1
    assert rig.state() is TurnState.AWAITING_REPLY
    rig.receive(chat_created("A"), audio("A", 1000, 200))
    assert rig.state() is TurnState.SPEAKING
    assert [p.chat_id for p in rig.of(Play)] == ["A"]
    rig.receive(chat_completed("A"))
    rig.playback = Playback(active=False)
    rig.tick()
    assert rig.state() is TurnState.IDLE
    assert rig.states() == [TurnState.USER_TURN, TurnState.AWAITING_REPLY, TurnState.SPEAKING, TurnState.IDLE]
    turns = rig.of(TurnEnded)
    assert len(turns) == 1 and turns[0].turn.chat_id == "A" and turns[0].turn.speech_end_s is not None


def test_only_the_held_pre_roll_is_marked_as_not_live() -> None:
    # The pre-roll waits for the turn detector; mic -> wire latency counts the frames sent as captured.
    rig = Rig()
    rig.connect()
    sent = rig.of(SendAudio, rig.mic(utterance_frames() + [SILENCE] * 50))
    assert len(sent) > 10
    assert not sent[0].live and len(sent[0].pcm) > 640, "the turn starts with its pre-roll, held back"
    assert all(a.live and len(a.pcm) == 640 for a in sent[1:])


def test_speech_over_the_reply_interrupts_it() -> None:
    rig = Rig()
    rig.connect()
    rig.receive(chat_created("A"), audio("A", 1000, 200))
    rig.playback = Playback(active=True, level_dbfs=-60.0, chat_id="A")
    rig.mic(utterance_frames()[:40])
    cancels = [a for a in rig.of(SendControl) if "conversation.chat.cancel" in a.frame]
    assert len(cancels) == 1 and cancels[0].first
    assert [f.chat_id for f in rig.of(Flush)] == ["A"]
    assert rig.state() is TurnState.USER_TURN
    assert rig.session.is_cancelled("A")
    # Late audio of the cancelled reply is never played.
    before = len(rig.of(Play))
    rig.receive(audio("A", 1000, 100))
    assert len(rig.of(Play)) == before
    assert rig.conv.counters.interrupts_by_reason == {"barge-in": 1}


def test_half_duplex_gates_the_microphone_while_the_device_talks() -> None:
    rig = Rig(**{"agent.half_duplex": True})
    rig.connect()
    rig.receive(chat_created("A"), audio("A", 1000, 200))
    assert rig.state() is TurnState.GATED
    rig.playback = Playback(active=True, level_dbfs=-60.0, chat_id="A")
    sent = rig.mic(utterance_frames())
    assert not rig.of(SendAudio, sent) and not rig.of(Flush)
    rig.receive(chat_completed("A"))
    rig.playback = Playback()
    rig.tick()
    assert rig.state() is TurnState.IDLE


def test_a_trivial_stage_runs_in_front_of_the_turn_detector() -> None:
    seen: list[float] = []

    @register_stage("test_silencer")
    def _silencer(config: VoicedConfig) -> Any:
        class Silencer:
            name = "test_silencer"

            def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
                seen.append(frame.captured_at_s)
                return replace(frame, pcm=bytes(len(frame.pcm)))

            def reset(self) -> None:
                pass

        return Silencer()

    rig = Rig(**{"audio.stages": ["test_silencer"]})
    rig.connect()
    frames = utterance_frames()
    rig.mic(frames)
    assert len(seen) == len(frames)
    # The turn detector heard only what the stage handed on: silence.
    assert not rig.of(SendAudio) and rig.state() is TurnState.IDLE


def test_an_unknown_stage_is_a_config_error_naming_the_known_ones() -> None:
    from voiced.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no stage named 'nope'.*wake_word"):
        Rig(**{"audio.stages": ["nope"]})


# --- wake word -----------------------------------------------------------------------------------------


class ScriptedWake:
    """A wake stage that fires on the frames it is told to (the real engine is tested elsewhere)."""

    name = "test_scripted_wake"
    fire_at: set[int] = set()  # noqa: RUF012  (a test script shared with its factory)

    def __init__(self) -> None:
        self.index = 0

    def process(self, frame: StageFrame, events: list[object]) -> StageFrame:
        if self.index in self.fire_at:
            events.append(WakeDetected("okay_nabu", 0.97, frame.captured_at_s))
        self.index += 1
        return frame

    def reset(self) -> None:
        pass


register_stage("test_scripted_wake")(lambda config: ScriptedWake())


def test_nothing_is_sent_before_the_wake_word() -> None:
    ScriptedWake.fire_at = set()
    rig = Rig(**{"listen.mode": "wake_word", "audio.stages": ["test_scripted_wake"]})
    rig.connect()
    assert rig.state() is TurnState.SLEEPING
    rig.mic(utterance_frames() * 3)
    assert not rig.of(SendAudio) and not rig.of(EndTurn)


def test_the_speech_after_the_wake_word_is_the_turn_then_a_follow_up_then_sleep() -> None:
    ScriptedWake.fire_at = {0}
    rig = Rig(
        **{"listen.mode": "wake_word", "audio.stages": ["test_scripted_wake"], "listen.follow_up_s": 3.0}
    )
    rig.connect()
    rig.mic([SILENCE])
    assert rig.state() is TurnState.IDLE and rig.of(PlayCue)[0].kind == "wake"
    rig.mic(utterance_frames() + [SILENCE] * 50)
    assert rig.of(SendAudio) and len(rig.of(EndTurn)) == 1
    rig.receive(chat_created("A"), audio("A", 1000, 100), chat_completed("A"))
    rig.tick()
    # Follow-up: listening without a wake word...
    assert rig.state() is TurnState.IDLE
    sent_before = len(rig.of(SendAudio))
    rig.mic(utterance_frames() + [SILENCE] * 50)
    assert len(rig.of(SendAudio)) > sent_before and len(rig.of(EndTurn)) == 2
    rig.receive(chat_created("B"), audio("B", 1000, 100), chat_completed("B"))
    rig.tick()
    # ...until the window closes: then asleep, with the "done" sound.
    rig.tick(3.5)
    assert rig.state() is TurnState.SLEEPING
    assert [c.kind for c in rig.of(PlayCue)][-1] == "done"
    sent_before = len(rig.of(SendAudio))
    rig.mic(utterance_frames())
    assert len(rig.of(SendAudio)) == sent_before


def test_no_speech_after_a_wake_goes_back_to_sleep() -> None:
    ScriptedWake.fire_at = {0}
    rig = Rig(**{"listen.mode": "wake_word", "audio.stages": ["test_scripted_wake"]})
    rig.connect()
    rig.mic([SILENCE] * 10)
    rig.tick(rig.config.listen.after_wake_timeout_s + 0.1)
    assert rig.state() is TurnState.SLEEPING
    assert [n for n in rig.of(Notice) if n.kind is NoticeKind.LISTEN_TIMEOUT]


# --- push to talk --------------------------------------------------------------------------------------


def test_push_to_talk_sends_every_frame_and_ends_the_turn_on_release() -> None:
    rig = Rig(**{"listen.mode": "push_to_talk"})
    rig.connect()
    rig.mic([SILENCE] * 5)
    assert not rig.of(SendAudio)
    rig.run(rig.conv.press(rig.playback, rig.clock.step()))
    rig.mic([SILENCE] * 20)
    rig.run(rig.conv.release(rig.clock.step()))
    assert len(rig.of(SendAudio)) == 20 and len(rig.of(EndTurn)) == 1
    assert rig.state() is TurnState.AWAITING_REPLY


def test_a_storm_of_presses_opens_no_empty_turns() -> None:
    rig = Rig()
    rig.connect()
    for _ in range(250):
        rig.run(rig.conv.press(rig.playback, rig.clock.step(0.002)))
        rig.run(rig.conv.release(rig.clock.step(0.003)))
    assert not rig.of(EndTurn)
    assert rig.state() is TurnState.IDLE


def test_a_press_interrupts_the_reply() -> None:
    rig = Rig()
    rig.connect()
    rig.receive(chat_created("A"), audio("A", 1000, 200))
    rig.playback = Playback(active=True, level_dbfs=-20.0, chat_id="A")
    rig.run(rig.conv.press(rig.playback, rig.clock.step()))
    assert rig.state() is TurnState.PUSH_TO_TALK
    assert [f.chat_id for f in rig.of(Flush)] == ["A"]


# --- the downlink --------------------------------------------------------------------------------------


def test_server_cancel_drops_a_reply_that_had_not_started_playing() -> None:
    rig = Rig()
    rig.connect()
    rig.receive(
        chat_created("B"),
        audio("B", 1111, 10),
        ev.ConversationChatCanceled(data=ev.CanceledData(code=1, msg="x")).to_frame(),
        chat_created("C"),
        audio("C", 2222, 100),
    )
    assert [f.chat_id for f in rig.of(Flush)] == ["B"]
    assert [p.chat_id for p in rig.of(Play)] == ["B", "C"]
    assert rig.of(TurnEnded)[0].turn.interrupted


def test_server_speech_cancels_the_tools_of_a_chat_that_is_not_playing() -> None:
    rig = Rig()
    rig.connect()
    rig.receive(chat_created(TOOL_CHAT.id), ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert [s.chat_id for s in rig.of(StartTools)] == [TOOL_CHAT.id]
    rig.receive(ev.InputAudioBufferSpeechStarted().to_frame())
    assert [c.chat_id for c in rig.of(CancelTools)] == [TOOL_CHAT.id]
    # Outputs arriving after the cancel are not submitted.
    out = rig.conv.tools_finished(
        TOOL_CHAT.id, [ToolOutput(tool_call_id="call_1", output="x")], rig.clock.step()
    )
    assert not out


def test_repeated_tool_call_ids_are_answered_once_each() -> None:
    rig = Rig()
    rig.connect()
    twice = TOOL_CHAT.model_copy(deep=True)
    calls = twice.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    calls.append(calls[0].model_copy())
    rig.receive(chat_created(TOOL_CHAT.id), ev.ConversationChatRequiresAction(data=twice).to_frame())
    started = rig.of(StartTools)[0]
    assert [c.id for c in started.calls] == ["call_1"]
    out = rig.conv.tools_finished(
        TOOL_CHAT.id, [ToolOutput(tool_call_id="call_1", output="17:45")], rig.clock.step()
    )
    assert len(out) == 1 and isinstance(out[0], SendControl)
    assert "submit_tool_outputs" in out[0].frame


def test_tracked_chats_are_bounded() -> None:
    rig = Rig()
    rig.connect()
    rig.receive(*[chat_created(f"chat-{i}") for i in range(MAX_TRACKED_CHATS * 3)])
    assert len(rig.of(TurnEnded)) >= MAX_TRACKED_CHATS * 2


def test_audio_of_a_chat_never_announced_is_not_played() -> None:
    rig = Rig()
    rig.connect()
    actions = rig.receive(audio("ghost", 1000, 100))
    assert not rig.of(Play, actions)
    assert [n for n in rig.of(Notice, actions) if n.kind is NoticeKind.OUT_OF_ORDER]


def test_chat_created_is_answered_with_chat_update_once() -> None:
    rig = Rig()
    actions = rig.receive(ev.ChatCreated().to_frame())
    updates = [a for a in rig.of(SendControl, actions) if '"chat.update"' in a.frame]
    assert len(updates) == 1 and updates[0].first
    rig.receive(ev.ChatUpdated(data=SessionConfig()).to_frame())
    again = rig.receive(ev.ChatCreated().to_frame())
    assert not rig.of(SendControl, again)
    assert rig.session.ready


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [(4100, EXIT_NOPERM), (4101, EXIT_NOPERM), (4027, EXIT_UNAVAILABLE), (4028, EXIT_UNAVAILABLE)],
)
def test_permanent_server_errors_stop_with_their_exit_code(code: int, exit_code: int) -> None:
    rig = Rig()
    rig.connect()
    stops = rig.of(Stop, rig.receive(ev.Error(data=ErrorData(code=code, msg="no")).to_frame()))
    assert len(stops) == 1 and stops[0].error.exit_code == exit_code


def test_only_an_invalid_parameter_answering_chat_update_is_a_config_error() -> None:
    rig = Rig()
    rig.receive(ev.ChatCreated().to_frame())
    stops = rig.of(Stop, rig.receive(ev.Error(data=ErrorData(code=4000, msg="invalid voice_id")).to_frame()))
    assert len(stops) == 1 and stops[0].error.exit_code == EXIT_CONFIG
    assert "[session]" in str(stops[0].error)


@pytest.mark.parametrize("code", [5000, 4013, 4200])
def test_other_errors_before_chat_updated_reconnect(code: int) -> None:
    rig = Rig()
    actions = rig.receive(
        ev.ChatCreated().to_frame(), ev.Error(data=ErrorData(code=code, msg="busy")).to_frame()
    )
    assert not rig.of(Stop, actions)
    reconnects = rig.of(Reconnect, actions)
    assert len(reconnects) == 1
    assert (reconnects[0].retry_after_s or 0) > 0 if code == 4013 else reconnects[0].retry_after_s is None


def test_a_turn_never_answered_is_reported_and_given_up() -> None:
    rig = Rig()
    rig.connect()
    rig.mic(utterance_frames() + [SILENCE] * 50)
    assert rig.state() is TurnState.AWAITING_REPLY
    rig.tick(rig.config.listen.unanswered_timeout_s + 1)
    assert [n for n in rig.of(Notice) if n.kind is NoticeKind.UNANSWERED]
    assert rig.state() is TurnState.IDLE and rig.conv.counters.unanswered_turns == 1


def test_losing_the_connection_abandons_the_turn_and_the_tools() -> None:
    rig = Rig()
    rig.connect()
    rig.mic(utterance_frames()[:30])
    rig.receive(chat_created(TOOL_CHAT.id), ev.ConversationChatRequiresAction(data=TOOL_CHAT).to_frame())
    assert rig.state() is TurnState.USER_TURN
    actions = rig.run(rig.conv.connection_lost(rig.clock.step()))
    assert [c.chat_id for c in rig.of(CancelTools, actions)] == [TOOL_CHAT.id]
    assert rig.state() is TurnState.IDLE
    # The next connection configures again before any audio.
    assert not rig.session.ready
    assert list(itertools.islice(rig.of(SendControl, rig.receive(ev.ChatCreated().to_frame())), 1))


def test_every_notice_kind_is_its_own() -> None:
    # Enum members with equal values are aliases: the limiter would share one budget between them.
    assert len({kind.value for kind in NoticeKind}) == len(list(NoticeKind))


def test_an_echo_canceller_that_cannot_vouch_for_a_frame_falls_back_to_half_duplex() -> None:
    # audio.echo.mode = webrtc, but no stage marks frames echo-free (converging, stalled, too slow):
    # the device's own voice, loud in the mic, must not interrupt it.
    rig = Rig(**{"audio.echo.mode": "webrtc"})  # the rig builds no echo stage: nothing vouches
    rig.connect()
    rig.receive(chat_created("A"), audio("A", 1000, 200))
    rig.playback = Playback(active=True, level_dbfs=-60.0, chat_id="A")
    rig.mic(utterance_frames())
    assert not rig.of(Flush) and rig.state() is TurnState.SPEAKING


def test_an_unvouched_echo_tail_after_the_reply_does_not_barge_in_on_the_next() -> None:
    # The device stopped playing, but its echo is still in the room (output latency, reverberation)
    # and the canceller cannot vouch for it: the next reply must not be interrupted by it.
    rig = Rig(**{"audio.echo.mode": "webrtc"})
    rig.connect()
    rig.receive(chat_created("A"), audio("A", 1000, 200))
    rig.playback = Playback(active=True, level_dbfs=-60.0, chat_id="A")
    rig.mic([SILENCE] * 5)
    rig.receive(chat_completed("A"), chat_created("B"))
    rig.playback = Playback()  # A has played out; B's audio has not started
    frames = utterance_frames()
    speech_start = next(i for i, f in enumerate(frames) if np.abs(np.frombuffer(f, np.int16)).max() > 2000)
    rig.mic(frames[speech_start : speech_start + 20])  # loud "echo" within half a second
    assert not rig.of(Flush)


def test_the_microphone_is_idle_only_while_nothing_waits_for_its_next_frame() -> None:
    rig = Rig()
    rig.connect()
    rig.mic([SILENCE] * 5)
    assert rig.conv.mic_idle  # listening, no turn
    idle_after: list[bool] = []
    for pcm in utterance_frames()[:60]:
        rig.mic([pcm])
        idle_after.append(rig.conv.mic_idle)
    assert rig.state() is TurnState.USER_TURN and not idle_after[-1]  # a turn is open
    rig.mic([SILENCE] * 50)
    assert rig.state() is TurnState.AWAITING_REPLY and not rig.conv.mic_idle
    rig.receive(chat_created("A"), audio("A", 1000, 200), chat_completed("A"))
    rig.tick()
    assert rig.state() is TurnState.IDLE and rig.conv.mic_idle  # the reply played out

    ptt = Rig(**{"listen.mode": "push_to_talk"})
    ptt.connect()
    assert ptt.conv.mic_idle  # asleep, waiting for the button
    ptt.run(ptt.conv.press(ptt.playback, ptt.clock.step()))
    assert not ptt.conv.mic_idle

    streaming = Rig(**{"session.turn_detection": "server_vad"})
    streaming.connect()
    streaming.mic([SILENCE] * 5)
    assert streaming.of(SendAudio) and not streaming.conv.mic_idle  # every frame streams as it comes

    asleep = Rig(**{"listen.mode": "wake_word", "session.turn_detection": "server_vad"})
    assert asleep.conv.mic_idle  # nothing streams before the wake word
