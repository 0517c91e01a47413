"""A private, headless PulseAudio with a virtual microphone and a virtual speaker, for tests that drive
real PortAudio (sounddevice -> ALSA `pulse` plugin -> PulseAudio).

    mic:     test --(FIFO, paced in real time by a feeder thread)--> module-pipe-source "vmic"
    speaker: module-pipe-sink "vspk" (system-clocked) --(FIFO, drained by a thread)--> captured bytes

Use from any test directory by importing the fixture into that directory's conftest.py:

    from tests.support.pulse import pulse  # noqa: F401  (registers the fixture)

    @pytest.mark.pulse
    def test_something(pulse: PulseServer) -> None:
        pulse.say(samples_16k)            # queue speech on the virtual mic (silence otherwise)
        ... open PortAudio devices "default" (or index/name) as usual ...
        heard = pulse.speaker_audio()     # int16 at pulse.speaker_rate_hz

The fixture sets PULSE_SERVER for this process, re-initialises PortAudio (it scans devices only at
init) and skips the test, with the reason, only when the `pulseaudio` binary is absent.
`pulse.kill()` / `pulse.start()` simulate a sound server crash and restart (device loss).

An optional echo path closes the loop, as on a smart speaker whose mic hears its own loudspeaker: set
`pulse.echo_path` (any :class:`SpeakerToMic`, e.g. `tests.support.echo.EchoPath`) and every block the
drain thread reads from the virtual speaker is handed to it, and the feeder adds what it returns to
what the test says, in real time:

    pulse.echo_path = EchoPath(Room(delay_ms=120.0), pulse.speaker_rate_hz)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pytest

__all__ = ["PulseServer", "SpeakerToMic", "pulse", "pulse_available"]

_READY_TIMEOUT_S = 10.0
_FEED_BLOCK_MS = 10


class SpeakerToMic(Protocol):
    """What carries the virtual speaker's sound to the virtual mic (called on the harness's threads)."""

    def played(self, block: npt.NDArray[np.int16]) -> None:
        """The virtual speaker just played ``block`` (int16 at the server's speaker_rate_hz)."""

    def mic_block(self, n: int) -> npt.NDArray[np.int16]:
        """The next ``n`` samples (at mic_rate_hz) the mic hears from the room, added to what is said."""
        ...


def pulse_available() -> bool:
    """True when the pulseaudio binary is installed."""
    return shutil.which("pulseaudio") is not None


class PulseServer:
    """One private PulseAudio daemon in `root` (see the module docstring)."""

    def __init__(self, root: Path, *, mic_rate_hz: int = 16000, speaker_rate_hz: int = 24000) -> None:
        self.root = root
        self.mic_rate_hz = mic_rate_hz
        self.speaker_rate_hz = speaker_rate_hz
        self.socket = root / "native"
        self.mic_fifo = root / "mic.fifo"
        self.speaker_fifo = root / "speaker.fifo"
        #: A second, non-default sink ("usbspk", described as "USB Speaker"): for choosing by name.
        self.speaker2_fifo = root / "speaker2.fifo"
        self.log_path = root / "pulseaudio.log"
        self.client_conf = root / "client.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._mic_queue: deque[npt.NDArray[np.int16]] = deque()
        self._mic_lock = threading.Lock()
        self._speaker = bytearray()
        self._speaker2 = bytearray()
        self._speaker_lock = threading.Lock()
        self.mic_samples_fed = 0
        self.mic_samples_said = 0
        #: When set, the main speaker ("vspk") is heard on the mic through it (see the module docstring).
        self.echo_path: SpeakerToMic | None = None

    @property
    def server(self) -> str:
        """Value for PULSE_SERVER."""
        return f"unix:{self.socket}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env.update(HOME=str(self.root / "home"), XDG_RUNTIME_DIR=str(self.root / "runtime"))
        return env

    def start(self) -> None:
        """Start the daemon and the mic feeder / speaker drain threads; wait until it accepts clients."""
        for d in ("home", "runtime"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        # The pipe modules create their FIFOs and refuse to load when one already exists.
        for fifo in (self.mic_fifo, self.speaker_fifo, self.speaker2_fifo):
            fifo.unlink(missing_ok=True)
        # No autospawn: after kill() a client must see the server gone, not start a new one.
        self.client_conf.write_text("autospawn = no\n")
        script = self.root / "script.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-pipe-source source_name=vmic file={self.mic_fifo} format=s16le "
            f"rate={self.mic_rate_hz} channels=1\n"
            f"load-module module-pipe-sink sink_name=vspk file={self.speaker_fifo} format=s16le "
            f"rate={self.speaker_rate_hz} channels=1 use_system_clock_for_timing=yes\n"
            f"load-module module-pipe-sink sink_name=usbspk file={self.speaker2_fifo} format=s16le "
            f"rate={self.speaker_rate_hz} channels=1 use_system_clock_for_timing=yes "
            "sink_properties=device.description=USB_Speaker\n"
            "set-default-source vmic\n"
            "set-default-sink vspk\n"
        )
        self.socket.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(script),
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--realtime=no",
                "--disable-shm=yes",
                "--log-target=stderr",
            ],
            env=self._env(),
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        fifos = (self.mic_fifo, self.speaker_fifo, self.speaker2_fifo)
        while not (self.socket.exists() and all(f.exists() for f in fifos)):
            if self._proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited early: {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pulseaudio not ready after {_READY_TIMEOUT_S} s")
            time.sleep(0.02)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._feed_mic, name="pulse-mic-feeder", daemon=True),
            threading.Thread(target=self._drain_speaker, name="pulse-speaker-drain", daemon=True),
            threading.Thread(
                target=self._drain_speaker,
                args=(self.speaker2_fifo, self._speaker2),
                name="pulse-speaker2-drain",
                daemon=True,
            ),
        ]
        for t in self._threads:
            t.start()

    def client_env(self) -> dict[str, str]:
        """Environment variables a PortAudio/PulseAudio client needs to reach this server."""
        return {"PULSE_SERVER": self.server, "PULSE_CLIENTCONFIG": str(self.client_conf)}

    # -- the virtual microphone ---------------------------------------------------------------------
    def say(self, samples: npt.NDArray[np.int16]) -> None:
        """Queue int16 audio (at mic_rate_hz) on the virtual mic, after what is queued already."""
        with self._mic_lock:
            self._mic_queue.append(np.ascontiguousarray(samples, dtype=np.int16))
            self.mic_samples_said += int(samples.size)

    @property
    def mic_idle(self) -> bool:
        """True when everything said has been fed to the server."""
        with self._mic_lock:
            return not self._mic_queue

    def _next_mic_block(self, n: int) -> bytes:
        out = np.zeros(n, dtype=np.int16)
        path = self.echo_path
        filled = 0
        with self._mic_lock:
            while filled < n and self._mic_queue:
                head = self._mic_queue[0]
                k = min(n - filled, head.size)
                out[filled : filled + k] = head[:k]
                filled += k
                if k == head.size:
                    self._mic_queue.popleft()
                else:
                    self._mic_queue[0] = head[k:]
        if path is not None:
            mixed = out.astype(np.int32) + path.mic_block(n).astype(np.int32)
            out = np.clip(mixed, -32768, 32767).astype(np.int16)
        return out.astype("<i2").tobytes()

    def _feed_mic(self) -> None:
        # The pipe source has no clock of its own: it takes data as fast as it comes. Feed exactly
        # real time (silence when nothing is said), or PortAudio callbacks run dry and stop.
        n = self.mic_rate_hz * _FEED_BLOCK_MS // 1000
        # Non-blocking: while nobody records, PulseAudio may stop reading the FIFO; a real mic then
        # just loses the sound, and the feeder must never hang on a full pipe (stop() joins it).
        fd = os.open(self.mic_fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            t0 = time.monotonic()
            k = 0
            while not self._stop.is_set():
                due = t0 + k * _FEED_BLOCK_MS / 1000
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    os.write(fd, self._next_mic_block(n))
                except BlockingIOError:
                    pass
                except OSError:
                    return
                self.mic_samples_fed += n
                k += 1
        finally:
            os.close(fd)

    # -- the virtual speaker ------------------------------------------------------------------------
    def _drain_speaker(self, fifo: Path | None = None, into: bytearray | None = None) -> None:
        captured = self._speaker if into is None else into
        main = into is None
        odd = b""  # a read may split a sample: its first byte waits for the next read
        fd = os.open(fifo or self.speaker_fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while not self._stop.is_set():
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    time.sleep(0.005)
                    continue
                if not data:
                    time.sleep(0.005)
                    continue
                with self._speaker_lock:
                    captured += data
                path = self.echo_path
                if main and path is not None:
                    whole = odd + data
                    cut = len(whole) // 2 * 2
                    odd = whole[cut:]
                    path.played(np.frombuffer(whole[:cut], dtype="<i2").astype(np.int16))
        finally:
            os.close(fd)

    def speaker_audio(self) -> npt.NDArray[np.int16]:
        """Everything the virtual speaker played so far, int16 at speaker_rate_hz."""
        with self._speaker_lock:
            data = bytes(self._speaker[: len(self._speaker) // 2 * 2])
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    def speaker2_audio(self) -> npt.NDArray[np.int16]:
        """Everything the second sink ("usbspk") played so far, int16 at speaker_rate_hz."""
        with self._speaker_lock:
            data = bytes(self._speaker2[: len(self._speaker2) // 2 * 2])
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    # -- lifecycle -------------------------------------------------------------------------------
    def kill(self) -> None:
        """Kill the daemon abruptly (SIGKILL), like a crash; threads stop too."""
        self._stop_threads()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        """Terminate the daemon cleanly."""
        self._stop_threads()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _stop_threads(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []


def reinitialise_portaudio() -> None:
    """PortAudio scans devices (and ALSA reads its config) only at init: re-init after (re)starts."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


@contextlib.contextmanager
def pulse_server(root: Path, *, speaker_rate_hz: int = 24000) -> Iterator[PulseServer]:
    """Run a PulseServer in `root` with this process's PULSE_* environment pointed at it."""
    server = PulseServer(root, speaker_rate_hz=speaker_rate_hz)
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "PULSE_CLIENTCONFIG")}
    server.start()
    os.environ.update(server.client_env())
    try:
        reinitialise_portaudio()
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reinitialise_portaudio()


@pytest.fixture
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """A running private PulseAudio (skips only when the `pulseaudio` binary is absent)."""
    if not pulse_available():
        pytest.skip(
            "pulseaudio binary not found: install pulseaudio pulseaudio-utils libasound2-plugins "
            "(scripts/setup.sh --test does)"
        )
    # A short path: the unix socket path must stay under ~100 bytes.
    root = tmp_path_factory.mktemp("pa")
    with pulse_server(root) as server:
        yield server
