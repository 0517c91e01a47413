"""The machine's own time zone, as an IANA name: the default of ``[plugins] timezone``.

A speaker in Berlin must say Berlin's time without anyone configuring it, and under the service's
sandbox (``ProtectSystem=strict``) ``/etc`` is still readable, so the zone comes from the same places
the C library looks: ``$TZ``, the ``/etc/localtime`` symlink, then Debian's ``/etc/timezone``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FALLBACK_ZONE = "UTC"


def _valid(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def find_zone_name(etc: Path = Path("/etc"), environ: Mapping[str, str] | None = None) -> str | None:
    """The zone ``environ['TZ']``, ``etc/localtime`` or ``etc/timezone`` name, or None if none does."""
    environ = os.environ if environ is None else environ
    candidates: list[str] = []
    tz = environ.get("TZ", "").lstrip(":")
    if tz:
        candidates.append(tz)
    localtime = etc / "localtime"
    if localtime.is_symlink():
        target = os.readlink(localtime)
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError, UnicodeDecodeError):
        candidates.append((etc / "timezone").read_text(encoding="utf-8").strip())
    return next((name for name in candidates if name and _valid(name)), None)


@functools.cache
def system_zone_name() -> str:
    """The machine's zone (see :func:`find_zone_name`); UTC, with one warning, when it has none."""
    name = find_zone_name()
    if name is None:
        logging.getLogger("voiced.plugins").warning(
            "cannot tell this machine's time zone (no /etc/localtime link): using UTC; "
            'set plugins.timezone, e.g. "Europe/Berlin"'
        )
        return FALLBACK_ZONE
    return name
