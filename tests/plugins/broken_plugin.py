"""A third-party plugin module that fails at import, to prove the registry skips it."""

from __future__ import annotations

raise ImportError("this plugin needs libfoo, which is not installed")
