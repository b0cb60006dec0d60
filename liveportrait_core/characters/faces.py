"""The face in a character image: found (static mode), measured, and refused with the reason.

A face must come with a detector score of at least ``characters.min_face_confidence``: MediaPipe's mesh
happily fits a face to a dog (testdata s25 scores 0.72 while every human portrait and the 3-D cartoon score
≥ 0.9), and the human LivePortrait model should not be fed one. Faces that are small in a large image are
missed by the short-range detector FaceMesh uses, so a full-range detection pass finds them and the mesh runs
again on a crop around each. Candidates under the threshold are kept too, so that a refusal can say how close
the best one came (``CharacterFace.confidence``) and what lowering the threshold would risk.

``CharacterFaceFinder`` gives the full description (``check-character`` reports it); ``SourceFace`` is the part
a preparation keeps (and the disk cache stores); ``LazyFaceFinder`` is the finder the library shares between
threads, which raises ``CharacterError`` when there is no face to use. The thresholds come from
``settings.CharacterSettings``.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from liveportrait_core.driving import crop
from liveportrait_core import log, paths
from liveportrait_core.settings import CharacterSettings
from liveportrait_core.tracking import landmarks as lm
from liveportrait_core.tracking.mesh import FaceMesh, MeshFace

_log = logging.getLogger(__name__)

#: The second pass runs the mesh on a square this many times the detected box, at most this big.
_REGION_SCALE = 2.5
_REGION_MAX_PX = 768
#: Smallest tile of the last-resort tiled search, pixels.
_TILE_MIN_PX = 256
#: Detector floor for candidates: weaker ones are not even reported. MediaPipe drops a face altogether when its
#: own threshold is near the face's score (the alpaca s23 scores 0.41 with a floor of 0.1, nothing with 0.2).
CANDIDATE_FLOOR = 0.1
#: The lowest ``characters.min_face_confidence`` the settings allow (read from the schema's range).
LOWEST_THRESHOLD: float = next(f.metadata["min"] for f in dataclasses.fields(CharacterSettings)
                               if f.name == "min_face_confidence")
#: A face this many pixels across (or more) fills the 512 crop's face without upscaling (512 / 2.3 ≈ 222).
SHARP_FACE_PX = 200


class CharacterError(ValueError):
    """A character image cannot be used; the message names the file and what to do."""


@dataclass
class SourceFace:
    """What a preparation keeps of the face in a character image (image pixels)."""

    eye_centre: np.ndarray  #: (2,) mean of the two eye centres
    lip_centre: np.ndarray  #: (2,) mouth centre
    points: np.ndarray  #: (N, 2) landmarks whose extent defines the crop box
    confidence: float
    eye_ratio: tuple[float, float]  #: open ratios (left, right), the tracker's convention
    lip_ratio: float
    roll_deg: float
    size_px: float  #: face size across, pixels
    crop_scale: float = crop.SOURCE_SCALE  #: a sidecar may choose another (``sidecar.PlacedFace``)
    crop_vy: float = crop.SOURCE_VY_RATIO

    def crop_transform(self) -> crop.CropTransform:
        """The official source crop (rotated, ×2.3 by default, 512²) around this face."""
        return crop.source_crop_transform(self.eye_centre, self.lip_centre, self.points, scale=self.crop_scale,
                                          vy_ratio=self.crop_vy)


class FaceFinder(Protocol):
    def __call__(self, image_bgr: np.ndarray) -> SourceFace:
        """The face in a still BGR image (the largest when there are several); raises CharacterError
        with the reason (no face, not a human face, too small) when there is none to use."""


@dataclass
class CharacterFace:
    """What was found in a character image."""

    found: bool
    message: str
    image_size: tuple[int, int]  #: (width, height)
    confidence: float = 0.0
    landmarks: np.ndarray | None = None  #: 478×2 float32 pixels
    candidate: np.ndarray | None = None  #: a refused image's best candidate's landmarks (starting sidecar)
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0
    eye_open: tuple[float, float] = (0.0, 0.0)  #: official range
    mouth_open: float = 0.0  #: official range
    face_size_px: float = 0.0  #: larger side of the landmarks' box
    face_size_ratio: float = 0.0  #: face_size_px over the image's shorter side
    crop: crop.CropTransform | None = None  #: the official source crop (rotated, ×2.3, 512²)
    faces_found: int = 0
    warnings: list[str] = field(default_factory=list)

    def source_face(self) -> SourceFace:
        """The part a preparation keeps (needs ``found``)."""
        if self.landmarks is None:
            raise ValueError(f"no face to keep: {self.message}")
        pts = self.landmarks
        eye, lip = lm.eye_lip_centres(pts)
        return SourceFace(eye_centre=eye, lip_centre=lip, points=pts[lm.CROP_POINTS], confidence=float(self.confidence),
                          eye_ratio=(float(self.eye_open[0]), float(self.eye_open[1])),
                          lip_ratio=float(self.mouth_open), roll_deg=float(self.roll), size_px=float(self.face_size_px))


class CharacterFaceFinder:
    """A static-mode FaceMesh kept open across images (creating one takes ~0.1 s); the thresholds are
    ``settings``' (the defaults when None)."""

    def __init__(self, settings: CharacterSettings | None = None, max_faces: int = 4) -> None:
        cs = settings or CharacterSettings()
        self.min_confidence = cs.min_face_confidence
        self.min_face_px = cs.min_face_px
        self._mesh = FaceMesh(static_image_mode=True, max_faces=max_faces, min_detection_confidence=0.3)
        self._weak_mesh: FaceMesh | None = None  # the candidate pass, made when an image is refused
        self._detector = None

    def close(self) -> None:
        self._mesh.close()
        if self._weak_mesh is not None:
            self._weak_mesh.close()
            self._weak_mesh = None
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> "CharacterFaceFinder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, bgr: np.ndarray) -> CharacterFace:
        """The largest confident face in an HxWx3 uint8 BGR image."""
        with log.native_chatter():  # the extra passes start MediaPipe graphs of their own
            return self._find(bgr)

    def _find(self, bgr: np.ndarray) -> CharacterFace:
        h, w = bgr.shape[:2]
        if min(h, w) < self.min_face_px:
            return CharacterFace(False, f"the image is only {w}x{h} pixels; a character needs a face at least "
                                        f"{self.min_face_px} pixels across", (w, h))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        faces = self._mesh.process(rgb)
        for f in faces:  # a mesh whose centre lies outside every detection box gets no score
            f.score = f.score or 0.0
        if not any(f.score >= self.min_confidence for f in faces):
            faces += self._small_faces(rgb)
        if not any(f.score >= self.min_confidence for f in faces):
            faces += self._weak_candidates(rgb)
        if not faces:
            return CharacterFace(False, "no face found, not even a weak candidate; use an image with a clearly "
                                        "visible, roughly frontal face", (w, h))
        confident = [f for f in faces if f.score >= self.min_confidence]
        if not confident:
            best = max(faces, key=lambda f: f.score)
            return CharacterFace(False, below_threshold_message(best.score, self.min_confidence), (w, h),
                                 confidence=best.score, faces_found=0, candidate=best.landmarks)
        best = max(confident, key=lambda f: lm.face_box(f.landmarks)[1])
        return self._describe(best, (w, h), len(confident))

    def _describe(self, face: MeshFace, size: tuple[int, int], n: int) -> CharacterFace:
        pts = face.landmarks
        pitch, yaw, roll = lm.head_pose_deg(pts, face.z)
        eye = lm.eye_ratios_raw(pts)
        face_px = lm.face_box(pts)[1]
        out = CharacterFace(
            True, "face found", size, confidence=float(face.score or 0.0), landmarks=pts, pitch=pitch, yaw=yaw,
            roll=roll, eye_open=(lm.eye_ratio_official(eye[0]), lm.eye_ratio_official(eye[1])),
            mouth_open=lm.mouth_ratio_official(lm.mouth_ratio_raw(pts)), face_size_px=face_px,
            face_size_ratio=face_px / max(1, min(size)), crop=lm.source_crop_transform(pts), faces_found=n)
        if face_px < self.min_face_px:
            out.warnings.append(f"the face is only {face_px:.0f} px across (at least {self.min_face_px} "
                                "recommended); the animation will be blurry")
        if abs(yaw) > 30 or abs(pitch) > 30:
            out.warnings.append(f"the face is turned away (yaw {yaw:.0f}°, pitch {pitch:.0f}°); "
                                "a frontal face animates best")
        if n > 1:
            out.warnings.append(f"{n} faces found; the largest one is animated")
        return out

    def _small_faces(self, rgb: np.ndarray) -> list[MeshFace]:
        """Faces too small for the short-range detector: full-range detector, then tiles."""
        return self._full_range_faces(rgb) or self._tiled_faces(rgb)

    def _weak_candidates(self, rgb: np.ndarray) -> list[MeshFace]:
        """The mesh with the detector floor lowered to ``CANDIDATE_FLOOR``: only for the refusal message (how
        close the best candidate came), so faces that pass keep exactly the main pass's landmarks."""
        if self._weak_mesh is None:
            floor = min(CANDIDATE_FLOOR, self.min_confidence)
            self._weak_mesh = FaceMesh(static_image_mode=True, max_faces=1, min_detection_confidence=floor)
        faces = self._weak_mesh.process(rgb)
        for f in faces:
            f.score = min(f.score or 0.0, self.min_confidence - 1e-3)  # a candidate, never a face
        return faces

    def _full_range_faces(self, rgb: np.ndarray) -> list[MeshFace]:
        """Full-range detections, each re-run through the mesh on a crop around it."""
        try:
            from mediapipe.python.solutions.face_detection import FaceDetection  # noqa: PLC0415
        except ImportError:
            return []
        if self._detector is None:
            self._detector = FaceDetection(model_selection=1, min_detection_confidence=self.min_confidence)
        h, w = rgb.shape[:2]
        found = []
        for det in self._detector.process(rgb).detections or []:
            b = det.location_data.relative_bounding_box
            side = max(b.width * w, b.height * h) * _REGION_SCALE
            cx, cy = (b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h
            for f in self._mesh_in_square(rgb, np.array([cx, cy]), side)[:1]:
                f.score = max(f.score or 0.0, float(det.score[0]))
                found.append(f)
        return found

    def _tiled_faces(self, rgb: np.ndarray) -> list[MeshFace]:
        """The mesh on overlapping tiles of half, then a quarter of the shorter side (large images); the
        confident faces of the first size that has any, else the best weak candidate seen."""
        h, w = rgb.shape[:2]
        weak: list[MeshFace] = []
        for tile in (min(h, w) // 2, min(h, w) // 4):
            if tile < _TILE_MIN_PX:
                break
            step = tile // 2
            found = []
            for y in range(0, max(1, h - step), step):
                for x in range(0, max(1, w - step), step):
                    centre = np.array([x + tile / 2, y + tile / 2])
                    for f in self._mesh_in_square(rgb, centre, tile):
                        f.score = f.score or 0.0
                        (found if f.score >= self.min_confidence else weak).append(f)
            if found:
                return _unique(found)
        return [max(weak, key=lambda f: f.score)] if weak else []

    def _mesh_in_square(self, rgb: np.ndarray, centre: np.ndarray, side: float) -> list[MeshFace]:
        t = crop.square_transform(centre, side, dsize=int(min(_REGION_MAX_PX, max(192, side))))
        region = np.ascontiguousarray(crop.warp_crop(rgb, t.M_o2c, t.dsize))
        faces = self._mesh.process(region)
        for f in faces:
            f.landmarks = t.to_image(f.landmarks).astype(np.float32)
            f.z = f.z * np.float32(t.rect.size / t.dsize)  # depth in image pixels, like x and y
        return faces


def suggested_threshold(score: float) -> float:
    """A ``characters.min_face_confidence`` that would accept a candidate of this score (one decimal, down)."""
    return max(LOWEST_THRESHOLD, int(score * 10 + 1e-6) / 10)


def below_threshold_message(score: float, threshold: float) -> str:
    """Why a weak candidate is refused and, when the settings allow it, how to try it anyway (and the risk)."""
    head = (f"no face scored at least characters.min_face_confidence={threshold:.2f}; the best candidate scored "
            f"{score:.2f} (an animal or a stylised face?)")
    if score < LOWEST_THRESHOLD:
        return (head + f"; that is below the lowest threshold allowed ({LOWEST_THRESHOLD}), so this image cannot be "
                "used: pick one with a clearer, more human face")
    value = suggested_threshold(score)
    return (head + f"; to try it anyway lower the threshold to {value:.1f}: CLI --set characters.min_face_confidence="
            f"{value:.1f}, OBS: the Min face confidence slider (Character group); a lower threshold can accept "
            "something that is not a face and put the crop beside the face, so check the crop preview first: "
            + paths.cli_command("check-character", "IMAGE", "--min-confidence", f"{value:.1f}"))


def _unique(faces: list[MeshFace]) -> list[MeshFace]:
    """Drop faces found twice by overlapping tiles (centres closer than half a face)."""
    out: list[MeshFace] = []
    for f in sorted(faces, key=lambda f: -(f.score or 0)):
        c, s = lm.face_box(f.landmarks)
        if all(np.linalg.norm(c - lm.face_box(g.landmarks)[0]) > s / 2 for g in out):
            out.append(f)
    return out


class LazyFaceFinder:
    """The library's ``FaceFinder``: one ``CharacterFaceFinder`` with ``settings``' thresholds, opened on first
    use (MediaPipe), kept for later images and shared between threads."""

    def __init__(self, settings: CharacterSettings) -> None:
        self._settings = dataclasses.replace(settings)  # a copy: the thresholds it was made with
        self._finder: CharacterFaceFinder | None = None
        self._lock = threading.Lock()

    def __call__(self, image_bgr: np.ndarray) -> SourceFace:
        with self._lock:
            if self._finder is None:
                self._finder = CharacterFaceFinder(self._settings)
            face = self._finder.find(image_bgr)
        if not face.found or face.landmarks is None:
            raise CharacterError(face.message)
        return face.source_face()

    def uses(self, settings: CharacterSettings) -> bool:
        """True when ``settings`` ask for the thresholds this finder applies."""
        mine = self._settings
        return (mine.min_face_px, mine.min_face_confidence) == (settings.min_face_px, settings.min_face_confidence)

    def close(self) -> None:
        with self._lock:
            if self._finder is not None:
                self._finder.close()
                self._finder = None
