"""``voiced config show``: every setting, the value in effect, and where that value came from.

Sources, in increasing precedence: ``default``, ``file`` (the config file), ``env`` (a
``VOICED_SECTION__KEY`` variable), ``--set``. The token is never printed, only where it came from.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voiced.config import VoicedConfig, env_overrides

REDACTED = "(set, hidden)"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; free-form tables (session.extra, plugins.tools) stay whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and dotted not in ("session.extra", "plugins.tools"):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _file_keys(path: Path | None) -> set[str]:
    if path is None:
        return set()
    try:
        return set(flatten(tomllib.loads(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()


def _covers(keys: set[str], dotted: str) -> bool:
    return dotted in keys or any(k.startswith(dotted + ".") for k in keys)


def config_sources(
    config: VoicedConfig,
    path: Path | None,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, str, str]]:
    """``(key, value as TOML-ish text, source)`` for every setting, the token redacted."""
    environ = os.environ if environ is None else environ
    in_file = _file_keys(path)
    in_env = set(flatten(env_overrides(environ)))
    in_set = set(overrides)
    rows = []
    for key, value in flatten(config.model_dump(mode="json")).items():
        if _covers(in_set, key):
            source = "--set"
        elif _covers(in_env, key):
            source = "env VOICED_" + key.upper().replace(".", "__")
        elif _covers(in_file, key):
            source = f"file {path}"
        else:
            source = "default"
        if key == "coze.token":
            from voiced.agent.check import token_source  # noqa: PLC0415

            where = token_source(config, environ)
            text = REDACTED if where else "(none)"
            source = where or "-"
        else:
            text = json.dumps(value, ensure_ascii=False) if value is not None else "(unset)"
        rows.append((key, text, source))
    return rows


def render_config_sources(
    config: VoicedConfig,
    path: Path | None,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> str:
    """The rows of :func:`config_sources` as aligned ``key = value   # source`` lines."""
    rows = config_sources(config, path, overrides, environ)
    key_w = max(len(k) for k, _, _ in rows)
    value_w = min(40, max(len(v) for _, v, _ in rows))
    lines = [f"# config file: {path or 'none (defaults only)'}"]
    lines += [f"{k.ljust(key_w)} = {v.ljust(value_w)}  # {s}" for k, v, s in rows]
    return "\n".join(lines)
