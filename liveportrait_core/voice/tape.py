"""The audio of a recording: the voice stage's blocks written to a temporary WAV as they come, dated.

A recording is one file with picture and sound; the picture is written by ``outputs.recorder`` as frames
arrive, the sound here, on the voice thread (a tap), 16-bit mono at the analysis rate (speech quality: the
microphone's own rate is not kept). The gaps of a lost microphone are filled with silence so that what
follows stays in sync. ``mux.mux_audio`` puts it beside the video when the recording closes.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from liveportrait_core.voice.resample import RATE
from liveportrait_core.voice.sources import AudioBlock

_log = logging.getLogger(__name__)

MAX_GAP_S = 10.0  #: a longer gap is not filled (the track restarts later than the picture; said in the log)


class AudioTape:
    """Collects blocks into a temporary WAV. ``start_ts``: the clock of its first sample."""

    def __init__(self, rate: int = RATE, folder: str | None = None) -> None:
        self.rate = rate
        fd, name = tempfile.mkstemp(prefix="lp-voice-", suffix=".wav", dir=folder)
        os.close(fd)
        self.path = Path(name)
        self._w = wave.open(name, "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(rate)
        self._lock = threading.Lock()
        self.start_ts: float | None = None
        self.samples = 0
        self.closed = False

    def write(self, block: AudioBlock) -> None:
        x = block.samples
        with self._lock:
            if self.closed:
                return
            t_start = block.t_end - len(x) / self.rate
            if self.start_ts is None:
                self.start_ts = t_start
            else:
                gap = int(round((t_start - self.start_ts) * self.rate)) - self.samples
                if 0 < gap <= MAX_GAP_S * self.rate and gap > len(x) // 2:  # a lost device: silence keeps sync
                    self._w.writeframes(np.zeros(gap, "<i2").tobytes())
                    self.samples += gap
            self._w.writeframes((np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
            self.samples += len(x)

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._w.close()

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate

    def discard(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except OSError:
            pass
