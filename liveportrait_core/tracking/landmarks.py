"""What the tracker reads off MediaPipe's 478 landmarks: crop anchors, eye/mouth ratios, head pose.

Pure numpy/OpenCV on (478, 2) pixel arrays, so it is testable without MediaPipe.

Eye order everywhere is (image-left eye, image-right eye): the official 106/203-point layouts list
the eye on the image's left first, and so do we (MediaPipe 33/133 is that eye in an unmirrored
camera image, the subject's right eye).
"""
from __future__ import annotations

import math

import numpy as np

from liveportrait_core.driving import crop

N_LANDMARKS = 478

#: (outer corner, inner corner, upper lid middle, lower lid middle) per eye.
EYE_IMAGE_LEFT = (33, 133, 159, 145)
EYE_IMAGE_RIGHT = (263, 362, 386, 374)
#: Mouth corners (outer lip) and the middle of the inner upper/lower lip.
MOUTH_CORNERS = (61, 291)
INNER_LIP = (13, 14)
NOSE_TIP = 1
CHIN = 152
IRIS_CENTRES = (468, 473)
#: Points of the head-pose estimate: outer eye corners, inner eye corners, chin.
_POSE_POINTS = (EYE_IMAGE_LEFT[0], EYE_IMAGE_RIGHT[0], EYE_IMAGE_LEFT[1], EYE_IMAGE_RIGHT[1], CHIN)

_FACE_OVAL_BELOW_BROWS = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379,
                          365, 397, 288, 361, 323, 454, 356)
_BROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
_EYES = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
         263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
_NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 129, 358, 64, 294)
_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
         78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
#: The MediaPipe counterpart of the official 106-point set that sizes the crop box: jaw contour from
#: temple to temple, brows, eyes, nose and lips. The forehead part of MediaPipe's face oval (above
#: the brows) is left out because the 106-point layout has no points there; including it would make
#: the box taller and shift it up compared with the official crop.
CROP_POINTS = np.array(sorted(set(_FACE_OVAL_BELOW_BROWS + _BROWS + _EYES + _NOSE + _LIPS)), np.int64)

# Calibration of the MediaPipe ratios to the official 203-point ratios (docs/TRACKING.md): a linear
# map through two anchors measured on real footage. Eyes: MediaPipe's lid points never meet, so a
# closed eye reads ~0.04 where the official landmarks give ~0.01; an open eye reads ~0.31 (median
# over d0/d3/d10/d13/d14) where the official one is ~0.30 (median over d1/d2/d5). The mouth is
# measured alike in both layouts (inner-lip gap over outer corners) and the ranges agree (closed
# ~0.002, wide open ~0.6–0.7), so it is passed through unchanged.
EYE_RAW_CLOSED, EYE_RAW_OPEN = 0.04, 0.31
EYE_OFFICIAL_CLOSED, EYE_OFFICIAL_OPEN = 0.01, 0.30
MOUTH_GAIN = 1.0

def eye_lip_centres(lmk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop anchors like the official ones: the mean of the two eye centres (each the mean of its two
    corners and two lid middles, like the four official contour points per eye; never the iris,
    which moves with the gaze) and the midpoint of the mouth corners (official 106-pt 52/61)."""
    eyes = lmk[list(EYE_IMAGE_LEFT + EYE_IMAGE_RIGHT)]
    mouth = lmk[list(MOUTH_CORNERS)]
    return eyes.mean(axis=0), mouth.mean(axis=0)


def source_crop_transform(lmk: np.ndarray, **kwargs) -> crop.CropTransform:
    """The official source crop (rotated, ×2.3) from MediaPipe landmarks."""
    eye, lip = eye_lip_centres(lmk)
    return crop.source_crop_transform(eye, lip, lmk[CROP_POINTS], **kwargs)


def driving_rect(lmk: np.ndarray, scale: float = crop.DRIVING_SCALE,
                 vy_ratio: float = crop.DRIVING_VY_RATIO) -> crop.CropRect:
    """The official per-frame driving box (``parse_bbox_from_landmark``) from MediaPipe landmarks."""
    eye, lip = eye_lip_centres(lmk)
    return crop.rect_from_points(eye, lip, lmk[CROP_POINTS], scale=scale, vy_ratio=vy_ratio)


def _dist(lmk: np.ndarray, a: int, b: int) -> float:
    return float(math.hypot(*(lmk[a] - lmk[b])))


def eye_ratios_raw(lmk: np.ndarray) -> tuple[float, float]:
    """Lid-to-lid over corner-to-corner per eye (the official formula on MediaPipe points)."""
    out = []
    for outer, inner, upper, lower in (EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT):
        out.append(_dist(lmk, upper, lower) / (_dist(lmk, outer, inner) + 1e-6))
    return out[0], out[1]


def mouth_ratio_raw(lmk: np.ndarray) -> float:
    """Inner-lip opening over mouth width (the official formula on MediaPipe points)."""
    return _dist(lmk, *INNER_LIP) / (_dist(lmk, *MOUTH_CORNERS) + 1e-6)


def eye_ratio_official(raw: float) -> float:
    """A MediaPipe eye ratio mapped onto the official 203-point range (≥ 0)."""
    gain = (EYE_OFFICIAL_OPEN - EYE_OFFICIAL_CLOSED) / (EYE_RAW_OPEN - EYE_RAW_CLOSED)
    return max(0.0, EYE_OFFICIAL_CLOSED + (raw - EYE_RAW_CLOSED) * gain)


def mouth_ratio_official(raw: float) -> float:
    """A MediaPipe mouth ratio on the official range (the two agree; see the constants above)."""
    return max(0.0, raw * MOUTH_GAIN)


def roll_deg(lmk: np.ndarray) -> float:
    """In-plane head tilt from the outer eye corners, degrees; > 0 is clockwise in the image."""
    dx, dy = lmk[EYE_IMAGE_RIGHT[0]] - lmk[EYE_IMAGE_LEFT[0]]
    return math.degrees(math.atan2(float(dy), float(dx)))


def head_pose_deg(lmk: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees from MediaPipe's 3-D landmarks (x, y pixels; z, depth in the same
    scale, smaller is nearer). Pitch > 0: chin up; yaw > 0: face turned towards the image's right;
    roll > 0: clockwise in the image.

    The face's normal is the cross product of the across-the-eyes axis and the chin-to-eyes axis;
    pitch and yaw are its tilt away from the camera axis. For display and idle logic: neutral faces
    read within about ±7° of zero (camera height and face shape). A generic-model solvePnP was tried
    first and rejected: with six points it flips between solutions tens of degrees apart.
    """
    p = np.column_stack([lmk[list(_POSE_POINTS)], z[list(_POSE_POINTS)]]).astype(np.float64)
    across = p[1] - p[0]  # image-left outer eye corner → image-right outer eye corner
    up = p[:4].mean(axis=0) - p[4]  # chin → between the eyes
    normal = np.cross(across, up)  # points at the camera for a frontal face
    norm = float(np.linalg.norm(normal))
    if norm < 1e-9:
        return 0.0, 0.0, roll_deg(lmk)
    nx, ny, nz = normal / norm
    return -math.degrees(math.atan2(ny, -nz)), math.degrees(math.atan2(nx, -nz)), roll_deg(lmk)


def face_box(lmk: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and size (larger side) of the landmarks' axis-aligned box, pixels."""
    lo, hi = lmk.min(axis=0), lmk.max(axis=0)
    return (lo + hi) / 2, float(max(hi - lo))
