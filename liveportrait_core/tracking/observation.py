"""``FaceObservation``: what the tracking stage tells the animation stage about one frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveportrait_core.driving.crop import CropTransform


@dataclass(frozen=True)
class FaceObservation:
    """One frame's face, or the news that there is none.

    Angles are degrees (``landmarks.head_pose_deg`` says which way is positive); ratios are on the
    official 203-point range (``eye_open``/``mouth_open``) so the official retargeting networks can
    use them, with MediaPipe's own values beside them (``*_raw``).
    """

    found: bool
    timestamp: float  #: the frame's time on the session's clock (``capture.clock``: wall or media time)
    image_size: tuple[int, int]  #: (width, height) of the frame
    landmarks: np.ndarray | None = None  #: 478×2 float32 pixels (smoothed when smoothing is on)
    landmarks_raw: np.ndarray | None = None  #: 478×2 float32 pixels as MediaPipe gave them
    confidence: float = 0.0  #: detector score when this face was (re)acquired, 0..1
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0
    eye_open: tuple[float, float] = (0.0, 0.0)  #: (image-left, image-right) eye, official range
    mouth_open: float = 0.0  #: official range
    eye_open_raw: tuple[float, float] = (0.0, 0.0)
    mouth_open_raw: float = 0.0
    crop: CropTransform | None = None  #: the (smoothed) driving crop, 512² crop space
    lost_for_s: float = 0.0  #: seconds since a face was last seen (0 while found)
    calibrate_now: bool = False  #: this frame is the neutral reference: store its motion
    calibrated: bool = False  #: a neutral reference has been taken
    faces_in_frame: int = 0
    #: the found face's mouth is really seen (``tracking/mouth_visibility.py``): False when it is covered, out of
    #: frame, turned down or too dark (the voice's ``fallback`` then drives it); False while no face is found
    mouth_visible: bool = True
    mouth_hidden: str = ""  #: why it is hidden ("covered", "out of frame", "looking down", "too dark"), else ""
    mouth_match: float | None = None  #: the lower face's similarity to the neutral reference, 0..1 (None: none)
