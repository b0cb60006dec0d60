"""A small single-producer ring buffer of mono float32 samples, with the clock of its newest sample.

An audio callback (PortAudio's thread) must never block or allocate much: it writes into a preallocated ring,
and the voice thread takes what is there. When the reader falls behind, the oldest samples are overwritten
(counted in ``overruns``): like a latest-value hand-off, stale audio is worth less than the newest.
"""
from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """``write`` from one thread, ``read`` from another; both take a lock for a few microseconds. ``rate``: the
    sample rate, so that ``read`` can date a block that is not the newest one."""

    def __init__(self, capacity: int, rate: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("ring capacity and rate must be positive")
        self._buf = np.zeros(capacity, np.float32)
        self._rate = float(rate)
        self._cond = threading.Condition()
        self._write = 0  #: total samples ever written
        self._read = 0  #: total samples ever read
        self._t_end = 0.0  #: clock (time.perf_counter) just after the newest sample
        self.overruns = 0  #: samples overwritten before they were read

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def write(self, samples: np.ndarray, t_end: float) -> None:
        """Append ``samples`` (1-D); ``t_end``: the clock at the end of the last one."""
        n = len(samples)
        cap = len(self._buf)
        with self._cond:
            if n >= cap:
                samples = samples[-cap:]
                self.overruns += n - cap
                n = cap
            start = self._write % cap
            first = min(n, cap - start)
            self._buf[start:start + first] = samples[:first]
            if first < n:
                self._buf[:n - first] = samples[first:]
            self._write += n
            lost = self._write - self._read - cap
            if lost > 0:
                self.overruns += lost
                self._read += lost
            self._t_end = t_end
            self._cond.notify_all()

    def available(self) -> int:
        with self._cond:
            return self._write - self._read

    def read(self, n: int, timeout: float | None = None) -> tuple[np.ndarray, float] | None:
        """Exactly ``n`` samples (oldest first) and the clock of the last one, waiting up to ``timeout`` s
        for them; None when they did not come in time."""
        if n > len(self._buf):
            raise ValueError(f"cannot read {n} samples from a ring of {len(self._buf)}")
        with self._cond:
            if not self._cond.wait_for(lambda: self._write - self._read >= n, timeout):
                return None
            cap = len(self._buf)
            start = self._read % cap
            first = min(n, cap - start)
            out = np.empty(n, np.float32)
            out[:first] = self._buf[start:start + first]
            if first < n:
                out[first:] = self._buf[:n - first]
            self._read += n
            behind = self._write - self._read  # samples written after the last one returned
            return out, self._t_end - behind / self._rate

    def clear(self) -> None:
        with self._cond:
            self._read = self._write
