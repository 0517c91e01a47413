"""The local Coze-compatible realtime chat server: what voiced is developed, tested and demonstrated against.

Start it in-process with :func:`serve_emulator` (tests) or from the shell with ``voiced emulator``.
"""

from voiced.emulator.faults import FaultSettings
from voiced.emulator.scenarios import Scenario, ScenarioError, Turn, load_scenario
from voiced.emulator.server import Emulator, ReceivedFrame, serve_emulator
from voiced.emulator.settings import EmulatorSettings

__all__ = [
    "Emulator",
    "EmulatorSettings",
    "FaultSettings",
    "ReceivedFrame",
    "Scenario",
    "ScenarioError",
    "Turn",
    "load_scenario",
    "serve_emulator",
]
