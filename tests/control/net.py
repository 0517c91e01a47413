"""This machine's network address, for tests of clients that are not on loopback."""

from __future__ import annotations

import socket

import pytest


def lan_address() -> str:
    """This machine's address on its network (a peer that is not loopback), or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.254", 9))  # no packet is sent: this only picks a route
            address = str(probe.getsockname()[0])
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("no network interface besides loopback")
    return address
