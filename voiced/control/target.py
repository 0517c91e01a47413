"""What the control API needs from the daemon: :class:`ControlTarget`.

The daemon implements this protocol (structurally: no base class needed) and passes the object to
:func:`voiced.control.serve_control`. Commands are coroutines so an implementation may await what it
needs, but each should return promptly (the server gives up after ``control.command_timeout_s`` and
replies ``timeout``). A command that cannot be carried out raises :class:`CommandRejectedError` with one
line that says why and what to do; the client receives it as an error reply. Any other exception is
logged and answered with ``internal``: it never ends the server or the daemon.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from voiced.control.messages import DeviceList, StatusSnapshot

Direction = Literal["input", "output"]


class CommandRejectedError(Exception):
    """The target refuses a command; ``str(error)`` is the line the client sees."""


@runtime_checkable
class ControlTarget(Protocol):
    """The daemon as the control API sees it. All methods are called on the event loop."""

    def status(self) -> StatusSnapshot:
        """The current state; called on every new connection, so it must be cheap."""
        ...

    async def talk(self, pressed: bool) -> None:
        """Push-to-talk pressed (open a turn, interrupting a reply) or released (end the turn)."""
        ...

    async def interrupt(self) -> None:
        """Stop the reply that is playing (sends ``conversation.chat.cancel``)."""
        ...

    async def set_muted(self, muted: bool) -> None:
        """Mute the microphone (no appends are sent) or unmute it."""
        ...

    async def set_volume_pct(self, volume_pct: int) -> None:
        """Set the playback volume, 0..100."""
        ...

    async def send_text(self, text: str) -> None:
        """Send ``text`` as the user's message (``conversation.message.create``)."""
        ...

    async def announce(self, text: str) -> None:
        """Speak ``text`` without an LLM turn (``input_text.generate_audio``)."""
        ...

    async def list_devices(self) -> DeviceList:
        """The audio devices and the ones in use."""
        ...

    async def select_device(self, direction: Direction, spec: str) -> str:
        """Switch to the device ``spec`` names ("" for the default); returns its name."""
        ...

    async def reload(self) -> None:
        """Reload the configuration as SIGHUP does."""
        ...
