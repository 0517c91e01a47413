"""A plugin module that defines no tools: the registry must say so, not crash."""

from __future__ import annotations

VALUE = 1
