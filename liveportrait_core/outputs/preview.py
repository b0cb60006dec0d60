"""A preview window (OpenCV): the character over a checkerboard, an FPS overlay, and the tracker's
debug view (landmarks on the camera frame) toggled with the D key."""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable

import numpy as np

from liveportrait_core.outputs.base import OutputUnavailable, PublishedFrame

KEY_HELP = "D: tracker debug view   F: FPS overlay   Q/Esc: quit"


def _checkerboard(h: int, w: int, cell: int = 16) -> np.ndarray:
    yy, xx = np.indices((h, w))
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, 200, 150).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def _draw_tracking(image: np.ndarray, observation: object) -> np.ndarray:
    """The tracker's own debug drawing (landmarks, crop box, pose, ratios); the plain frame when the
    observation is not the tracker's (nothing to draw)."""
    from liveportrait_core.tracking.debug_draw import draw_observation
    from liveportrait_core.tracking.observation import FaceObservation

    if isinstance(observation, FaceObservation):
        return draw_observation(image, observation, every_nth_landmark=2)
    return image


class PreviewWindow:
    """Shows frames in a window. ``on_key(key)`` gets every other key press (e.g. the CLI maps C to
    calibrate and 1-9 to characters); ``on_quit()`` is called on Q, Esc or when the window is closed."""

    def __init__(self, title: str = "LivePortrait preview", name: str = "preview",
                 on_key: Callable[[str], None] | None = None, on_quit: Callable[[], None] | None = None) -> None:
        self.name = name
        self.title = title
        self.on_key = on_key
        self.on_quit = on_quit
        self.show_fps = True
        self.show_debug = False
        self._bg: np.ndarray | None = None
        self._last_ts = 0.0
        self._fps = 0.0
        self._shown = False

    def open(self) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OutputUnavailable("no display (DISPLAY is not set); the preview window needs a desktop session")
        if sys.platform == "darwin" and threading.current_thread() is not threading.main_thread():
            raise OutputUnavailable("on macOS a window can only be opened from the main thread; "
                                    "use the OBS source or NDI to watch the output")
        if "obspython" in sys.modules and not sys.platform.startswith("win"):
            # OpenCV's wheels bring their own Qt on Linux/macOS, which clashes with OBS's Qt in one process.
            raise OutputUnavailable("the preview window is not available inside OBS on this OS; "
                                    "the OBS source already shows the output")
        import cv2

        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise OutputUnavailable(f"OpenCV cannot open a window here ({e}); install opencv-python, "
                                    "not the headless build") from None
        self._shown = False

    def compose(self, frame: PublishedFrame) -> np.ndarray:
        """The BGR image the window shows for ``frame`` (separate from drawing, so it can be tested)."""
        import cv2

        bgra = frame.bgra
        h, w = bgra.shape[:2]
        if self._bg is None or self._bg.shape[:2] != (h, w):
            self._bg = _checkerboard(h, w)
        weight = bgra[:, :, 3].astype(np.float32) * (1.0 / 255.0)
        image = cv2.blendLinear(bgra[:, :, :3], self._bg, weight, 1.0 - weight)
        if self.show_debug and frame.source_bgr is not None:
            dbg = _draw_tracking(frame.source_bgr, frame.observation)
            scale = h / dbg.shape[0]
            dbg = cv2.resize(dbg, (max(1, int(dbg.shape[1] * scale)), h))
            image = np.hstack([dbg, image])
        if self.show_fps:
            dt = frame.publish_ts - self._last_ts if self._last_ts else 0.0
            if dt > 0:
                self._fps = 0.9 * self._fps + 0.1 * (1.0 / dt) if self._fps else 1.0 / dt
            self._last_ts = frame.publish_ts
            text = f"{self._fps:5.1f} fps  {frame.latency_s * 1e3:4.0f} ms  #{frame.index}"
            cv2.putText(image, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        return image

    def handle_key(self, key: int) -> None:
        if key < 0:
            return
        ch = chr(key & 0xFF).lower()
        if ch == "d":
            self.show_debug = not self.show_debug
        elif ch == "f":
            self.show_fps = not self.show_fps
        elif ch == "q" or key & 0xFF == 27:
            if self.on_quit:
                self.on_quit()
        elif self.on_key:
            self.on_key(ch)

    def send(self, frame: PublishedFrame) -> None:
        import cv2

        cv2.imshow(self.title, self.compose(frame))
        self.handle_key(cv2.waitKey(1))
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1 and self.on_quit:
            self.on_quit()  # the user closed the window
        self._shown = True

    def close(self) -> None:
        try:
            import cv2

            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except Exception:  # noqa: BLE001 - the window may never have opened
            pass
