"""The local plugin host: tools the Coze bot can call on the device (protocol.md §4.3).

Write a tool with :func:`tool`, enable it in ``[plugins] enabled``, load the tools with
:meth:`PluginRegistry.load`, and answer each ``conversation.chat.requires_action`` with
``await ToolRunner(...).run(chat_id, tool_calls)`` submitted in one ``submit_tool_outputs``.
"""

from voiced.plugins.api import ToolSpec, tool, tool_spec
from voiced.plugins.context import PluginContext, ToolError, VolumeControl
from voiced.plugins.registry import ENTRY_POINT_GROUP, PluginLoadError, PluginRegistry, ToolInfo
from voiced.plugins.runner import CallResult, ContextFactory, ToolRunner, make_context_factory
from voiced.plugins.schema import ArgumentsError
from voiced.plugins.settings import PluginSettings, ToolOverride

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArgumentsError",
    "CallResult",
    "ContextFactory",
    "PluginContext",
    "PluginLoadError",
    "PluginRegistry",
    "PluginSettings",
    "ToolError",
    "ToolInfo",
    "ToolOverride",
    "ToolRunner",
    "ToolSpec",
    "VolumeControl",
    "make_context_factory",
    "tool",
    "tool_spec",
]
