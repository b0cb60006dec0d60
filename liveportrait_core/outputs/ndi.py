"""NDI sender through cyndilib (BGRA with alpha; OBS receives it with the DistroAV plugin).

The sender is created for the frame size and recreated when the size changes (a character switch),
because an NDI video frame has a fixed resolution once attached to its sender.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

from liveportrait_core.outputs.base import OutputUnavailable, PublishedFrame

_log = logging.getLogger(__name__)


class NdiOutput:
    """Sends frames as the NDI source ``<host> (<sender_name>)``."""

    def __init__(self, sender_name: str = "LivePortrait", fps: float = 60.0, alpha: bool = True,
                 name: str = "ndi") -> None:
        self.name = name
        self.sender_name = sender_name
        self.fps = fps
        self.alpha = alpha
        self._mods: Any = None
        self._sender: Any = None
        self._size: tuple[int, int] | None = None

    def open(self) -> None:
        try:
            from cyndilib.sender import Sender
            from cyndilib.video_frame import VideoSendFrame
            from cyndilib.wrapper.ndi_structs import FourCC
        except ImportError as e:
            raise OutputUnavailable(f"NDI needs the cyndilib package (pip install cyndilib): {e}") from None
        self._mods = (Sender, VideoSendFrame, FourCC)

    def _create(self, w: int, h: int) -> None:
        Sender, VideoSendFrame, FourCC = self._mods
        self._release()
        vf = VideoSendFrame()
        vf.set_resolution(w, h)
        vf.set_fourcc(FourCC.BGRA if self.alpha else FourCC.BGRX)
        vf.set_frame_rate(Fraction(self.fps).limit_denominator(1001))
        sender = Sender(self.sender_name, clock_video=False)  # the engine paces frames, not NDI
        sender.set_video_frame(vf)
        sender.open()
        self._sender, self._size = sender, (w, h)
        _log.info("NDI sender '%s' open at %dx%d", self.sender_name, w, h)

    def send(self, frame: PublishedFrame) -> None:
        if self._mods is None:
            raise RuntimeError("NDI output used before open()")
        if self._size != (frame.width, frame.height):
            self._create(frame.width, frame.height)
        # ravel() of a C-contiguous array is a view: no copy on the way to NDI.
        if not self._sender.write_video(frame.bgra.ravel()):
            raise RuntimeError("NDI write_video returned False")

    def _release(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close()
            finally:
                self._sender, self._size = None, None

    def close(self) -> None:
        self._release()
