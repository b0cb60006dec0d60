"""Landmark maths, ratio calibration, pose conventions and calibration logic (no MediaPipe needed)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from liveportrait_core.driving import crop
from liveportrait_core.tracking import landmarks as lm
from liveportrait_core.tracking.calibration import Calibration
from liveportrait_core.tracking.mesh import _landmarks_array


#: a few 3-D face points (x right, y down, z away from the camera; frontal, chin level with the eyes in depth)
_FACE3D = {lm.EYE_IMAGE_LEFT[0]: (-45, -30, 10), lm.EYE_IMAGE_RIGHT[0]: (45, -30, 10),
           lm.EYE_IMAGE_LEFT[1]: (-15, -30, 10), lm.EYE_IMAGE_RIGHT[1]: (15, -30, 10), lm.CHIN: (0, 70, 10),
           lm.NOSE_TIP: (0, 0, -30)}


def _synthetic_face(pitch=0.0, yaw=0.0, roll=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(478×2 landmarks, 478 depths) of the points above under a known pose, orthographic, at (320, 240)."""
    rx = cv2.Rodrigues(np.array([math.radians(-pitch), 0.0, 0.0]))[0]  # chin up = chin towards the camera
    ry = cv2.Rodrigues(np.array([0.0, math.radians(-yaw), 0.0]))[0]
    rz = cv2.Rodrigues(np.array([0.0, 0.0, math.radians(roll)]))[0]
    r = rz @ ry @ rx
    xy = np.full((lm.N_LANDMARKS, 2), (320.0, 240.0), np.float32)
    z = np.zeros(lm.N_LANDMARKS, np.float32)
    for idx, p in _FACE3D.items():
        q = r @ np.array(p, np.float64)
        xy[idx], z[idx] = q[:2] + (320, 240), q[2]
    return xy, z


@pytest.mark.parametrize("pitch, yaw, roll", [(0, 0, 0), (15, 0, 0), (-15, 0, 0), (0, 20, 0), (0, -20, 0),
                                              (10, -10, 0), (0, 0, 20)])
def test_head_pose_signs_and_values(pitch, yaw, roll):
    p, y, r = lm.head_pose_deg(*_synthetic_face(pitch, yaw, roll))
    assert p == pytest.approx(pitch, abs=1.0)
    assert y == pytest.approx(yaw, abs=1.0)
    assert r == pytest.approx(roll, abs=1.0)


def test_pose_conventions_match_the_picture():
    xy, _ = _synthetic_face(yaw=25)
    assert xy[lm.NOSE_TIP][0] > 320  # yaw > 0: the nose points to the image's right
    xy, z = _synthetic_face(pitch=20)
    assert z[lm.CHIN] < 10 and xy[lm.CHIN][1] < 240 + 70  # pitch > 0: chin up, towards the camera


@pytest.mark.parametrize("angle", [-30, -15, 0, 15, 30])
def test_roll_from_eye_line(angle):
    pts = np.zeros((lm.N_LANDMARKS, 2), np.float32)
    a = math.radians(angle)
    pts[lm.EYE_IMAGE_LEFT[0]] = (100, 100)
    pts[lm.EYE_IMAGE_RIGHT[0]] = (100 + 80 * math.cos(a), 100 + 80 * math.sin(a))
    assert lm.roll_deg(pts) == pytest.approx(angle, abs=1e-3)


def test_ratio_formulas_and_official_mapping():
    pts = np.zeros((lm.N_LANDMARKS, 2), np.float32)
    for (outer, inner, up, low), x0 in ((lm.EYE_IMAGE_LEFT, 0), (lm.EYE_IMAGE_RIGHT, 100)):
        pts[outer], pts[inner] = (x0, 50), (x0 + 40, 50)
        pts[up], pts[low] = (x0 + 20, 44), (x0 + 20, 56)
    pts[lm.MOUTH_CORNERS[0]], pts[lm.MOUTH_CORNERS[1]] = (20, 100), (80, 100)
    pts[lm.INNER_LIP[0]], pts[lm.INNER_LIP[1]] = (50, 95), (50, 107)
    left, right = lm.eye_ratios_raw(pts)
    assert left == pytest.approx(12 / 40, rel=1e-4) and right == pytest.approx(12 / 40, rel=1e-4)
    assert lm.mouth_ratio_raw(pts) == pytest.approx(12 / 60, rel=1e-4)
    # the measured calibration (docs/TRACKING.md): MediaPipe's open eye 0.31 -> official 0.30, its "closed"
    # 0.04 (the lids never meet) -> official 0.01, linear between, never negative; the mouth passes through
    assert lm.eye_ratio_official(0.31) == pytest.approx(0.30)
    assert lm.eye_ratio_official(0.04) == pytest.approx(0.01)
    assert lm.eye_ratio_official(0.175) == pytest.approx(0.155)
    assert lm.eye_ratio_official(0.02) == 0.0 and lm.eye_ratio_official(0.0) == 0.0
    assert lm.mouth_ratio_official(0.25) == pytest.approx(0.25)


def test_crop_points_cover_the_face_but_not_the_forehead_top():
    assert 152 in lm.CROP_POINTS and 10 not in lm.CROP_POINTS  # chin in, top of forehead out
    assert len(set(lm.CROP_POINTS.tolist())) == len(lm.CROP_POINTS)
    assert lm.CROP_POINTS.max() < 468  # no iris points: the box must not move with the gaze


def test_driving_rect_follows_shift_and_scale():
    rng = np.random.default_rng(1)
    pts = (rng.random((lm.N_LANDMARKS, 2)) * 100 + 200).astype(np.float32)
    base = lm.driving_rect(pts)
    shifted = lm.driving_rect(pts + np.float32([30, -20]))
    assert np.allclose(shifted.centre - base.centre, [30, -20], atol=1e-3)
    assert shifted.size == pytest.approx(base.size, rel=1e-5)
    centre = pts.mean(axis=0)
    scaled = lm.driving_rect((pts - centre) * 1.5 + centre)
    assert scaled.size == pytest.approx(base.size * 1.5, rel=1e-4)


def test_landmark_bytes_parser_matches_the_slow_path():
    from mediapipe.framework.formats import landmark_pb2

    rng = np.random.default_rng(2)
    vals = rng.random((478, 3)).astype(np.float32)
    vals[0] = 0.0  # zeros are still serialised (proto2 optional fields that were set)
    msg = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in vals:
        msg.landmark.add(x=float(x), y=float(y), z=float(z))
    assert np.array_equal(_landmarks_array(msg), vals)
    msg.landmark[3].visibility = 0.5  # a different encoding falls back to the loop
    assert np.array_equal(_landmarks_array(msg), vals)


def _feed(cal: Calibration, t0: float, n: int, fps: float = 30.0, **kw) -> list[bool]:
    args = dict(centre=(320.0, 240.0), size=200.0, pitch=0.0, yaw=0.0, roll=0.0, eye_open=(0.3, 0.3))
    args.update(kw)
    return [cal.update(t0 + i / fps, True, **args) for i in range(n)]


def test_auto_calibration_after_a_steady_frontal_second():
    cal = Calibration(auto=True, after_s=1.0)
    fired = _feed(cal, 0.0, 45)
    assert fired.count(True) == 1 and fired.index(True) == 30  # at t = 1.0 s
    assert cal.ready
    assert not any(_feed(cal, 2.0, 60))  # only once


def test_no_auto_calibration_while_turned_moving_or_disabled():
    assert not any(_feed(Calibration(True, 0.5), 0.0, 60, yaw=30.0))
    assert not any(_feed(Calibration(True, 0.5), 0.0, 60, eye_open=(0.02, 0.02)))
    cal = Calibration(True, 0.5)
    moving = [cal.update(i / 30, True, centre=(320.0 + 10 * i, 240.0), size=200.0, eye_open=(0.3, 0.3))
              for i in range(60)]
    assert not any(moving)
    assert not any(_feed(Calibration(False, 0.5), 0.0, 60))


def test_manual_calibration_uses_the_next_frame_with_a_face():
    cal = Calibration(auto=False)
    cal.request()
    assert cal.update(0.0, False) is False  # no face: wait
    assert cal.update(0.1, True, yaw=40.0) is True  # on demand: taken even when not frontal
    assert cal.ready and cal.update(0.2, True) is False


def test_losing_the_face_restarts_the_steady_clock():
    cal = Calibration(True, 1.0)
    _feed(cal, 0.0, 20)
    cal.update(0.7, False)
    fired = _feed(cal, 0.8, 40)
    assert fired.index(True) == 30


def test_square_transform_is_the_official_unrotated_crop():
    rect = crop.CropRect(np.array([300.0, 200.0], np.float32), 150.0, 0.4)
    assert np.allclose(crop.crop_transform(rect, 512, rotate=False).M_o2c,
                       crop.square_transform(rect.centre, rect.size).M_o2c)
