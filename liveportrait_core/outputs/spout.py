"""Spout2 sender (Windows) through SpoutGL: the GPU-shared texture OBS's "Spout2 Capture" reads.

Spout needs a current OpenGL context on the sending thread; ``createOpenGL()`` makes a hidden one,
and ``open``/``send``/``close`` all run on the output's own thread (see outputs/runner.py).
``sendImage`` is called with positional arguments (buffer, width, height, GL format, invert, host
FBO): SpoutGL 0.1.1's Python names for them are misleading (see docs/ENGINE.md).
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from liveportrait_core.outputs.base import OutputUnavailable, PublishedFrame

_log = logging.getLogger(__name__)

GL_BGRA = 0x80E1  #: GL_BGRA(_EXT): our frames' byte order, no swizzle needed


class SpoutOutput:
    """Shares frames as the Spout sender ``sender_name``."""

    def __init__(self, sender_name: str = "LivePortrait", name: str = "spout") -> None:
        self.name = name
        self.sender_name = sender_name
        self._sender: Any = None

    def open(self) -> None:
        if not sys.platform.startswith("win"):
            raise OutputUnavailable("Spout2 works on Windows only; use NDI (outputs.ndi) on this OS")
        try:
            import SpoutGL  # type: ignore[import-not-found]
        except ImportError as e:
            raise OutputUnavailable(f"Spout2 needs the SpoutGL package (pip install SpoutGL): {e}") from None
        sender = SpoutGL.SpoutSender()
        sender.createOpenGL()  # hidden GL context, current on this (the sending) thread
        sender.setSenderName(self.sender_name)
        self._sender = sender
        _log.info("Spout2 sender '%s' open", self.sender_name)

    def send(self, frame: PublishedFrame) -> None:
        if self._sender is None:
            raise RuntimeError("Spout output used before open()")
        if not self._sender.sendImage(frame.bgra, frame.width, frame.height, GL_BGRA, False, 0):
            raise RuntimeError("Spout sendImage returned False (no OpenGL/DirectX interop on this GPU?)")
        self._sender.setFrameSync(self.sender_name)

    def close(self) -> None:
        s, self._sender = self._sender, None
        if s is not None:
            try:
                s.releaseSender()
            finally:
                s.closeOpenGL()
