"""``[control]`` and ``[hooks]``: the local control API and the commands run on events.

Both are validated when the configuration loads, so a control API that would listen on the network
without a token never starts: the message says which key to set.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ControlSettings(_Section):
    """``[control]``: one WebSocket endpoint, the kiosk page, ``/metrics`` and ``/schema.json``."""

    enabled: bool = Field(True, description="Serve the control API, the kiosk page and the metrics.")
    host: str = Field("127.0.0.1", description="Loopback by default; anything else needs a token.")
    port: int = Field(8791, ge=0, le=65535, description="0 picks a free port (tests).")
    unix_socket: Path | None = Field(None, description="Listen on this unix socket instead of host:port.")
    unix_socket_mode: int = Field(0o660, ge=0, le=0o777, description="Who may connect to the socket.")
    token: SecretStr | None = Field(
        None, description="Required from clients that are not on this machine; prefer token_file."
    )
    token_file: Path | None = None
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (besides IP addresses and localhost) the page may be reached by.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Extra browser origins allowed to connect, e.g. http://panel:8080."
    )
    client_queue_events: int = Field(
        256, ge=8, le=65536, description="Events queued for a slow client before it is dropped."
    )
    max_clients: int = Field(16, ge=1, le=1024)
    max_message_bytes: int = Field(16 * 1024, ge=1024, le=1 << 20)
    command_timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _network_needs_token(self) -> ControlSettings:
        beyond_this_machine = self.unix_socket is None and not is_loopback_host(self.host)
        if self.enabled and beyond_this_machine and self.token is None and self.token_file is None:
            raise ValueError(
                f"control.host = {self.host!r} listens beyond this machine: set control.token_file "
                '(or control.token) first, or keep control.host = "127.0.0.1"'
            )
        return self

    def resolved_token(self) -> str | None:
        """The token from ``token`` or ``token_file``, stripped; None when neither is set.

        Raises :class:`OSError` when the file cannot be read; the caller turns it into a ConfigError.
        """
        if self.token is not None and self.token.get_secret_value().strip():
            return self.token.get_secret_value().strip()
        if self.token_file is not None:
            text = self.token_file.read_text(encoding="utf-8").strip()
            return text or None
        return None


class HooksSettings(_Section):
    """``[hooks]``: shell commands run when the device changes state. Empty: nothing runs.

    Each command runs through ``/bin/sh -c`` with the event in ``VOICED_EVENT`` (JSON),
    ``VOICED_EVENT_TYPE``, ``VOICED_STATE`` and ``VOICED_HINT``; never more than one at a time per
    hook (a newer event waits and replaces an older waiting one).
    """

    on_idle: str | None = Field(None, description="Waiting for the wake word or a button (sleeping).")
    on_wake: str | None = None
    on_listening: str | None = None
    on_thinking: str | None = None
    on_speaking: str | None = None
    on_muted: str | None = None
    on_offline: str | None = Field(None, description="Not connected: reconnecting or offline.")
    on_error: str | None = None
    on_turn: str | None = Field(None, description="After each turn, with its latency figures.")
    on_tool: str | None = Field(None, description="When a tool call starts and when it ends.")
    on_device: str | None = Field(None, description="An audio device was lost or found again.")
    on_connection: str | None = Field(None, description="The connection to the server went up or down.")
    timeout_s: float = Field(5.0, gt=0, le=3600, description="A hook still running then is killed.")
    kill_grace_s: float = Field(1.0, ge=0, le=60, description="SIGTERM first, SIGKILL this much later.")
    max_output_bytes: int = Field(
        2048, ge=0, le=1 << 20, description="Output logged per run; the rest dropped."
    )
    pass_env: list[str] = Field(
        default_factory=list,
        description="Extra environment variables handed to hooks (PATH, HOME, LANG, TZ always are).",
    )
