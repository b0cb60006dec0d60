"""Per-block voice features: loudness (RMS dBFS, gain, noise gate, attack/release) and vowel shape (A I U E O).

Loudness: the block's RMS in dBFS (full scale = 0 dB) after ``audio.gain_db``; a gate with 3 dB of hysteresis
(opens at ``audio.gate_db``, closes 3 dB below, so that a voice near the threshold does not flicker); the
level above the gate over ``audio.range_db`` gives 0..1, smoothed with one-pole attack and release time
constants (``audio.attack_ms``, ``audio.release_ms``): a mouth opens fast and closes a little slower, as
speech looks.

Vowel: the first two formants from linear prediction (LPC, autocorrelation method, Levinson-Durbin) on the
last 32 ms, read from the roots of the predictor polynomial (frequency from the angle, bandwidth from the
radius, a pole kept when 90 Hz < F < 4 kHz and its bandwidth < 500 Hz), then the nearest of five vowels on
a log-frequency (F1, F2) plane, averaged over men's and women's values (Peterson and Barney 1952,
Hillenbrand et al. 1995). The weights are a soft-max of the distances, so a sound between two vowels blends
their shapes. Only computed while the gate is open; no model, no download; about a tenth of a millisecond a
block (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from liveportrait_core.voice.resample import RATE

if TYPE_CHECKING:  # pragma: no cover
    from liveportrait_core.settings import AudioSettings

VOWELS = ("a", "i", "u", "e", "o")
#: (F1, F2) in Hz per vowel: the mean of adult men's and women's values (Peterson & Barney; Hillenbrand).
FORMANTS = {"a": (790.0, 1160.0), "i": (290.0, 2540.0), "u": (335.0, 910.0), "e": (570.0, 2080.0),
            "o": (580.0, 880.0)}
#: Spread of a vowel on the log-frequency plane (natural log units): how soft the blend between vowels is.
VOWEL_SIGMA = 0.22
#: F2 counts less than F1 in the distance (it varies more between speakers and is estimated less well).
F2_WEIGHT = 0.7
SILENCE_DB = -120.0  #: what an all-zero block reads
GATE_HYSTERESIS_DB = 3.0
WINDOW_S = 0.032  #: the formant analysis window
LPC_ORDER = 14  #: 2 + kHz of the analysis rate, minus two for a band of 4 kHz of formants
_LOG_TABLE = np.log(np.array([FORMANTS[v] for v in VOWELS]))  # (5, 2)


@dataclass(frozen=True)
class VoiceFeatures:
    """The voice at the end of one block."""

    timestamp: float  #: the end of the block on the video frames' clock (``time.perf_counter()``; media time: FileVoice)
    db: float  #: RMS of the block in dBFS, after the gain
    level: float  #: 0 (silent or gated) .. 1 (``range_db`` above the gate), smoothed
    gate_open: bool
    vowels: tuple[float, ...] = (0.0,) * len(VOWELS)  #: weights of VOWELS (sum 1 while voiced, else zeros)
    f1: float = 0.0  #: first formant, Hz (0: none found)
    f2: float = 0.0

    @property
    def vowel(self) -> str:
        """The strongest vowel ('' when none)."""
        if not any(self.vowels):
            return ""
        return VOWELS[int(np.argmax(self.vowels))]


SILENT = VoiceFeatures(timestamp=0.0, db=SILENCE_DB, level=0.0, gate_open=False)


def rms_dbfs(block: np.ndarray) -> float:
    """RMS level of a float block (full scale +-1) in dB; ``SILENCE_DB`` for digital silence."""
    if len(block) == 0:
        return SILENCE_DB
    ms = float(np.dot(block, block)) / len(block)
    return SILENCE_DB if ms <= 1e-12 else max(10.0 * math.log10(ms), SILENCE_DB)


def lpc(x: np.ndarray, order: int) -> np.ndarray:
    """Predictor polynomial [1, a1 .. a_order] by the autocorrelation method (Levinson-Durbin)."""
    n = len(x)
    r = np.array([np.dot(x[: n - k], x[k:]) for k in range(order + 1)], np.float64)
    r[0] *= 1.0 + 1e-9  # white-noise correction: keeps the recursion stable on near-silent input
    a = np.zeros(order + 1)
    a[0] = 1.0
    err = r[0]
    if err <= 0:
        return a
    for i in range(1, order + 1):
        k = -(r[i] + np.dot(a[1:i], r[i - 1:0:-1])) / err
        a[1:i] = a[1:i] + k * a[i - 1:0:-1]
        a[i] = k
        err *= 1.0 - k * k
        if err <= 0:
            break
    return a


@functools.lru_cache(maxsize=4)
def _hamming(n: int) -> np.ndarray:
    """The analysis window, made once per length (read-only: every voiced block multiplies by it)."""
    w = np.hamming(n)
    w.flags.writeable = False
    return w


def formants(x: np.ndarray, rate: int = RATE, order: int = LPC_ORDER) -> tuple[float, float]:
    """(F1, F2) in Hz of a voiced window (0.0 for one not found)."""
    if len(x) < order + 1 or not np.any(x):
        return 0.0, 0.0
    y = np.empty_like(x, dtype=np.float64)  # pre-emphasis: flattens the voice's -6 dB/octave tilt
    y[0] = x[0]
    y[1:] = x[1:] - 0.97 * x[:-1]
    y *= _hamming(len(y))
    roots = np.roots(lpc(y, order))
    roots = roots[np.imag(roots) > 0]
    freq = np.angle(roots) * (rate / (2 * np.pi))
    bw = -np.log(np.abs(roots) + 1e-12) * (rate / np.pi)
    keep = (freq > 90.0) & (freq < 4000.0) & (bw < 500.0)
    f = np.sort(freq[keep])
    return (float(f[0]) if len(f) > 0 else 0.0), (float(f[1]) if len(f) > 1 else 0.0)


def vowel_weights(f1: float, f2: float) -> np.ndarray:
    """Soft weights of VOWELS for a formant pair (zeros when F1 or F2 is missing)."""
    if f1 <= 0 or f2 <= 0:
        return np.zeros(len(VOWELS))
    d = _LOG_TABLE - np.log([f1, f2])
    d2 = d[:, 0] ** 2 + (F2_WEIGHT * d[:, 1]) ** 2
    w = np.exp(-(d2 - d2.min()) / (2 * VOWEL_SIGMA ** 2))
    return w / w.sum()


def _coefficient(block_s: float, time_ms: float) -> float:
    """One-pole smoothing coefficient per block for a time constant (0 ms: follow at once)."""
    return 1.0 if time_ms <= 0 else 1.0 - math.exp(-block_s / (time_ms / 1000.0))


class VoiceAnalyzer:
    """Turns consecutive blocks at ``RATE`` into ``VoiceFeatures`` (one thread: the voice stage's).

    Reads ``audio.gain_db``, ``gate_db``, ``range_db``, ``attack_ms``, ``release_ms`` and ``vowels`` from the
    settings given to ``configure`` (a new block picks them up at once).
    """

    def __init__(self, settings: "AudioSettings", rate: int = RATE) -> None:
        self.rate = rate
        self._window = np.zeros(int(WINDOW_S * rate), np.float32)  # the last 32 ms, oldest first
        self._level = 0.0
        self._gate = False
        self._vowels = np.zeros(len(VOWELS))
        self.configure(settings)

    def configure(self, settings: "AudioSettings") -> None:
        self.settings = settings

    def reset(self) -> None:
        self._window[:] = 0.0
        self._level = 0.0
        self._gate = False
        self._vowels[:] = 0.0

    def process(self, block: np.ndarray, t_end: float) -> VoiceFeatures:
        s = self.settings
        n = len(block)
        block_s = n / self.rate
        gain = 10.0 ** (s.gain_db / 20.0)
        x = block * gain if gain != 1.0 else block
        w = self._window  # slide the analysis window (no allocation: a shift in place, then the new block)
        if n >= len(w):
            w[:] = x[-len(w):]
        else:
            w[:-n] = w[n:]
            w[-n:] = x
        db = rms_dbfs(x)
        self._gate = db >= s.gate_db if not self._gate else db >= s.gate_db - GATE_HYSTERESIS_DB
        target = min(max((db - s.gate_db) / s.range_db, 0.0), 1.0) if self._gate else 0.0
        k = _coefficient(block_s, s.attack_ms if target > self._level else s.release_ms)
        self._level += k * (target - self._level)
        if self._level < 1e-4:
            self._level = 0.0
        f1 = f2 = 0.0
        if self._gate and s.vowels:
            f1, f2 = formants(w, self.rate)
            v = vowel_weights(f1, f2)
            if v.any():  # a vowel glides over about 30 ms; unvoiced blocks keep the last shape
                kv = _coefficient(block_s, 30.0)
                self._vowels += kv * (v - self._vowels)
        elif not self._gate:
            self._vowels[:] = 0.0
        vowels = tuple(float(v) for v in self._vowels) if self._vowels.any() else SILENT.vowels
        return VoiceFeatures(timestamp=t_end, db=db, level=self._level, gate_open=self._gate, vowels=vowels,
                             f1=f1, f2=f2)
