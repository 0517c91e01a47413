"""The one error tree of voiced, and its exit codes (sysexits.h, so that systemd can tell them apart).

    VoicedError            a problem a user can meet: one line that says what to do, an exit code
      FatalError           retrying cannot help: the process ends with ``exit_code``
        ConfigError        the configuration is invalid (78); raised by ``voiced.config``
      TransientError       a reconnect (or a reopen) may fix it: the daemon retries with backoff

Device errors (``voiced.devices.base.DeviceError``) are VoicedErrors too: a lost or missing device is
waited for; one that can never work ends the process with ``EXIT_DEVICE``.

Exit codes are defined here and nowhere else; ``systemd/voiced.service`` lists the permanent ones in
``RestartPreventExitStatus=`` so that a dead token is not retried forever. Code that runs tasks in
task groups must not re-raise inside ``except*`` (Python < 3.11.4 wraps the error in a group again):
let groups travel to the top, where :func:`unwrap` finds the error that decides the exit.
"""

from __future__ import annotations

from voiced.protocol.errors import PERMANENT_SERVER_CODES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The server refused the service for good: out of credit or arrears (4027/4028).
EXIT_UNAVAILABLE = 69
#: An audio device that can never work as configured (no PortAudio, no usable rate).
EXIT_DEVICE = 74
#: The token is missing, invalid, or lacks access to the bot (HTTP 401/403, 4100/4101).
EXIT_NOPERM = 77
#: The configuration is invalid.
EXIT_CONFIG = 78
#: Ended by SIGINT (128 + 2), as shells report it.
EXIT_INTERRUPTED = 130

#: Exit codes after which a restart cannot help (the unit's RestartPreventExitStatus=).
PERMANENT_EXIT_CODES = (EXIT_UNAVAILABLE, EXIT_NOPERM, EXIT_CONFIG)


class VoicedError(Exception):
    """A problem a user can meet. ``str(error)`` is one line that says what to do."""

    exit_code: int = EXIT_FAILURE


class FatalError(VoicedError):
    """Stop: retrying cannot help. ``exit_code`` is what the process returns."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(FatalError):
    """The configuration is invalid; the message names the file and the key."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_CONFIG)


class TransientError(VoicedError):
    """The connection failed in a way that a reconnect may fix.

    ``retry_after_s`` is the server's own hint (HTTP ``Retry-After``, a rate limit), if it gave one.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def server_code_error(code: int, msg: str, logid: str | None) -> FatalError | None:
    """The FatalError for a Coze error or close code after which retrying cannot help, else None."""
    known = PERMANENT_SERVER_CODES.get(code)
    if known is None:
        return None
    exit_code = EXIT_NOPERM if known.kind == "auth" else EXIT_UNAVAILABLE
    where = f" (logid {logid})" if logid else ""
    return FatalError(f"Coze error {code} ({msg}): {known.advice}{where}", exit_code)


def close_code_error(code: int | None, reason: str) -> FatalError | None:
    """The FatalError for a WebSocket close code after which reconnecting cannot help, else None.

    Coze may end a connection with 4100/4101 (token) or 4027/4028 (billing) as the close code, with
    no ``error`` event before it. Call this once the connection has closed, with its close code and
    reason; raise the result if it is not None, otherwise reconnect as usual.
    """
    if code is None:
        return None
    shown = reason[:_REASON_CHARS] + ("…" if len(reason) > _REASON_CHARS else "")
    return server_code_error(code, shown or "connection closed", None)


_REASON_CHARS = 120


def unwrap(error: BaseException) -> BaseException:
    """The error that decides the exit, out of any nesting of exception groups.

    A :class:`FatalError` anywhere in the tree wins over everything else, then any
    :class:`VoicedError`, then the first leaf. Call it once, where the process decides its exit code.
    """
    leaves = list(_leaves(error))
    for wanted in (FatalError, VoicedError):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0] if leaves else error


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in error.exceptions:
            found.extend(_leaves(inner))
        return found
    return [error]
