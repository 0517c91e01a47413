"""Keep PortAudio's start-up from loading ALSA plugin modules no voice device opens.

`Pa_Initialize` opens every PCM the ALSA configuration defines, to see what it can do; each opened
plugin maps its module and libraries (the a52 encoder maps libavcodec: about 15 MB resident). The
plugin definitions come from the system's ``conf.d`` directories, which alsa.conf's load hook reads.
`reduced_probing()` points ALSA, for the duration of the PortAudio start-up only, at alsa.conf plus
an overlay that hands that hook the same files minus the device plugins of libasound2-plugins listed
in `SKIPPED_CONF_FILES` (encoders, effects, other sound servers); `default`, `pulse`, `pipewire`,
the cards and the user's own files (/etc/asound.conf, ~/.asoundrc) stay. Afterwards ALSA reads its
normal configuration again at the next stream open, so nothing else in the process (or its children)
sees the change.

It applies only when the system's alsa.conf has the hook this module knows (alsa-lib 1.2 as in
Debian 12 and Raspberry Pi OS), when ``ALSA_CONFIG_PATH`` is not set already, and when
``VOICED_ALSA_ALL_PLUGINS`` is not set to 1 (for a device that does play through one of those).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

SYSTEM_CONFIG = Path("/usr/share/alsa/alsa.conf")
CONF_DIRS = ("/var/lib/alsa/conf.d", "/usr/etc/alsa/conf.d", "/etc/alsa/conf.d")
#: libasound2-plugins' device plugins (not the rate converters, not pulse): nothing voiced opens.
SKIPPED_CONF_FILES = frozenset(
    {
        "60-a52-encoder.conf",
        "50-jack.conf",
        "50-oss.conf",
        "60-speex.conf",
        "60-upmix.conf",
        "60-vdownmix.conf",
        "98-usb-stream.conf",
        "50-arcam-av-ctl.conf",
    }
)
OPT_OUT_ENV = "VOICED_ALSA_ALL_PLUGINS"

# The entries alsa.conf's load hook lists after the conf.d directories; the overlay repeats them.
_USER_FILES = """\t\t"/etc/asound.conf|||/usr/etc/asound.conf"
\t\t"~/.asoundrc"
\t\t{
\t\t\t@func concat
\t\t\tstrings [
\t\t\t\t{ @func getenv vars [ XDG_CONFIG_HOME ] default "~/.config" }
\t\t\t\t"/alsa/asoundrc"
\t\t\t]
\t\t}"""
# The hook as alsa-lib 1.2 ships it, whitespace-insensitive: anything else and the overlay stays off.
_KNOWN_HOOK = re.compile(
    r"@hooks\s*\[\s*\{\s*func\s+load\s+files\s*\[\s*"
    + r"\s*".join(re.escape(f'"{d}"') for d in CONF_DIRS)
    + r'\s*"/etc/asound\.conf\|\|\|/usr/etc/asound\.conf"\s*"~/\.asoundrc"\s*\{\s*@func\s+concat\s+'
    r"strings\s*\[\s*\{\s*@func\s+getenv\s+vars\s*\[\s*XDG_CONFIG_HOME\s*\]\s*"
    r'default\s+"~/\.config"\s*\}\s*"/alsa/asoundrc"\s*\]\s*\}\s*\]\s*errors\s+false\s*\}\s*\]'
)


def overlay_text(system_config: Path = SYSTEM_CONFIG) -> str | None:
    """The overlay for this system, or None when it must not be used (unknown alsa.conf, opted out,
    ALSA_CONFIG_PATH already chosen, or no skipped plugin installed)."""
    if os.environ.get(OPT_OUT_ENV) == "1" or "ALSA_CONFIG_PATH" in os.environ:
        return None
    try:
        if not _KNOWN_HOOK.search(system_config.read_text(errors="replace")):
            return None
    except OSError:
        return None
    kept: list[str] = []
    skipped = False
    for directory in CONF_DIRS:
        with contextlib.suppress(OSError):
            for entry in sorted(Path(directory).iterdir()):
                if not entry.name.endswith(".conf"):
                    continue
                if entry.name in SKIPPED_CONF_FILES:
                    skipped = True
                elif '"' not in str(entry):
                    kept.append(str(entry))
    if not skipped:
        return None
    files = "".join(f'\t\t"{path}"\n' for path in kept)
    return f"@hooks.0 {{\n\t!files [\n{files}{_USER_FILES}\n\t]\n}}\n"


@contextlib.contextmanager
def reduced_probing(system_config: Path = SYSTEM_CONFIG) -> Iterator[bool]:
    """Around PortAudio's start-up (import of sounddevice, or a re-scan): ALSA without the skipped
    plugins. Yields whether the overlay is in force; the environment is restored on exit."""
    text = overlay_text(system_config)
    if text is None:
        yield False
        return
    directory = Path(tempfile.mkdtemp(prefix="voiced-alsa-"))
    overlay = directory / "overlay.conf"
    overlay.write_text(text)
    os.environ["ALSA_CONFIG_PATH"] = f"{system_config}:{overlay}"
    try:
        yield True
    finally:
        os.environ.pop("ALSA_CONFIG_PATH", None)
        shutil.rmtree(directory, ignore_errors=True)
