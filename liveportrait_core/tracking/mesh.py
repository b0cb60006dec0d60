"""MediaPipe FaceMesh (legacy solution, mediapipe==0.10.21) as a small object: RGB frame → faces.

MediaPipe is imported here only, when a ``FaceMesh`` is created (its import takes about a second).
One instance per tracker: the graph is not thread-safe. We build the graph the way
``mp.solutions.face_mesh.FaceMesh`` does, but also ask for its ``face_detections`` stream, so a face
carries its detector score when the detector ran on that frame.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from liveportrait_core import log

_log = logging.getLogger(__name__)

_GRAPH = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"
_DET_SCORE = ("facedetectionshortrangecpu__facedetectionshortrange__facedetection__"
              "TensorsToDetectionsCalculator.min_score_thresh")
_TRACK_SCORE = "facelandmarkcpu__ThresholdingCalculator.threshold"
#: Serialized NormalizedLandmark with x, y, z set: tag 0x0a, length 15, then 0x0d x, 0x15 y, 0x1d z.
_RECORD = 17


class TrackerUnavailable(RuntimeError):
    """MediaPipe is missing or cannot run; the message says what to install."""


@dataclass
class MeshFace:
    """One face: landmarks in pixels (478×2 float32), relative depth z (478 float32), detector score."""

    landmarks: np.ndarray
    z: np.ndarray
    score: float | None  #: None when the detector did not run for this frame (tracking from the last one)


class FaceMesh:
    """A MediaPipe FaceMesh graph with iris refinement (478 landmarks)."""

    def __init__(self, *, static_image_mode: bool, max_faces: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solution_base import SolutionBase  # noqa: PLC0415 - slow import, on demand
        except ImportError as e:
            raise TrackerUnavailable(
                f"face tracking needs mediapipe 0.10.21 ({e}); install it with: pip install mediapipe==0.10.21"
            ) from None
        self.static_image_mode = static_image_mode
        self.max_faces = max_faces
        self._quiet_frames = 100  # MediaPipe's native chatter comes with the graph's start and its first face
        with log.native_chatter():
            self._graph = SolutionBase(
                binary_graph_path=_GRAPH,
                side_inputs={"num_faces": max_faces, "with_attention": True,
                             "use_prev_landmarks": not static_image_mode},
                calculator_params={_DET_SCORE: min_detection_confidence, _TRACK_SCORE: min_tracking_confidence},
                outputs=["multi_face_landmarks", "face_detections"])
            # the graph opens its calculators on its own threads, which print as they do: one blank frame waits
            # for that inside the hold (milliseconds; no face, so a tracker's state is untouched)
            self._graph.process({"image": np.zeros((64, 64, 3), np.uint8)})

    def process(self, rgb: np.ndarray) -> list[MeshFace]:
        """Faces in an HxWx3 uint8 RGB frame (contiguous), landmarks in its pixels."""
        h, w = rgb.shape[:2]
        if self._quiet_frames <= 0:
            res = self._graph.process({"image": rgb})
        else:
            with log.native_chatter():
                res = self._graph.process({"image": rgb})
            # the landmark model starts with the first face
            self._quiet_frames = 0 if res.multi_face_landmarks else self._quiet_frames - 1
        lists = res.multi_face_landmarks or []
        dets = list(res.face_detections or [])
        faces = []
        for lm in lists:
            xyz = _landmarks_array(lm)
            pts = xyz[:, :2] * np.array([w, h], np.float32)
            faces.append(MeshFace(pts, xyz[:, 2] * w, None))
        if dets and faces:
            _attach_scores(faces, dets, w, h)
        return faces

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __enter__(self) -> "FaceMesh":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _landmarks_array(lm) -> np.ndarray:
    """(N, 3) float32 normalised x, y, z. Reads the protobuf bytes directly (~30 µs instead of ~0.5 ms
    for a Python loop over 478 messages); falls back to the loop if the encoding is not the expected one."""
    data = lm.SerializeToString()
    n = len(lm.landmark)
    if len(data) == n * _RECORD:
        rec = np.frombuffer(data, np.uint8).reshape(n, _RECORD)
        if ((rec[:, 0] == 0x0A) & (rec[:, 1] == 15) & (rec[:, 2] == 0x0D) & (rec[:, 7] == 0x15)
                & (rec[:, 12] == 0x1D)).all():
            cols = np.concatenate([rec[:, 3:7], rec[:, 8:12], rec[:, 13:17]], axis=1)
            return np.ascontiguousarray(cols).view("<f4").reshape(n, 3).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in lm.landmark], np.float32)


def _attach_scores(faces: list[MeshFace], dets, w: int, h: int) -> None:
    """Give each face the score of the detection whose box holds its landmark centre."""
    for d in dets:
        box = d.location_data.relative_bounding_box
        x0, y0 = box.xmin * w, box.ymin * h
        x1, y1 = x0 + box.width * w, y0 + box.height * h
        for f in faces:
            cx, cy = f.landmarks.mean(axis=0)
            if f.score is None and x0 <= cx <= x1 and y0 <= cy <= y1:
                f.score = float(d.score[0])
                break
