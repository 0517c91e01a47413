"""voiced — a realtime voice-agent daemon for edge devices speaking the Coze realtime chat protocol."""

__version__ = "0.1.0"
