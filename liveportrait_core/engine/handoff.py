"""Latest-value hand-off between two pipeline threads.

A live pipeline must never queue: if inference is slower than the camera, the frame it should
work on next is the newest one, not the oldest. ``LatestValue`` holds one item; ``put`` replaces
an unconsumed item (and counts it as dropped), ``get`` waits for a new item. For offline work
(a video file processed as fast as possible into a recording) the same class runs ``lossless``:
``put`` then waits for the slot to be free instead of dropping, so every frame reaches the end.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class EndOfStream:
    """Put after the last item of a finite source; each stage passes it on and then finishes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM = EndOfStream()


class LatestValue(Generic[T]):
    """A one-slot mailbox: ``put`` replaces (or, lossless, waits), ``get`` waits with a timeout."""

    def __init__(self, name: str = "", *, lossless: bool = False,
                 counts: Callable[[T], bool] | None = None) -> None:
        self.name = name
        self.lossless = lossless
        #: which replaced items count as dropped (default: all); e.g. idle frames made while the
        #: camera is away are not input a user lost, so the engine does not count them
        self._counts = counts
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.puts = 0  #: items offered
        self.dropped = 0  #: items replaced before anyone took them

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Offer ``item``. Lossy: always stored at once. Lossless: waits up to ``timeout`` for the
        slot to empty and returns False (item not stored) if it did not, or if the hand-off closed."""
        with self._cond:
            if self._closed:
                return False
            if self.lossless:
                if not self._cond.wait_for(lambda: not self._full or self._closed, timeout):
                    return False
                if self._closed:
                    return False
            elif self._full and (self._counts is None or self._counts(self._item)):
                self.dropped += 1
            self._item = item
            self._full = True
            self.puts += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The newest item not yet taken, waiting up to ``timeout`` s; None on timeout or when closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until the waiting item (if any) was taken, or the hand-off closed; True if empty and open.
        Lets a lossy producer hand on its last item (end of stream) without replacing the one before."""
        with self._cond:
            self._cond.wait_for(lambda: not self._full or self._closed, timeout)
            return not self._full and not self._closed

    def clear(self) -> None:
        """Forget a waiting item (not counted as dropped), e.g. when its producer restarts."""
        with self._cond:
            self._item, self._full = None, False
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiter; later ``put`` and ``get`` return at once (False / None)."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (f"LatestValue({self.name!r}, lossless={self.lossless}, full={self._full}, "
                f"puts={self.puts}, dropped={self.dropped})")
