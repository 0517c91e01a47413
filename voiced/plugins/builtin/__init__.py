"""The built-in tools: current time, voiced's playback volume, device status.

Registered through the ``builtin`` entry point in voiced's own pyproject.toml. None of them changes
anything outside voiced: the volume is voiced's own playback gain, never the system mixer.
"""

from voiced.plugins.builtin.clock import current_time
from voiced.plugins.builtin.status import device_status
from voiced.plugins.builtin.volume import get_volume, set_volume

VOICED_TOOLS = [current_time, get_volume, set_volume, device_status]

__all__ = ["VOICED_TOOLS", "current_time", "device_status", "get_volume", "set_volume"]
