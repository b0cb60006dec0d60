"""``FaceTracker``: camera frame → ``FaceObservation`` and the 256×256 RGB driving crop.

Per frame: MediaPipe FaceMesh (tracking mode: the detector only runs when the face is lost or fewer
faces than ``max_faces`` are tracked), pick the face nearest the last position, One Euro filter the
landmarks, derive pose and ratios, build the official driving box (scale 2.2, vy −0.1, no rotation)
from the raw landmarks and One Euro filter the box (a live stand-in for the official offline average
box, docs/TRACKING.md), then cut the crop.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import cv2
import numpy as np

from liveportrait_core.driving import crop
from liveportrait_core import images
from liveportrait_core.driving.filters import OneEuroFilter, OneEuroParams
from liveportrait_core.settings import TrackingSettings
from liveportrait_core.tracking import landmarks as lm
from liveportrait_core.tracking.calibration import Calibration
from liveportrait_core.tracking.mesh import FaceMesh, MeshFace
from liveportrait_core.tracking.mouth_visibility import MouthCheck, MouthVisibility
from liveportrait_core.tracking.observation import FaceObservation

_log = logging.getLogger(__name__)

#: A face whose centre moves more than this many face sizes in one frame is a cut (video edit, loop,
#: another person): the filters restart there instead of gliding across the frame.
JUMP = 0.5


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Frames are BGR uint8; grayscale, BGRA or 16-bit frames are converted (alpha dropped)."""
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image
    return images.to_bgr_alpha(image, name="frame")[0]


class FaceTracker:
    """Tracks one face through a video stream. Not thread-safe: use it from one thread."""

    def __init__(self, settings: TrackingSettings | None = None, *, static_image_mode: bool = False) -> None:
        self.settings = settings or TrackingSettings()
        self.static_image_mode = static_image_mode
        self._mesh: FaceMesh | None = None
        self._mesh_key: tuple | None = None
        self.calibration = Calibration(self.settings.auto_calibrate, self.settings.calibrate_after_s)
        self.mouth = MouthVisibility(self.settings)  #: is the tracked mouth really seen (the voice fallback's cue)
        self._lmk_filter = OneEuroFilter(OneEuroParams.of(self.settings))
        self._box_filter = OneEuroFilter(OneEuroParams.of(self.settings))
        self._last_centre: np.ndarray | None = None  # kept through losses: re-acquire the nearest face
        self._seen_at: float | None = None  # when a face was last seen (kept through losses)
        self._have_face = False
        self._started: float | None = None
        self._confidence = 0.0
        self._build_mesh()

    # ------------------------------------------------------------------ engine interface
    def track(self, frame: Any) -> tuple[FaceObservation, np.ndarray | None]:
        """A ``capture.CapturedFrame`` → (observation, driving crop RGB 256² or None without a face)."""
        obs = self.process(frame.image_bgr, frame.timestamp)
        return obs, (self.driving_crop(frame.image_bgr, obs) if obs.found else None)

    def no_input(self, timestamp: float) -> FaceObservation:
        """The observation while the capture itself is gone: no face, lost since the last one seen."""
        return self._lost(timestamp, (0, 0), 0)

    def calibrate(self) -> None:
        """Take the neutral reference on the next frame with a face."""
        self.calibration.request()

    def update_settings(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.calibration.auto = settings.auto_calibrate
        self.calibration.after_s = settings.calibrate_after_s
        self.mouth.settings = settings
        self._apply_filter_params()
        self._build_mesh()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ per frame
    def process(self, image_bgr: np.ndarray, timestamp: float | None = None) -> FaceObservation:
        """Track the face in one BGR uint8 frame taken at ``timestamp`` (seconds, default: now)."""
        t = time.perf_counter() if timestamp is None else float(timestamp)
        if self._started is None:
            self._started = t
        image_bgr = as_bgr(image_bgr)
        h, w = image_bgr.shape[:2]
        if self._mesh is None:
            raise RuntimeError("FaceTracker is closed")
        faces = self._mesh.process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        face = self._choose(faces)
        if face is None:
            return self._lost(t, (w, h), 0)
        return self._observe(face, t, (w, h), len(faces), image_bgr)

    def driving_crop(self, image_bgr: np.ndarray, obs: FaceObservation) -> np.ndarray:
        """The 256² RGB network input: the official 512² crop, area-averaged to 256² (as the source)."""
        if obs.crop is None:
            raise ValueError("no driving crop: the observation has no face")
        crop512 = crop.warp_crop(as_bgr(image_bgr), obs.crop.M_o2c, obs.crop.dsize)
        return cv2.cvtColor(crop.to_network_size(crop512), cv2.COLOR_BGR2RGB)

    # ------------------------------------------------------------------ internals
    def _choose(self, faces: list[MeshFace]) -> MeshFace | None:
        """The face nearest the last tracked position (so it never jumps to someone else), else the largest."""
        if not faces:
            return None
        if len(faces) == 1:
            return faces[0]
        if self._last_centre is not None:
            return min(faces, key=lambda f: float(np.linalg.norm(lm.face_box(f.landmarks)[0] - self._last_centre)))
        return max(faces, key=lambda f: lm.face_box(f.landmarks)[1])

    def _observe(self, face: MeshFace, t: float, size: tuple[int, int], n_faces: int,
                 image_bgr: np.ndarray | None = None) -> FaceObservation:
        """The observation of ``face``; without ``image_bgr`` the mouth check is skipped (the mouth counts as seen)."""
        s = self.settings
        raw = face.landmarks
        if face.score is not None:
            self._confidence = face.score
        centre, face_side = lm.face_box(raw)
        jumped = (self._last_centre is not None
                  and float(np.linalg.norm(centre - self._last_centre)) > JUMP * face_side)
        if not self._have_face or jumped:  # (re)acquired or a cut: start the filters afresh, no gliding
            self._lmk_filter.reset()
            self._box_filter.reset()
            _log.debug("face %s (%d in frame)", "jumped" if self._have_face else "acquired", n_faces)
        self._have_face, self._seen_at = True, t
        self._last_centre = centre
        smooth = s.smoothing and not self.static_image_mode
        xyz = np.column_stack([raw, face.z])
        if smooth:
            xyz = self._lmk_filter(xyz, t)
        pts = xyz[:, :2].astype(np.float32) if smooth else raw
        rect = lm.driving_rect(raw, s.crop_scale, s.crop_vy)
        box = np.array([rect.centre[0], rect.centre[1], rect.size], np.float64)
        if smooth:
            box = self._box_filter(box, t)
        transform = crop.square_transform(box[:2], float(box[2]))
        pitch, yaw, roll = lm.head_pose_deg(pts, xyz[:, 2])
        eye_raw = lm.eye_ratios_raw(pts)
        mouth_raw = lm.mouth_ratio_raw(pts)
        eye = (lm.eye_ratio_official(eye_raw[0]), lm.eye_ratio_official(eye_raw[1]))
        calibrate_now = self.calibration.update(t, True, centre=(float(box[0]), float(box[1])), size=float(box[2]),
                                                pitch=pitch, yaw=yaw, roll=roll, eye_open=eye)
        if calibrate_now:
            _log.info("neutral reference taken (pitch %.1f, yaw %.1f, roll %.1f)", pitch, yaw, roll)
        mouth_open = lm.mouth_ratio_official(mouth_raw)
        seen = (self.mouth.update(image_bgr, raw, pitch, reference=calibrate_now, mouth_open=mouth_open)
                if image_bgr is not None else MouthCheck())
        return FaceObservation(
            found=True, timestamp=t, image_size=size, landmarks=pts, landmarks_raw=raw,
            confidence=self._confidence, pitch=pitch, yaw=yaw, roll=roll, eye_open=eye,
            mouth_open=mouth_open, eye_open_raw=eye_raw, mouth_open_raw=mouth_raw,
            crop=transform, lost_for_s=0.0, calibrate_now=calibrate_now, calibrated=self.calibration.ready,
            faces_in_frame=n_faces, mouth_visible=seen.visible, mouth_hidden=seen.reason, mouth_match=seen.match)

    def _lost(self, t: float, size: tuple[int, int], n_faces: int) -> FaceObservation:
        if self._have_face:
            _log.debug("face lost")
            self._have_face = False
            self._lmk_filter.reset()
            self._box_filter.reset()
            self.mouth.reset()
        since = next(v for v in (self._seen_at, self._started, t) if v is not None)
        self.calibration.update(t, False)
        return FaceObservation(found=False, timestamp=t, image_size=size, lost_for_s=max(0.0, t - since),
                               calibrated=self.calibration.ready, faces_in_frame=n_faces, mouth_visible=False)

    def _apply_filter_params(self) -> None:
        s = self.settings
        params = OneEuroParams.of(s)
        self._lmk_filter.params = params
        self._box_filter.params = params

    def _build_mesh(self) -> None:
        s = self.settings
        key = (self.static_image_mode, s.max_faces, s.min_detection_confidence, s.min_tracking_confidence)
        if key == self._mesh_key and self._mesh is not None:
            return
        if self._mesh is not None:
            self._mesh.close()
        self._mesh = FaceMesh(static_image_mode=self.static_image_mode, max_faces=s.max_faces,
                              min_detection_confidence=s.min_detection_confidence,
                              min_tracking_confidence=s.min_tracking_confidence)
        self._mesh_key = key
