"""A driving clip made from the bundled photo, for the demo on a machine without a webcam.

The astronaut's real face tilts, turns a little, nods and comes closer over a few seconds (an affine
motion of the photo, so the tracker sees a real face move; expressions do not change). It is written once
into the user cache folder and reused.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from liveportrait_core import paths

FPS = 25
SECONDS = 8
SIZE = (640, 480)  #: width, height: a webcam-like frame
CLIP_NAME = "demo-driving-v1.avi"


def _pose(t: float) -> tuple[float, float, float, float]:
    """(roll degrees, x shift, y shift, zoom) at ``t`` seconds: smooth, looping motion."""
    w = 2.0 * math.pi * t / SECONDS
    return 12.0 * math.sin(w), 40.0 * math.sin(2 * w), 15.0 * math.sin(3 * w), 1.0 + 0.08 * math.sin(w + 1.0)


def render_frame(photo_bgr: np.ndarray, t: float) -> np.ndarray:
    """One frame of the clip: the photo moved as ``_pose(t)`` says, centred in a 640x480 frame."""
    roll, dx, dy, zoom = _pose(t)
    h, w = photo_bgr.shape[:2]
    fit = min(SIZE[0] / w, SIZE[1] / h) * zoom
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), roll, fit)
    m[0, 2] += SIZE[0] / 2.0 - w / 2.0 + dx
    m[1, 2] += SIZE[1] / 2.0 - h / 2.0 + dy
    return cv2.warpAffine(photo_bgr, m, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def demo_clip(photo: Path | None = None, folder: Path | None = None) -> Path:
    """The clip's path, writing it first if it is not there yet (a second or two, once)."""
    folder = folder or paths.user_cache_dir()
    target = folder / CLIP_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    photo = photo or paths.DEFAULT_CHARACTERS_DIR / "astronaut.png"
    img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"the bundled photo {photo} is missing or unreadable; restore it with git")
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part.avi")
    writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    if not writer.isOpened():
        raise OSError(f"cannot write the demo clip to {part}")
    try:
        for i in range(FPS * SECONDS):
            writer.write(render_frame(img, i / FPS))
    finally:
        writer.release()
    part.replace(target)  # never leave a half-written clip under the final name
    return target
