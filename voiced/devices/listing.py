"""The data behind `voiced devices`: every input and output device, defaults marked, rates supported,
and the sinks and sources of a running PulseAudio or PipeWire server by name."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

from voiced.devices.portaudio import load_sounddevice, supports

#: `audio.devices.*` values starting with this name a sound-server sink or source.
SERVER_PREFIX = "pulse:"
_PACTL_TIMEOUT_S = 3.0

PROBE_RATES_HZ = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One PortAudio device. Rates are those PortAudio accepts for 16-bit mono (or stereo)."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_rate_hz: int
    is_default_input: bool
    is_default_output: bool
    input_rates_hz: tuple[int, ...]
    output_rates_hz: tuple[int, ...]


def list_devices(probe_rates_hz: tuple[int, ...] = PROBE_RATES_HZ) -> list[DeviceRow]:
    """All devices PortAudio knows. Raises PortAudioMissing when libportaudio2 is absent."""
    sd = load_sounddevice()
    apis = sd.query_hostapis()
    default_in, default_out = sd.default.device
    rows = []
    for index, dev in enumerate(sd.query_devices()):
        max_in = int(dev["max_input_channels"])
        max_out = int(dev["max_output_channels"])

        def rates(direction: str, max_ch: int, idx: int = index) -> tuple[int, ...]:
            if max_ch == 0:
                return ()
            ch = 1 if max_ch >= 1 else max_ch
            return tuple(
                r
                for r in probe_rates_hz
                if supports(idx, "input" if direction == "input" else "output", r, ch)
                or (max_ch >= 2 and supports(idx, "input" if direction == "input" else "output", r, 2))
            )

        rows.append(
            DeviceRow(
                index=index,
                name=str(dev["name"]),
                host_api=str(apis[dev["hostapi"]]["name"]),
                max_input_channels=max_in,
                max_output_channels=max_out,
                default_rate_hz=int(dev["default_samplerate"]),
                is_default_input=index == default_in,
                is_default_output=index == default_out,
                input_rates_hz=rates("input", max_in),
                output_rates_hz=rates("output", max_out),
            )
        )
    return rows


def _rates_text(rates: tuple[int, ...]) -> str:
    return ",".join(f"{r / 1000:g}k" for r in rates) if rates else "-"


def render_device_table(rows: list[DeviceRow]) -> str:
    """A plain-text table: `*` marks the default input (`>` in the In column) and output."""
    if not rows:
        return "no audio devices found (is a sound card or a sound server present?)"
    header = ("#", "name", "api", "in", "out", "default", "input rates", "output rates")
    body = []
    for r in rows:
        marks = (("input", r.is_default_input), ("output", r.is_default_output))
        defaults = "/".join(name for name, on in marks if on)
        body.append(
            (
                f"{'*' if defaults else ' '}{r.index}",
                r.name,
                r.host_api,
                str(r.max_input_channels),
                str(r.max_output_channels),
                defaults or "",
                _rates_text(r.input_rates_hz),
                _rates_text(r.output_rates_hz),
            )
        )
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *body)
    ]
    lines.append(
        "* = default device. Select with audio.devices.input_device / audio.devices.output_device "
        "(index or name part)."
    )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ServerDevice:
    """A sink (speaker) or source (microphone) of the PulseAudio/PipeWire server."""

    kind: Literal["sink", "source"]
    name: str
    description: str
    is_default: bool


def _pactl(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["pactl", *args], capture_output=True, text=True, timeout=_PACTL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def list_server_devices() -> list[ServerDevice]:
    """The server's sinks and sources (monitors left out); empty when no server runs or pactl is absent."""
    if shutil.which("pactl") is None:
        return []
    found: list[ServerDevice] = []
    for kind in ("sink", "source"):
        default = (_pactl(f"get-default-{kind}") or "").strip()
        text = _pactl("-f", "json", "list", f"{kind}s")
        entries: list[tuple[str, str]] = []
        try:
            entries = [(str(e["name"]), str(e.get("description") or "")) for e in json.loads(text or "")]
        except (ValueError, TypeError, KeyError):
            # pactl before 16 has no JSON: the short list has the names only.
            for line in (_pactl("list", "short", f"{kind}s") or "").splitlines():
                parts = line.split("\t")
                if len(parts) >= 2:
                    entries.append((parts[1], ""))
        for name, description in entries:
            if kind == "source" and name.endswith(".monitor"):
                continue  # what a sink plays, not a microphone
            found.append(ServerDevice(kind, name, description, name == default))
    return found


def find_server_device(spec: str, kind: Literal["sink", "source"]) -> ServerDevice | None:
    """The server device ``spec`` names: ``pulse:NAME`` exactly, else a name or description part."""
    devices = [d for d in list_server_devices() if d.kind == kind]
    wanted = spec.removeprefix(SERVER_PREFIX).strip().lower()
    if not wanted:
        return None
    for match in (
        lambda d: d.name.lower() == wanted,
        lambda d: wanted in d.name.lower(),
        lambda d: wanted in d.description.lower(),
    ):
        hit = next((d for d in devices if match(d)), None)
        if hit is not None:
            return hit
    return None


def render_server_devices(rows: list[ServerDevice]) -> str:
    """The server's devices, one per line, with the value to put in the config."""
    lines = ["sound server (PulseAudio/PipeWire) devices:"]
    for kind, key, title in (
        ("sink", "output_device", "speakers"),
        ("source", "input_device", "microphones"),
    ):
        lines.append(f"  {title} (audio.devices.{key}):")
        for d in (r for r in rows if r.kind == kind):
            mark = "*" if d.is_default else " "
            lines.append(f'   {mark} "{SERVER_PREFIX}{d.name}"  {d.description}'.rstrip())
    lines.append("* = the server's default. A name part or a description part selects one too.")
    return "\n".join(lines)
