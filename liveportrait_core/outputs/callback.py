"""In-process frame callbacks: how the OBS script's source (and anything else in-process) gets frames."""
from __future__ import annotations

import itertools
import logging
import threading
from typing import Callable

from liveportrait_core.outputs.base import PublishedFrame

_log = logging.getLogger(__name__)

FrameCallback = Callable[[PublishedFrame], None]


class CallbackOutput:
    """Calls every registered function with each frame, on this output's thread.

    A callback that raises is logged (rate-limited) and kept: the next frame may well succeed, and
    the runner must not treat one bad subscriber as the output failing for the others.
    """

    def __init__(self, name: str = "obs_source") -> None:
        self.name = name
        self._callbacks: dict[int, FrameCallback] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.errors = 0

    def add(self, fn: FrameCallback) -> int:
        with self._lock:
            handle = next(self._ids)
            self._callbacks[handle] = fn
            return handle

    def remove(self, handle: int) -> bool:
        with self._lock:
            return self._callbacks.pop(handle, None) is not None

    def open(self) -> None:
        pass

    def send(self, frame: PublishedFrame) -> None:
        with self._lock:
            callbacks = list(self._callbacks.values())
        for fn in callbacks:
            try:
                fn(frame)
            except Exception:  # noqa: BLE001
                self.errors += 1
                if self.errors <= 3 or self.errors % 100 == 0:
                    _log.exception("frame callback %r failed (%d so far)", fn, self.errors)

    def close(self) -> None:
        pass
