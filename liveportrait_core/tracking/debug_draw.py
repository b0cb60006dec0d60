"""Draw what the tracker sees onto a frame: landmarks, driving crop box, pose and ratios (preview overlay)."""
from __future__ import annotations

import cv2
import numpy as np

from liveportrait_core.tracking import landmarks as lm
from liveportrait_core.tracking.observation import FaceObservation

_GREEN, _YELLOW, _RED, _CYAN, _WHITE = (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 255, 0), (255, 255, 255)


def draw_observation(image_bgr: np.ndarray, obs: FaceObservation, *, every_nth_landmark: int = 1,
                     copy: bool = True, text_top: int = 0) -> np.ndarray:
    """The frame with the observation drawn on it (a copy unless ``copy`` is False); the text lines start
    ``text_top`` pixels lower (clear of a band the caller draws across the top)."""
    out = image_bgr.copy() if copy else image_bgr
    scale = max(out.shape[:2]) / 720.0
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.5 * max(scale, 0.6), max(1, round(scale))
    if not obs.found or obs.landmarks is None:
        _text(out, f"no face ({obs.lost_for_s:.1f} s)", (10, text_top + int(24 * max(scale, 0.6))), font, fs,
              _RED, th)
        return out
    pts = obs.landmarks
    for x, y in pts[::max(1, every_nth_landmark)]:
        cv2.circle(out, (int(x), int(y)), max(1, th), _GREEN, -1, cv2.LINE_AA)
    for eye in (lm.EYE_IMAGE_LEFT, lm.EYE_IMAGE_RIGHT):
        _line(out, pts, eye[0], eye[1], _CYAN, th)
        _line(out, pts, eye[2], eye[3], _YELLOW, th)
    _line(out, pts, *lm.MOUTH_CORNERS, color=_CYAN, th=th)
    _line(out, pts, *lm.INNER_LIP, color=_YELLOW, th=th)
    if obs.crop is not None:
        corners = obs.crop.to_image(np.array([[0, 0], [obs.crop.dsize, 0], [obs.crop.dsize, obs.crop.dsize],
                                              [0, obs.crop.dsize]], np.float32))
        cv2.polylines(out, [corners.astype(np.int32)], True, _YELLOW, th, cv2.LINE_AA)
    lines = [f"pitch {obs.pitch:+5.1f}  yaw {obs.yaw:+5.1f}  roll {obs.roll:+5.1f}",
             f"eyes {obs.eye_open[0]:.2f} {obs.eye_open[1]:.2f}  mouth {obs.mouth_open:.2f}",
             f"conf {obs.confidence:.2f}  faces {obs.faces_in_frame}  "
             + ("calibrated" if obs.calibrated else "not calibrated")]
    match = "" if obs.mouth_match is None else f" (match {obs.mouth_match:.2f})"
    lines.append(f"mouth visible{match}" if obs.mouth_visible else f"mouth hidden: {obs.mouth_hidden}{match}")
    y = text_top + int(24 * max(scale, 0.6))
    for text in lines:
        _text(out, text, (10, y), font, fs, _WHITE if not text.startswith("mouth hidden") else _RED, th)
        y += int(22 * max(scale, 0.6))
    return out


def _line(img: np.ndarray, pts: np.ndarray, a: int, b: int, color: tuple[int, int, int], th: int) -> None:
    cv2.line(img, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), color, th, cv2.LINE_AA)


def _text(img, text, org, font, fs, color, th) -> None:
    cv2.putText(img, text, org, font, fs, (0, 0, 0), th + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, font, fs, color, th, cv2.LINE_AA)
