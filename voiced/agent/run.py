"""``voiced run``: the daemon on the configured devices (or WAV files in their place)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voiced.agent.daemon import Daemon, SinkFactory, SourceFactory
from voiced.audio.codec import CodecUnavailable
from voiced.config import VoicedConfig
from voiced.devices.base import AudioSink, AudioSource
from voiced.devices.factory import open_sink, open_source
from voiced.devices.portaudio import reinitialise
from voiced.errors import EXIT_DEVICE


def device_factories(
    config: VoicedConfig, input_wav: Path | None = None, output_wav: Path | None = None
) -> tuple[SourceFactory, SinkFactory]:
    """Factories that open (and start) the microphone and speaker the config and flags name."""
    devices = config.audio.devices

    async def source() -> AudioSource:
        if input_wav is not None:
            src = open_source(devices, "wav", path=input_wav, paced=True, after_end="silence")
        else:
            src = open_source(devices, "portaudio")
        await src.start()
        return src

    async def sink(sample_rate_hz: int) -> AudioSink:
        if output_wav is not None:
            out = open_sink(devices, "wav", sample_rate_hz, path=output_wav)
        else:
            out = open_sink(devices, "portaudio", sample_rate_hz)
        await out.start()
        return out

    return source, sink


async def run_command(
    config: VoicedConfig,
    config_path: Path | None,
    input_wav: Path | None,
    output_wav: Path | None,
    overrides: Mapping[str, Any] | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT or a fatal error; returns the exit code.

    ``overrides`` (from ``--set``) are applied again when SIGHUP re-reads ``config_path``.
    """
    source, sink = device_factories(config, input_wav, output_wav)
    rescan = None
    if input_wav is None or output_wav is None:
        rescan = reinitialise
    daemon = Daemon(
        config, source, sink, config_path=config_path, config_overrides=overrides, rescan_devices=rescan
    )
    if input_wav is None and output_wav is None:
        # Sound devices may be switched at run time (the control API): same kinds, other names.
        daemon.device_factories_for = lambda devices: device_factories(
            config.model_copy(update={"audio": config.audio.model_copy(update={"devices": devices})})
        )
    try:
        return await daemon.run()
    except CodecUnavailable as exc:
        daemon.log.error(str(exc))
        return EXIT_DEVICE
