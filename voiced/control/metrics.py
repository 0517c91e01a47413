"""Prometheus metrics, served at ``/metrics``.

Built on ``prometheus-client``: it is pure Python with no dependencies, its text exposition is what
Prometheus' own parser expects (escaping, ``_total``/``_bucket`` naming, ``+Inf``), and its
histograms are thread-safe and cost about a microsecond per observation, cheap enough for the
20 ms audio path. Each :class:`Metrics` has its own registry, so nothing is process-global.

How the daemon feeds it:

* events: ``publisher.add_listener(metrics.on_event)`` (``serve_control`` does this) counts turns,
  interrupts by reason, reconnects, tool calls by outcome, wakes and server errors by code, sets
  the state and connected gauges, and observes end of speech → first audio from each turn event;
* the ``observe_*_ms`` methods, called where the moment is measured: mic → wire, barge-in →
  silence, wake → first append;
* a snapshot function returning :class:`MetricsSnapshot`, read at each scrape, for totals the
  audio path keeps itself (underruns, dropped uplink frames) and the jitter-buffer target. Its
  totals may restart from zero (a new connection, a reopened device): the exported counters do not.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voiced.control.messages import (
    ConnectionEvent,
    Event,
    InterruptEvent,
    ServerErrorEvent,
    State,
    StateEvent,
    ToolEvent,
    TurnEvent,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Distinct server error codes kept as labels; more are counted under ``code="other"``.
MAX_ERROR_CODES = 32

_LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_MIC_TO_WIRE_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.5, 1.0)
_BARGE_IN_BUCKETS_S = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)
_WAKE_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Totals and levels the audio path keeps; the daemon returns one from its snapshot function."""

    underruns: int = 0
    uplink_dropped_frames: int = 0
    jitter_target_ms: float | None = None


class MonotonicTotal:
    """A running total built from readings that may restart from zero (a new agent or device)."""

    def __init__(self) -> None:
        self._offset = 0
        self._last = 0

    def update(self, reading: int) -> int:
        """Account for ``reading``; returns the total since start, never smaller than before."""
        if reading < self._last:
            self._offset += self._last
        self._last = reading
        return self._offset + reading


def rss_bytes() -> float:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak if sys.platform == "darwin" else peak * 1024)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot
        self._underruns = MonotonicTotal()
        self._dropped = MonotonicTotal()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield CounterMetricFamily(
            "voiced_underruns",
            "Playback blocks that found the jitter buffer empty.",
            value=self._underruns.update(snap.underruns),
        )
        yield CounterMetricFamily(
            "voiced_uplink_dropped_frames",
            "Microphone frames dropped because the socket was too slow.",
            value=self._dropped.update(snap.uplink_dropped_frames),
        )
        if snap.jitter_target_ms is not None:
            yield GaugeMetricFamily(
                "voiced_jitter_target_seconds",
                "The jitter buffer's current target delay.",
                value=snap.jitter_target_ms / 1000.0,
            )


class Metrics:
    """The device's metrics. Feed it (see the module docstring); :meth:`render` is the scrape."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        self.turns = Counter("voiced_turns", "Turns answered (or cut short).", registry=reg)
        self.interrupts = Counter(
            "voiced_interrupts", "Replies cut short, by reason.", ["reason"], registry=reg
        )
        self.reconnects = Counter(
            "voiced_reconnects", "Connections to the server after the first.", registry=reg
        )
        self.tool_calls = Counter(
            "voiced_tool_calls", "Tool calls finished, by outcome.", ["outcome"], registry=reg
        )
        self.wakes = Counter("voiced_wakes", "Times the device woke up.", registry=reg)
        self.server_errors = Counter(
            "voiced_server_errors", "Errors reported by the server, by code.", ["code"], registry=reg
        )
        self.state = Gauge("voiced_state", "1 for the device's current state.", ["state"], registry=reg)
        self.connected = Gauge("voiced_connected", "1 while connected to the server.", registry=reg)
        rss = Gauge("voiced_resident_memory_bytes", "Resident memory of the daemon.", registry=reg)
        rss.set_function(rss_bytes)
        self.speech_end_to_first_audio = Histogram(
            "voiced_speech_end_to_first_audio_seconds",
            "End of the user's speech to the first reply sample played.",
            buckets=_LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.mic_to_wire = Histogram(
            "voiced_mic_to_wire_seconds",
            "A microphone frame's capture to its append leaving on the socket.",
            buckets=_MIC_TO_WIRE_BUCKETS_S,
            registry=reg,
        )
        self.barge_in_to_silence = Histogram(
            "voiced_barge_in_to_silence_seconds",
            "An interrupt to the speaker going silent.",
            buckets=_BARGE_IN_BUCKETS_S,
            registry=reg,
        )
        self.wake_to_first_append = Histogram(
            "voiced_wake_to_first_append_seconds",
            "A wake-up to the first audio append sent.",
            buckets=_WAKE_BUCKETS_S,
            registry=reg,
        )
        # Label lookups cost microseconds each; state changes are frequent enough to keep them.
        self._state_gauges = {state: self.state.labels(state=state.value) for state in State}
        for gauge in self._state_gauges.values():
            gauge.set(0)
        self._error_codes: set[str] = set()
        self._ever_up = False
        if snapshot is not None:
            reg.register(_SnapshotCollector(snapshot))

    def on_event(self, event: Event) -> None:
        """Count what ``event`` tells; give this to :meth:`EventPublisher.add_listener`."""
        match event:
            case StateEvent(state=state):
                for known, gauge in self._state_gauges.items():
                    gauge.set(1 if known is state else 0)
                if state is State.WOKEN:
                    self.wakes.inc()
            case TurnEvent(turn=turn):
                self.turns.inc()
                first_audio_ms = turn.latency_ms.speech_end_to_first_sample_ms
                if first_audio_ms is not None and first_audio_ms >= 0:
                    self.speech_end_to_first_audio.observe(first_audio_ms / 1000.0)
            case InterruptEvent(reason=reason):
                self.interrupts.labels(reason=reason).inc()
            case ConnectionEvent(up=up):
                self.connected.set(1 if up else 0)
                if up and self._ever_up:
                    self.reconnects.inc()
                self._ever_up = self._ever_up or up
            case ToolEvent(outcome=outcome) if outcome != "started":
                self.tool_calls.labels(outcome=outcome).inc()
            case ServerErrorEvent(code=code):
                label = str(code)
                if label not in self._error_codes:
                    if len(self._error_codes) >= MAX_ERROR_CODES:
                        label = "other"
                    else:
                        self._error_codes.add(label)
                self.server_errors.labels(code=label).inc()
            case _:
                pass

    def observe_mic_to_wire_ms(self, latency_ms: float) -> None:
        """A frame captured ``latency_ms`` before its append was written to the socket."""
        self.mic_to_wire.observe(latency_ms / 1000.0)

    def observe_barge_in_to_silence_ms(self, latency_ms: float) -> None:
        """An interrupt took ``latency_ms`` to silence the speaker."""
        self.barge_in_to_silence.observe(latency_ms / 1000.0)

    def observe_wake_to_first_append_ms(self, latency_ms: float) -> None:
        """The first append after a wake-up left ``latency_ms`` after the wake word ended."""
        self.wake_to_first_append.observe(latency_ms / 1000.0)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric, served with :data:`CONTENT_TYPE`."""
        return generate_latest(self.registry)
