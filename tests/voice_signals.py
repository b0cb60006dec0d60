"""Test signals with known answers for the voice tests: synthetic vowels (a glottal pulse train through
formant resonators, the classic source-filter model), click trains, noise, and speech from espeak-ng."""
from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
from scipy import signal

from liveportrait_core.voice.resample import RATE

#: Formants (F1, F2, F3) of the synthetic vowels: textbook values of a male voice (Peterson & Barney).
VOWEL_FORMANTS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240),
                  "e": (530, 1840, 2480), "o": (570, 840, 2410)}


def vowel(name: str, seconds: float = 0.5, f0: float = 120.0, amplitude: float = 0.3,
          rate: int = RATE, formants: tuple[float, ...] | None = None) -> np.ndarray:
    """A steady synthetic vowel: an impulse train at ``f0`` through two-pole resonators at its formants
    (bandwidths 60, 90, 120 Hz), scaled so that its peak is ``amplitude``."""
    n = int(seconds * rate)
    x = np.zeros(n)
    x[:: int(rate / f0)] = 1.0
    x = signal.lfilter([1.0], [1.0, -0.95], x)  # glottal roll-off
    for f, bw in zip(formants or VOWEL_FORMANTS[name], (60.0, 90.0, 120.0)):
        r = np.exp(-np.pi * bw / rate)
        x = signal.lfilter([1.0 - r], [1.0, -2 * r * np.cos(2 * np.pi * f / rate), r * r], x)
    return (x / np.abs(x).max() * amplitude).astype(np.float32)


def clicks(period_s: float, seconds: float, click_s: float = 0.004, amplitude: float = 0.8,
           rate: int = RATE) -> tuple[np.ndarray, np.ndarray]:
    """A click train (short bursts of a 1 kHz tone) and the onset times of its clicks in seconds."""
    x = np.zeros(int(seconds * rate), np.float32)
    onsets = np.arange(0.1, seconds - period_s / 2, period_s)
    burst = amplitude * np.sin(2 * np.pi * 1000 * np.arange(int(click_s * rate)) / rate)
    for t in onsets:
        i = int(round(t * rate))
        x[i:i + len(burst)] = burst
    return x, onsets


def noise(db: float, seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """White noise with an RMS of ``db`` dBFS."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * rate))
    return (x * 10 ** (db / 20)).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def espeak(text: str, path: Path, voice: str = "en") -> Path | None:
    """Speech made offline by espeak-ng (a WAV at its own rate, 22.05 kHz), or None without espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    subprocess.run([exe, "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path
