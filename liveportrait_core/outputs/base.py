"""The one interface every output implements, and the frame they all receive."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class PublishedFrame:
    """One finished frame, shared (read-only) by every output: never modify ``bgra`` in place."""

    index: int  #: the capture index of the driving frame it came from
    #: the driving frame's time on the session's clock (``capture.clock``): ``time.perf_counter()`` when it was
    #: captured for a live source, its media time for a file processed frame by frame
    capture_ts: float
    publish_ts: float  #: ``time.perf_counter()`` when it was handed to the outputs
    bgra: np.ndarray  #: HxWx4 uint8, C-contiguous, straight (not premultiplied) alpha
    observation: Any = None  #: the tracker's FaceObservation, for debug drawing (None when idle)
    source_bgr: np.ndarray | None = None  #: the driving camera frame, for debug drawing
    read_at: float | None = None  #: ``time.perf_counter()`` when the driving frame was read (None: ``capture_ts``)

    @property
    def width(self) -> int:
        return int(self.bgra.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgra.shape[0])

    @property
    def latency_s(self) -> float:
        """Wall-clock seconds from reading the driving frame to publishing this one."""
        return self.publish_ts - (self.capture_ts if self.read_at is None else self.read_at)


class OutputUnavailable(RuntimeError):
    """The output cannot run here (missing optional package, wrong OS, no display): not retried."""


@runtime_checkable
class Output(Protocol):
    """A frame consumer. ``open``, ``send`` and ``close`` are all called on the output's own thread."""

    name: str

    def open(self) -> None:
        """Acquire resources; raise OutputUnavailable if this output can never work here."""

    def send(self, frame: PublishedFrame) -> None:
        """Deliver one frame; raise on failure (the runner counts it and retries with backoff)."""

    def close(self) -> None:
        """Release resources; must be safe to call after a failed ``open``."""
