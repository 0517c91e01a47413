"""``voiced kiosk``: the Chromium command line that shows the kiosk page full screen on a Pi.

Chromium is a separate program the user starts (from the desktop session's autostart): this module
only builds its command line, so it can be printed, tested and pasted into an autostart file.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from voiced.config import find_config_file, load_config
from voiced.control.settings import ControlSettings
from voiced.errors import VoicedError

#: Flags that make Chromium a kiosk: full screen, no crash bubble, no first-run, no translate bar.
KIOSK_FLAGS = (
    "--kiosk",
    "--noerrdialogs",
    "--disable-infobars",
    "--no-first-run",
    "--disable-translate",
    "--disable-features=Translate",
    "--disable-pinch",
    "--overscroll-history-navigation=0",
    "--check-for-update-interval=31536000",
)


def kiosk_url(settings: ControlSettings) -> str:
    """The page's address as a browser on the same machine reaches it."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/"


def kiosk_command(settings: ControlSettings, browser: str | None = None) -> list[str]:
    """The command that opens the page in kiosk mode; ``browser`` defaults to the installed Chromium."""
    if browser is None:
        browser = next((b for b in ("chromium", "chromium-browser") if shutil.which(b)), "chromium")
    return [browser, *KIOSK_FLAGS, kiosk_url(settings)]


def main(argv: list[str] | None = None) -> int:
    """Print the kiosk command for the configured ``[control]`` (exit 2 when there is no page)."""
    parser = argparse.ArgumentParser(
        prog="python -m voiced.control.kiosk",
        description="Print the Chromium command that shows voiced's kiosk page full screen.",
    )
    parser.add_argument("-c", "--config", type=Path, help="config file (default: as voiced run finds it)")
    parser.add_argument("--browser", help="the browser binary (default: chromium)")
    args = parser.parse_args(argv)
    try:
        settings = load_config(find_config_file(args.config)).control
    except VoicedError as exc:
        print(f"voiced kiosk: {exc}", file=sys.stderr)
        return exc.exit_code
    if not settings.enabled or settings.unix_socket is not None:
        print(
            "voiced kiosk: the page needs control.enabled = true and control.host/port, not a unix socket",
            file=sys.stderr,
        )
        return 2
    print(shlex.join(kiosk_command(settings, args.browser)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
