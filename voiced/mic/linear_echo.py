"""A linear echo canceller used as a double-talk detector beside AEC3.

AEC3's suppressor ducks a user who starts talking over the device for their first syllables, so a
barge-in 6 dB under the echo would often be heard only a word late. A linear adaptive filter does not
suppress anything: what it leaves is the user plus a residual of the echo (about 12-20 dB down), so a
residual close to the loudest recent reference is the user talking. The echo canceller stage asks
:class:`LinearEchoFilter` for that residual on every 20 ms frame while the device talks.

The filter is a partitioned-block frequency-domain NLMS (overlap-save, 20 ms blocks, ``taps_ms`` of
echo path: the acoustic delay the device clocks do not see plus the room's reverb) in two paths: a
background filter that always adapts and a foreground filter that copies it only while it cancels
clearly better, so the user's voice during double talk cannot pull the residual it reports apart.
The gradient constraint is applied to one partition per block (round robin), which keeps the cost
at about 100 µs per frame on x86 while converging like the fully constrained filter on speech.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]

#: The foreground copies the background when the background's smoothed error is below this share of
#: the foreground's (3 dB better).
_COPY_RATIO = 0.5
#: Smoothing of the error powers that decide a copy (per 20 ms block).
_ERROR_SMOOTHING = 0.3
#: Regularisation of the step per bin, per sample of the block (keeps silence from dividing by zero).
_REGULARISATION = 1e3


class LinearEchoFilter:
    """Two-path PBFDAF on ``block_samples`` blocks (see the module docstring).

    Call :meth:`process` with every mic block and the reference block paired with it (same length,
    float64, int16 scale), in order; it returns the foreground's residual. :attr:`erle_db` says how
    much echo it removes while only the device talks; trust the residual only once that is well
    above the margin you test it against.
    """

    def __init__(
        self, *, block_samples: int = 320, taps_ms: float = 400.0, rate_hz: int = 16000, step: float = 1.0
    ) -> None:
        self.block_samples = block_samples
        self.partitions = max(1, round(taps_ms * rate_hz / 1000.0 / block_samples))
        self.step = step
        bins = block_samples + 1
        # Far-end spectra, newest first, stored twice so that the last `partitions` are one slice.
        self._spectra = np.zeros((2 * self.partitions, bins), dtype=np.complex128)
        self._head = 0
        self._power = np.zeros(bins)  # per bin: the far-end power over all partitions
        self._previous = np.zeros(block_samples)
        self._background = np.zeros((self.partitions, bins), dtype=np.complex128)
        self._foreground = np.zeros((self.partitions, bins), dtype=np.complex128)
        self._constrain_next = 0
        self._error_background = 0.0
        self._error_foreground = 0.0
        self._zeros = np.zeros(block_samples)
        self._silent_blocks = 0
        self._near_power = 0.0
        self._residual_power = 0.0
        self.copies = 0

    @property
    def erle_db(self) -> float:
        """Echo removed by the foreground while the device talked alone (smoothed, dB)."""
        if self._residual_power <= 0.0 or self._near_power <= 0.0:
            return 0.0
        return 10.0 * float(np.log10(self._near_power / self._residual_power))

    def learn_erle(self, near: Float64Array, residual: Float64Array) -> None:
        """Count a block in which only the device talked towards :attr:`erle_db`."""
        self._near_power += 0.05 * (float(near @ near) - self._near_power)
        self._residual_power += 0.05 * (float(residual @ residual) - self._residual_power)

    def process(self, near: Float64Array, far: Float64Array) -> Float64Array:
        """The foreground's residual ``near`` minus the echo it predicts from ``far``."""
        n = self.block_samples
        if not far.any():
            self._silent_blocks += 1
            if self._silent_blocks > self.partitions:
                # Nothing in the filter's memory: no echo to predict and nothing to learn.
                self._previous = self._zeros
                return near
        else:
            self._silent_blocks = 0
        spectrum = np.fft.rfft(np.concatenate([self._previous, far]))
        self._previous = far
        m = self.partitions
        self._head = (self._head - 1) % m
        oldest = self._spectra[self._head]
        self._power += (spectrum.real**2 + spectrum.imag**2) - (oldest.real**2 + oldest.imag**2)
        np.maximum(self._power, 0.0, out=self._power)
        self._spectra[self._head] = spectrum
        self._spectra[self._head + m] = spectrum
        history = self._spectra[self._head : self._head + m]
        error_background = near - np.fft.irfft(np.einsum("pb,pb->b", self._background, history))[n:]
        error_foreground = near - np.fft.irfft(np.einsum("pb,pb->b", self._foreground, history))[n:]
        gradient = np.fft.rfft(np.concatenate([self._zeros, error_background]))
        gradient *= self.step / (self._power + _REGULARISATION * n)
        self._background += np.conj(history) * gradient
        c = self._constrain_next
        taps = np.fft.irfft(self._background[c])
        taps[n:] = 0.0
        self._background[c] = np.fft.rfft(taps)
        self._constrain_next = (c + 1) % m
        power_background = float(error_background @ error_background)
        power_foreground = float(error_foreground @ error_foreground)
        self._error_background += _ERROR_SMOOTHING * (power_background - self._error_background)
        self._error_foreground += _ERROR_SMOOTHING * (power_foreground - self._error_foreground)
        if self._error_background < _COPY_RATIO * self._error_foreground:
            self._foreground[:] = self._background
            self._error_foreground = self._error_background
            self.copies += 1
            return error_background
        return error_foreground

    def reset(self) -> None:
        """Forget the echo path (the devices were reopened)."""
        self._spectra[:] = 0.0
        self._power[:] = 0.0
        self._previous = self._zeros
        self._background[:] = 0.0
        self._foreground[:] = 0.0
        self._error_background = self._error_foreground = 0.0
        self._near_power = self._residual_power = 0.0
        self._silent_blocks = 0
