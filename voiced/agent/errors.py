"""The daemon's small error tree and its exit codes (sysexits.h, so systemd can tell them apart).

Retryable conditions (a dropped socket, a refused connection) never leave the daemon: it reconnects.
A :class:`FatalError` ends it with a distinct exit code; ``systemd/voiced.service`` lists those codes
in ``RestartPreventExitStatus=`` so that a wrong token is not retried forever.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The server refused the service for good: out of credit or arrears (4027/4028).
EXIT_UNAVAILABLE = 69
#: The token is missing, invalid, or lacks access to the bot (HTTP 401/403, 4100/4101).
EXIT_NOPERM = 77
#: The configuration is invalid.
EXIT_CONFIG = 78

#: Server error codes after which retrying cannot help (protocol.md §5).
FATAL_SERVER_CODES: dict[int, tuple[int, str]] = {
    4100: (EXIT_NOPERM, "the Coze token is invalid or expired: create a new one and update coze.token_file"),
    4101: (
        EXIT_NOPERM,
        "the token has no access to this bot (or a .cn token is used on .com): "
        "check coze.bot_id and coze.base_url",
    ),
    4027: (EXIT_UNAVAILABLE, "the Coze account is in arrears: top it up, then restart voiced"),
    4028: (EXIT_UNAVAILABLE, "the Coze account is out of credits: top it up, then restart voiced"),
}


class FatalError(Exception):
    """Stop the daemon: retrying cannot help. ``exit_code`` is what the process returns."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TransientError(Exception):
    """The connection failed in a way that a reconnect may fix."""


def first_fatal(group: BaseExceptionGroup[BaseException]) -> FatalError | None:
    """The first :class:`FatalError` inside ``group`` (task groups nest them), or None."""
    for exc in group.exceptions:
        if isinstance(exc, FatalError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = first_fatal(exc)
            if found is not None:
                return found
    return None
