"""Every audio source to one analysis rate (``RATE``), block by block, with state carried across blocks.

A microphone runs at whatever rate its driver offers (44.1 or 48 kHz mostly) and a file at its own; the
features are computed at 16 kHz, which holds the first three formants of speech (below 4 kHz) and keeps the
per-block work small. ``StreamResampler`` is an anti-alias low-pass (a 4th-order Butterworth at 0.45 of the
output rate, its filter state kept between blocks) followed by linear interpolation at the output instants
(its phase kept between blocks): cheap, streaming, no edge clicks. Good enough for loudness and formants,
which is all it serves; not for listening.
"""
from __future__ import annotations

import numpy as np

RATE = 16000  #: the analysis rate (Hz) of every voice feature


class StreamResampler:
    """``in_rate`` -> ``out_rate`` for consecutive blocks of one stream."""

    def __init__(self, in_rate: float, out_rate: float = RATE) -> None:
        self.in_rate = float(in_rate)
        self.out_rate = float(out_rate)
        self.passthrough = abs(self.in_rate - self.out_rate) < 1e-6
        self._step = self.in_rate / self.out_rate  #: input samples per output sample
        if not self.passthrough and self.out_rate < self.in_rate:
            from scipy import signal  # noqa: PLC0415 - only where a stream is resampled (not for a device list)

            self._signal = signal
            self._sos = signal.butter(4, 0.45 * self.out_rate, fs=self.in_rate, output="sos")
            self._zi = np.zeros((self._sos.shape[0], 2))
        else:
            self._sos = None
        self._pos = 0.0  #: position of the next output sample, in input samples from the start of ``_prev``
        self._prev = np.zeros(1, np.float32)  #: the last input sample of the previous block

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.passthrough or len(x) == 0:
            return x
        if self._sos is not None:
            x, self._zi = self._signal.sosfilt(self._sos, x, zi=self._zi)
            x = x.astype(np.float32)
        buf = np.concatenate([self._prev, x])  # index 0 is the previous block's last sample
        last = len(buf) - 1
        n = int(np.floor((last - self._pos) / self._step)) + 1 if last >= self._pos else 0
        t = self._pos + self._step * np.arange(n)
        out = np.interp(t, np.arange(len(buf)), buf).astype(np.float32)
        self._pos = self._pos + self._step * n - last  # relative to the new ``_prev`` (buf[last])
        self._prev = buf[-1:].copy()
        return out


def resample_all(x: np.ndarray, in_rate: int, out_rate: int = RATE) -> np.ndarray:
    """A whole signal at once (polyphase, exact rational ratio): for tests and short files."""
    if in_rate == out_rate:
        return np.asarray(x, np.float32)
    from scipy import signal  # noqa: PLC0415

    g = np.gcd(int(in_rate), int(out_rate))
    return signal.resample_poly(x, out_rate // g, in_rate // g).astype(np.float32)
