"""The tracker on real driving videos: every frame tracked, a steady crop, loss and re-acquisition."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("mediapipe")

from liveportrait_core.settings import TrackingSettings  # noqa: E402
from liveportrait_core.tracking import FaceTracker  # noqa: E402
from liveportrait_core.tracking import landmarks as lm  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



def _frames(name: str, n: int) -> tuple[list[np.ndarray], float]:
    p = shared_path("testdata", "driving", name)
    cap = cv2.VideoCapture(str(p))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == n, f"{name}: could only read {len(frames)} frames"
    return frames, fps


def _jitter(boxes: list[np.ndarray]) -> np.ndarray:
    """Median frame-to-frame change of (centre x, centre y, size), pixels."""
    return np.median(np.abs(np.diff(np.array(boxes), axis=0)), axis=0)


def _boxes(tracker: FaceTracker, frames: list[np.ndarray], fps: float):
    raw, smooth, observations = [], [], []
    for i, f in enumerate(frames):
        obs = tracker.process(f, i / fps)
        observations.append(obs)
        if obs.found:
            r = lm.driving_rect(obs.landmarks_raw)
            raw.append(np.array([*r.centre, r.size]))
            smooth.append(np.array([*obs.crop.rect.centre, obs.crop.rect.size]))
    return raw, smooth, observations


@pytest.mark.parametrize("name, n", [("d0.mp4", 60), ("d3.mp4", 60), ("d10.mp4", 60), ("d13.mp4", 90),
                                     ("d14.mp4", 60)])
def test_face_is_tracked_in_every_frame(name, n):
    frames, fps = _frames(name, n)
    with FaceTracker(TrackingSettings(max_faces=1)) as t:
        observations = [t.process(f, i / fps) for i, f in enumerate(frames)]
        crop = t.driving_crop(frames[-1], observations[-1])
    assert all(o.found for o in observations)
    assert all(o.lost_for_s == 0.0 for o in observations)
    assert crop.shape == (256, 256, 3)
    # the driving crop holds the face: the eye/lip anchors land near the crop's centre column
    eye, lip = lm.eye_lip_centres(observations[-1].landmarks)
    inside = observations[-1].crop.to_crop(np.stack([eye, lip]))
    assert ((inside > 64) & (inside < 448)).all()


def test_webcam_video_crop_is_steadier_than_the_raw_box():
    frames, fps = _frames("d13.mp4", 90)  # man at a desk, mostly still
    with FaceTracker(TrackingSettings(max_faces=1)) as t:
        raw, smooth, _ = _boxes(t, frames, fps)
    jr, js = _jitter(raw), _jitter(smooth)
    assert (js[:2] < 0.7 * jr[:2]).all(), (jr, js)
    assert js[2] < jr[2]


def test_still_face_with_sensor_noise_gives_a_still_crop():
    p = ROOT / "characters" / "astronaut.png"
    img = cv2.imread(str(p), cv2.IMREAD_COLOR) if p.exists() else None
    if img is None:
        data = pytest.importorskip("skimage.data")
        img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(0)
    frames = [np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8) for _ in range(45)]
    with FaceTracker(TrackingSettings(max_faces=1)) as t:
        raw, smooth, _ = _boxes(t, frames, 30.0)
    jr, js = _jitter(raw), _jitter(smooth)
    assert (js < 0.3 * jr).all(), (jr, js)
    with FaceTracker(TrackingSettings(max_faces=1, smoothing=False)) as t:
        raw_off, smooth_off, _ = _boxes(t, frames, 30.0)
    assert np.allclose(np.array(raw_off), np.array(smooth_off), atol=1e-3)  # smoothing off: the raw box


def test_loss_is_reported_and_the_face_reacquired():
    frames, fps = _frames("d0.mp4", 20)
    blank = np.zeros_like(frames[0])
    seq = frames[:10] + [blank] * 15 + frames[10:20]
    with FaceTracker(TrackingSettings(max_faces=1)) as t:
        obs = [t.process(f, i / fps) for i, f in enumerate(seq)]
        idle = t.no_input(40 / fps)
    assert all(o.found for o in obs[:10]) and not any(o.found for o in obs[10:25])
    lost = [o.lost_for_s for o in obs[10:25]]
    assert lost[0] == pytest.approx(1 / fps) and lost[-1] == pytest.approx(15 / fps)
    assert all(b > a for a, b in zip(lost, lost[1:]))
    assert all(o.landmarks is None and o.crop is None for o in obs[10:25])  # nothing stale
    assert all(o.found and o.lost_for_s == 0.0 for o in obs[25:])
    # the re-acquired crop starts at the face, not gliding from where it was lost
    fresh = lm.driving_rect(obs[25].landmarks_raw)
    assert np.allclose(obs[25].crop.rect.centre, fresh.centre, atol=1e-3)
    assert not idle.found and idle.lost_for_s == pytest.approx(40 / fps - 34 / fps)


def test_auto_calibration_fires_once_on_a_steady_face():
    frames, fps = _frames("d13.mp4", 60)
    with FaceTracker(TrackingSettings(max_faces=1, calibrate_after_s=0.5)) as t:
        obs = [t.process(f, i / fps) for i, f in enumerate(frames)]
        assert sum(o.calibrate_now for o in obs) == 1
        first = next(i for i, o in enumerate(obs) if o.calibrate_now)
        assert first >= int(0.5 * fps)
        assert all(o.calibrated for o in obs[first:]) and not any(o.calibrated for o in obs[:first])
        t.calibrate()  # hotkey: the next frame becomes the reference
        assert t.process(frames[0], 61 / fps).calibrate_now


def test_update_settings_applies_smoothing_and_calibration_changes():
    frames, fps = _frames("d0.mp4", 3)
    with FaceTracker(TrackingSettings(max_faces=1)) as t:
        t.update_settings(TrackingSettings(max_faces=1, min_cutoff=0.2, auto_calibrate=False))
        assert t.calibration.auto is False
        assert all(t.process(f, i / fps).found for i, f in enumerate(frames))


def test_a_cut_restarts_the_filters_instead_of_gliding():
    """A face that moves more than half its size in one frame (a cut, a loop, someone else) is not
    glided to: MediaPipe's faces are fed directly, as the graph gives them after such a cut."""
    from liveportrait_core.tracking.mesh import MeshFace

    frames, fps = _frames("d0.mp4", 1)
    with FaceTracker(TrackingSettings(max_faces=1)) as t:
        face = t._mesh.process(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB))[0]
        size = lm.face_box(face.landmarks)[1]
        for i in range(3):
            t._observe(MeshFace(face.landmarks + np.float32(i), face.z, 0.9), i / fps, (512, 512), 1)
        small = t._observe(MeshFace(face.landmarks + np.float32(4), face.z, 0.9), 3 / fps, (512, 512), 1)
        assert not np.allclose(small.landmarks, small.landmarks_raw, atol=1e-3)  # ordinary motion: filtered
        cut = face.landmarks + np.float32([0.8 * size, 0])
        obs = t._observe(MeshFace(cut, face.z, 0.9), 4 / fps, (512, 512), 1)
    assert np.allclose(obs.landmarks, obs.landmarks_raw, atol=1e-3)
    assert np.allclose(obs.crop.rect.centre, lm.driving_rect(obs.landmarks_raw).centre, atol=1e-3)
