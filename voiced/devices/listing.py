"""The data behind `voiced devices`: every input and output device, defaults marked, rates supported."""

from __future__ import annotations

from dataclasses import dataclass

from voiced.devices.portaudio import load_sounddevice, supports

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
        "* = default device. Select with audio.input_device / audio.output_device (index or name part)."
    )
    return "\n".join(lines)
