"""Coze error codes whose meaning is known (protocol.md §5), with what a user must do about them.

No I/O and no exit codes: :mod:`voiced.errors` decides what the process does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: ``auth``: the token cannot open this bot; ``billing``: the account cannot pay for the service.
PermanentKind = Literal["auth", "billing"]


@dataclass(frozen=True, slots=True)
class PermanentServerError:
    """A server error after which retrying cannot help; ``advice`` says what the user must do."""

    kind: PermanentKind
    advice: str


#: Sent as an ``error`` event's ``data.code`` or as the WebSocket close code.
PERMANENT_SERVER_CODES: dict[int, PermanentServerError] = {
    4100: PermanentServerError(
        "auth", "the Coze token is invalid or expired: create a new one and update coze.token_file"
    ),
    4101: PermanentServerError(
        "auth",
        "the token has no access to this bot (or a .cn token is used on .com): "
        "check coze.bot_id and coze.base_url",
    ),
    4027: PermanentServerError("billing", "the Coze account is in arrears: top it up, then restart voiced"),
    4028: PermanentServerError(
        "billing", "the Coze account is out of credits: top it up, then restart voiced"
    ),
}

#: The server could not parse or apply a client frame (protocol.md §5): a bad ``chat.update`` field.
INVALID_PARAMETER_CODES = frozenset({4000})

#: Rate limited: back off harder before the next attempt.
RATE_LIMITED_CODE = 4013
