"""Finished frames leaving the device: one download each, into pinned memory, off the networks' way.

Why: when the inference stage waits for each frame's download (``.cpu()``) the GPU idles until the next
frame's networks are queued. Here the frame is pasted on the device (``driving/paste_device.py``) into one
of two device buffers; a second CUDA stream copies it into a pinned host buffer (``non_blocking``) once
the paste is done, and a CUDA event says when the bytes are there. The inference stage hands the
``PendingFrame`` on at once and starts the next frame; the publish stage, which takes it through the
usual latest-value hand-off, waits for the event (``result()``), so the frame rate is bound by the
networks alone. While frame N goes down, frame N+1 writes the other device buffer; a buffer is reused
only after the GPU has finished reading it (the compute stream waits for that download's event, on
the GPU, not on the host).

Pinned host buffers come from PyTorch's caching host allocator, one per frame: a frame's array stays
valid for as long as an output holds it, and a freed one is reused once its copy has finished (no
``cudaHostAlloc`` per frame). On the CPU device (tests, ``device_paste`` forced) the same code runs
without streams or events: the "download" is a copy out of the reused buffer (on another device such as
Apple MPS, a plain synchronous download).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

#: device buffers a frame is pasted into, used in turn: one being written while the other goes down
BUFFERS = 2


class PendingFrame:
    """A BGRA frame on its way to the host; ``result()`` gives the array once its download has finished.

    ``finish`` (e.g. fitting the frame to the output size) runs once, on the thread that asks for the
    result. ``started`` is when the frame's work began (``time.perf_counter``).
    """

    __slots__ = ("_host", "_event", "_finish", "_array", "started")

    def __init__(self, host: torch.Tensor, event: "torch.cuda.Event | None" = None,
                 finish: Callable[[np.ndarray], np.ndarray] | None = None, started: float | None = None) -> None:
        self._host = host
        self._event = event
        self._finish = finish
        self._array: np.ndarray | None = None
        self.started = time.perf_counter() if started is None else started

    def ready(self) -> bool:
        """True when ``result()`` would not wait for the device."""
        return self._array is not None or self._event is None or self._event.query()

    def result(self) -> np.ndarray:
        """The (H, W, 4) uint8 frame (waits for the download the first time)."""
        if self._array is None:
            if self._event is not None:
                self._event.synchronize()
            array = self._host.numpy()  # shares the pinned buffer, which stays alive with the array
            self._array = self._finish(array) if self._finish is not None else array
            self._host = self._event = self._finish = None
        return self._array


class FrameDownloads:
    """The device frame buffers of the live character and the downloads of the frames written into them."""

    def __init__(self, device: torch.device | str, buffers: int = BUFFERS) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._count = buffers
        self._buffers: list[torch.Tensor] = []
        self._read: list["torch.cuda.Event | None"] = []  # the download that last read each buffer
        self._next = 0
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None

    def reset(self, new_frame: Callable[[], torch.Tensor]) -> None:
        """New buffers for a new character (``new_frame`` makes one holding the character)."""
        self._buffers = [new_frame() for _ in range(self._count)]
        self._read = [None] * self._count
        self._next = 0

    def clear(self) -> None:
        """Forget the buffers (the animator closed; downloads in flight finish on their own)."""
        self._buffers, self._read, self._next = [], [], 0

    def next_buffer(self) -> torch.Tensor:
        """The buffer to paste the next frame into, once the GPU has finished downloading it (ordered on
        the compute stream: the host does not wait)."""
        if not self._buffers:
            raise RuntimeError("no frame buffers: reset() them for the character first")
        k = self._next
        event = self._read[k]
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
        return self._buffers[k]

    def download(self, frame: torch.Tensor, finish: Callable[[np.ndarray], np.ndarray] | None = None,
                 started: float | None = None) -> PendingFrame:
        """Start copying ``frame`` (the buffer ``next_buffer`` gave, written on the compute stream) to the host."""
        k = self._next
        self._next = (k + 1) % self._count
        if not self.cuda:  # the CPU (a copy out of the reused buffer) or another device (a plain download)
            return PendingFrame(frame.to("cpu", copy=True), None, finish, started)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            self._stream.wait_stream(compute)  # the paste (and everything before it) has been queued there
            host = torch.empty(frame.shape, dtype=frame.dtype, pin_memory=True)
            host.copy_(frame, non_blocking=True)
            frame.record_stream(self._stream)  # a buffer freed on a character switch is not reused mid-copy
            done = torch.cuda.Event()
            done.record(self._stream)
        self._read[k] = done
        return PendingFrame(host, done, finish, started)
