"""The session's frame clock: what time a driving frame is at, for everything on the frame path.

Every consumer that is timed per frame (the tracker's One Euro filters and auto-calibration, the idle
motion and blinks, expression easing, the animation smoothing, the voice) reads the frame's
``timestamp``, never a clock of its own. That timestamp is

* **wall clock** (``time.perf_counter()`` when the frame was read) for a live source: a webcam, or a file
  paced with ``capture.realtime``; a live microphone shares that clock;
* **media time** for a file or folder processed frame by frame (``capture.every_frame``): frame k of the input
  is at ``k / fps`` seconds from ``MEDIA_ORIGIN`` — its place in the input, not when the machine got to it. A
  loop, or a source opened again, keeps counting forward. The run is then a function of its input and
  settings alone: the same video gives the same frames at any speed, and an audio file read on the same clock
  (``voice.stage.FileVoice``) lines up with the picture.

The media origin is a fixed number (0), not the session's start on the wall clock: the filters subtract
timestamps, and ``(S + a) - (S + b)`` rounds differently for every ``S``, which is enough to change a pixel.
Latency is always measured on the wall clock (``CapturedFrame.read_at``).
"""
from __future__ import annotations

import threading
import time

#: Media time of a lossless run's first frame (and of an audio file's first sample read on that clock).
MEDIA_ORIGIN = 0.0


class FrameClock:
    """Dates the frames of one session: wall clock (``media=False``) or media time (``media=True``).
    The capture thread calls ``source_opened`` and ``frame``; any thread may call ``now``."""

    def __init__(self, media: bool) -> None:
        self.media = media
        self._lock = threading.Lock()
        self._base = MEDIA_ORIGIN  #: media time of frame 0 of the open source
        self._fps = 0.0
        self._k = 0  #: frames dated since the source was opened
        self._last: float | None = None  #: the newest media time handed out (a frame or ``now``)
        self._last_wall = 0.0  #: the wall clock when it was handed out

    def source_opened(self, fps: float) -> None:
        """A source (re)opened at ``fps``: its first frame follows everything dated so far."""
        with self._lock:
            self._fps = float(fps) if fps > 0 else 30.0
            if self._last is not None:
                self._base = self._last + 1.0 / self._fps
            self._k = 0

    def frame(self, wall: float) -> float:
        """The timestamp of the next frame of the open source, read at ``wall`` (``time.perf_counter()``)."""
        if not self.media:
            return wall
        with self._lock:
            t = self._base + self._k / self._fps
            self._k += 1
            self._last, self._last_wall = t, wall
            return t

    def now(self) -> float:
        """The time of a frame made between input frames (an idle frame while the input is lost): live, the
        wall clock; media time, the last frame's time plus the wall time since it (the input is away, so the
        character idles in real time), and the next input frame comes after it."""
        wall = time.perf_counter()
        if not self.media:
            return wall
        with self._lock:
            t = MEDIA_ORIGIN if self._last is None else self._last + max(0.0, wall - self._last_wall)
            self._last, self._last_wall = t, wall
            return t
