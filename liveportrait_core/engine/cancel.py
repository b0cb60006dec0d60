"""``FrameCancelled``: how a stage gives up the work in hand when the engine stops.

The pipeline raises it and the engine catches it (the backend passes it on as part of its animator
interface). It lives here, below all three, so that none of them imports another for it.
"""
from __future__ import annotations


class FrameCancelled(Exception):
    """An animator gave up a frame (or a start) because the engine is stopping (checked between the
    networks and after loading them, so that a stop does not wait for seconds of CPU work)."""
