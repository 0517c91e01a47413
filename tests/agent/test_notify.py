"""sd_notify: messages reach the socket, and a listener that stops reading never blocks the daemon."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from voiced.agent.notify import Notifier


def test_ready_status_and_watchdog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "n.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(1.0)
    notifier = Notifier(str(path))
    notifier.ready("listening")
    assert listener.recv(100) == b"READY=1\nSTATUS=listening"
    notifier.status("listening")  # unchanged: not sent again
    notifier.status("speaking")
    assert listener.recv(100) == b"STATUS=speaking"
    notifier.watchdog()  # no WatchdogSec: nothing sent
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notifier.watchdog_interval_s() == 1.0
    notifier.watchdog()
    assert listener.recv(100) == b"WATCHDOG=1"
    notifier.close()
    listener.close()


def test_a_listener_that_stops_reading_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    notifier = Notifier(str(path))
    for _ in range(10_000):  # far more than the socket buffer holds
        notifier.send("STATUS=" + "x" * 200)
    notifier.close()
    listener.close()


def test_disabled_outside_systemd() -> None:
    notifier = Notifier("")
    assert not notifier.enabled
    notifier.ready("x")
    notifier.stopping()
