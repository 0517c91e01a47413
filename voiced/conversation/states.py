"""The conversation's turn states and every legal move between them, in one table (h11's manner).

Who has the floor decides what the microphone's audio means: nothing leaves the device while it
sleeps; speech opens a turn while it listens; a button press takes every frame; a reply can be
interrupted while it plays, unless the microphone is gated (half duplex).
"""

from __future__ import annotations

import enum


class TurnState(enum.Enum):
    #: Waiting for a wake word or a button (wake_word / push_to_talk modes): no audio is sent.
    SLEEPING = "sleeping"
    #: Listening for speech (always mode, or after a wake, or in the follow-up window).
    IDLE = "idle"
    #: The user speaks; the turn detector's audio is streamed.
    USER_TURN = "user_turn"
    #: A button is held: every frame is the user's.
    PUSH_TO_TALK = "push_to_talk"
    #: The turn ended; the bot has not answered yet.
    AWAITING_REPLY = "awaiting_reply"
    #: Reply audio is arriving or playing; speech over it interrupts it.
    SPEAKING = "speaking"
    #: Reply audio is playing and the microphone is deaf (half duplex, or barge-in off).
    GATED = "gated"


class Trigger(enum.Enum):
    WAKE = "wake word"
    SPEECH_STARTED = "speech started"
    SPEECH_ENDED = "speech ended"
    PRESS = "button pressed"
    RELEASE = "button released"
    #: A release after a press that captured nothing: there is no turn to end.
    RELEASE_EMPTY = "button released with no audio"
    REPLY_AUDIO = "reply audio"
    REPLY_AUDIO_GATED = "reply audio, microphone gated"
    REPLY_PLAYED = "reply played out"
    NO_REPLY = "no reply to the turn"
    INTERRUPTED = "reply interrupted"
    LISTEN_TIMEOUT = "listening window over"
    CONNECTION_LOST = "connection lost"


class Target(enum.Enum):
    """Targets that depend on the listening mode, resolved by :func:`resolve`."""

    #: SLEEPING in wake_word and push_to_talk modes, IDLE in always mode.
    REST = "rest"
    #: After a reply: IDLE with a follow-up window in wake_word mode (SLEEPING if the window is 0),
    #: SLEEPING in push_to_talk mode, IDLE in always mode.
    FOLLOW_UP = "follow_up"


T = TurnState
G = Trigger
#: Every legal move. A (state, trigger) pair that is not here is illegal: reported, never acted on.
TRANSITIONS: dict[tuple[TurnState, Trigger], TurnState | Target] = {
    # Asleep: only a wake word or a button opens a turn; the bot may still speak (a prologue,
    # an announcement, a reply to a typed message).
    (T.SLEEPING, G.WAKE): T.IDLE,
    (T.SLEEPING, G.PRESS): T.PUSH_TO_TALK,
    (T.SLEEPING, G.REPLY_AUDIO): T.SPEAKING,
    (T.SLEEPING, G.REPLY_AUDIO_GATED): T.GATED,
    (T.SLEEPING, G.NO_REPLY): T.SLEEPING,
    (T.SLEEPING, G.INTERRUPTED): T.SLEEPING,
    (T.SLEEPING, G.REPLY_PLAYED): T.SLEEPING,
    (T.SLEEPING, G.CONNECTION_LOST): T.SLEEPING,
    # Listening.
    (T.IDLE, G.SPEECH_STARTED): T.USER_TURN,
    (T.IDLE, G.PRESS): T.PUSH_TO_TALK,
    (T.IDLE, G.WAKE): T.IDLE,
    (T.IDLE, G.REPLY_AUDIO): T.SPEAKING,
    (T.IDLE, G.REPLY_AUDIO_GATED): T.GATED,
    (T.IDLE, G.NO_REPLY): T.IDLE,
    (T.IDLE, G.INTERRUPTED): T.IDLE,
    (T.IDLE, G.REPLY_PLAYED): T.IDLE,
    (T.IDLE, G.LISTEN_TIMEOUT): T.SLEEPING,
    (T.IDLE, G.CONNECTION_LOST): Target.REST,
    # The user speaks: an earlier reply's end changes nothing.
    (T.USER_TURN, G.SPEECH_ENDED): T.AWAITING_REPLY,
    (T.USER_TURN, G.PRESS): T.PUSH_TO_TALK,
    (T.USER_TURN, G.WAKE): T.USER_TURN,
    (T.USER_TURN, G.REPLY_AUDIO): T.USER_TURN,
    (T.USER_TURN, G.REPLY_AUDIO_GATED): T.USER_TURN,
    (T.USER_TURN, G.NO_REPLY): T.USER_TURN,
    (T.USER_TURN, G.INTERRUPTED): T.USER_TURN,
    (T.USER_TURN, G.REPLY_PLAYED): T.USER_TURN,
    (T.USER_TURN, G.CONNECTION_LOST): Target.REST,
    # A held button.
    (T.PUSH_TO_TALK, G.RELEASE): T.AWAITING_REPLY,
    (T.PUSH_TO_TALK, G.RELEASE_EMPTY): Target.REST,
    (T.PUSH_TO_TALK, G.PRESS): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.WAKE): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.REPLY_AUDIO): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.REPLY_AUDIO_GATED): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.NO_REPLY): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.INTERRUPTED): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.REPLY_PLAYED): T.PUSH_TO_TALK,
    (T.PUSH_TO_TALK, G.CONNECTION_LOST): Target.REST,
    # Thinking.
    (T.AWAITING_REPLY, G.REPLY_AUDIO): T.SPEAKING,
    (T.AWAITING_REPLY, G.REPLY_AUDIO_GATED): T.GATED,
    (T.AWAITING_REPLY, G.NO_REPLY): Target.FOLLOW_UP,
    (T.AWAITING_REPLY, G.INTERRUPTED): Target.FOLLOW_UP,
    (T.AWAITING_REPLY, G.SPEECH_STARTED): T.USER_TURN,
    (T.AWAITING_REPLY, G.PRESS): T.PUSH_TO_TALK,
    (T.AWAITING_REPLY, G.WAKE): T.AWAITING_REPLY,
    (T.AWAITING_REPLY, G.REPLY_PLAYED): T.AWAITING_REPLY,
    (T.AWAITING_REPLY, G.CONNECTION_LOST): Target.REST,
    # Talking, and listening for the user over it.
    (T.SPEAKING, G.REPLY_PLAYED): Target.FOLLOW_UP,
    (T.SPEAKING, G.SPEECH_STARTED): T.USER_TURN,
    (T.SPEAKING, G.WAKE): T.IDLE,
    (T.SPEAKING, G.PRESS): T.PUSH_TO_TALK,
    (T.SPEAKING, G.INTERRUPTED): Target.FOLLOW_UP,
    (T.SPEAKING, G.REPLY_AUDIO): T.SPEAKING,
    (T.SPEAKING, G.REPLY_AUDIO_GATED): T.SPEAKING,
    (T.SPEAKING, G.NO_REPLY): T.SPEAKING,
    # What already arrived plays out; REPLY_PLAYED follows.
    (T.SPEAKING, G.CONNECTION_LOST): T.SPEAKING,
    # Talking with the microphone deaf: only a button interrupts.
    (T.GATED, G.REPLY_PLAYED): Target.FOLLOW_UP,
    (T.GATED, G.PRESS): T.PUSH_TO_TALK,
    (T.GATED, G.INTERRUPTED): Target.FOLLOW_UP,
    (T.GATED, G.REPLY_AUDIO): T.GATED,
    (T.GATED, G.REPLY_AUDIO_GATED): T.GATED,
    (T.GATED, G.NO_REPLY): T.GATED,
    (T.GATED, G.CONNECTION_LOST): T.GATED,
}

#: States in which the turn detector hears the microphone.
DETECTING = frozenset({T.IDLE, T.USER_TURN, T.AWAITING_REPLY, T.SPEAKING})
#: States in which a reply is being heard.
REPLYING = frozenset({T.SPEAKING, T.GATED})


def resolve(target: TurnState | Target, mode: str, follow_up_s: float) -> TurnState:
    """The state ``target`` means in listening ``mode`` (always, wake_word, push_to_talk)."""
    if isinstance(target, TurnState):
        return target
    if mode == "always":
        return T.IDLE
    if mode == "push_to_talk":
        return T.SLEEPING
    if target is Target.FOLLOW_UP and follow_up_s > 0:
        return T.IDLE
    return T.SLEEPING
