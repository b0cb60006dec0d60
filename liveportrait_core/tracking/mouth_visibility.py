"""Is the tracked face's mouth really seen? A per-frame cue for the voice fallback (docs/TRACKING.md).

MediaPipe keeps tracking a face whose mouth is covered (a hand, a microphone, a mug), cut off by the frame's
edge or turned away (looking down at the keyboard), and then invents the lips. Four cheap cues say so, in
this order (the first that applies is the reason):

* **out of frame**: outer-lip points at or beyond the frame's edge;
* **looking down**: the head pitched down more than ``tracking.mouth_pitch_down_deg`` below the neutral
  reference's pitch (the lips are foreshortened and the tracked opening is a guess);
* **too dark**: the mouth region's mean grey level below ``tracking.mouth_min_light``, or no contrast left;
* **covered**: the lower face, warped piecewise-affinely by the landmarks onto the shape it had at the neutral
  reference (taken with the tracker's neutral reference, ``calibrate_now``), no longer looks like that
  reference: zero-mean normalised correlation (free of gain and offset, so lighting changes pass) in a 4×4
  grid of cells, the mouth's inside (teeth, tongue) left out, the central cells counted thrice. Because the
  warp follows the lips, a talking mouth lines up with the reference; an occluder does not follow the invented
  lips and breaks the correlation. Below ``tracking.mouth_min_match`` the mouth is covered.

Each frame's evidence goes through hysteresis (``HIDE_FRAMES`` frames in a row to hide, ``SHOW_FRAMES`` to
show again), so the state does not flicker. Cost: a sparse product, one remap of a ~64×52 patch and a few
sums; about 0.25 ms a frame on 2 busy Xeon threads (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

from liveportrait_core.settings import TrackingSettings

_log = logging.getLogger(__name__)

#: Landmarks of the lower face (nose base to chin, cheek to cheek): the vertices of the warp's triangulation.
LOWER_FACE = (0, 11, 12, 13, 14, 15, 16, 17, 18, 32, 37, 38, 39, 40, 41, 42, 43, 57, 61, 62, 72, 73, 74, 76, 77,
              78, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 95, 96, 106, 135, 136, 140, 146, 148, 149,
              150, 152, 164, 165, 167, 169, 170, 171, 175, 176, 178, 179, 180, 181, 182, 183, 184, 185, 186, 191,
              194, 199, 200, 201, 202, 204, 206, 207, 208, 210, 211, 212, 214, 216, 262, 267, 268, 269, 270, 271,
              272, 273, 287, 291, 292, 302, 303, 304, 306, 307, 308, 310, 311, 312, 313, 314, 315, 316, 317, 318,
              319, 320, 321, 322, 324, 325, 335, 365, 369, 375, 377, 378, 379, 391, 393, 394, 395, 396, 400, 402,
              403, 404, 405, 406, 407, 408, 409, 410, 415, 418, 421, 422, 424, 426, 427, 428, 430, 431, 432, 434,
              436)
#: The outer lip contour (out-of-frame cue) and the inner one (the mouth's inside is left out of the match).
OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
EYE_OUTER = (33, 263)  #: the outer eye corners: the patch is turned upright along them
_WARP_POINTS = np.array(LOWER_FACE + EYE_OUTER)
_OUTER_LIP = np.array(OUTER_LIP)

CANON_W = 64  #: width of the canonical lower-face patch, pixels
GRID = (4, 4)  #: (rows, columns) of correlation cells
CENTRE_WEIGHT = 3.0  #: the four central cells (the mouth) count this many times
MIN_CELL_STD = 3.0  #: a reference cell flatter than this (grey levels) holds no pattern to match: skipped
MIN_CONTRAST = 3.0  #: a mouth region whose grey levels vary less than this (std) is too dark / flat to track
HIDE_FRAMES = 3  #: frames of evidence in a row before the mouth counts as hidden
SHOW_FRAMES = 5  #: frames of a seen mouth in a row before it counts as visible again
UPDATE_RATE = 0.02  #: how fast the reference follows a well-matched, closed mouth (slow lighting drift)
UPDATE_MIN_MATCH = 0.8  #: ... only above this match
UPDATE_MAX_OPEN = 0.08  #: ... and with the lips about closed (official lip-ratio range)
EDGE_PX = 2.0  #: a lip point this close to the frame's edge counts as outside
OUT_FRACTION = 0.1  #: this fraction of the outer-lip points outside: the mouth is out of frame

REASONS = ("out of frame", "looking down", "too dark", "covered")


@dataclass(frozen=True)
class MouthCheck:
    """One frame's verdict (after hysteresis)."""

    visible: bool = True
    reason: str = ""  #: why it is hidden (one of ``REASONS``), "" while visible
    match: float | None = None  #: appearance similarity to the reference, 0..1 (None: no reference yet)
    light: float | None = None  #: mean grey level of the mouth region, 0..255 (None: not measured)


class _Warp:
    """The piecewise-affine warp of the lower face onto the reference's shape, as one sparse linear map.

    Each canonical pixel lies in one triangle of the reference's triangulation with fixed barycentric weights,
    so its source position in any frame is those weights times the frame's three vertices: one sparse product,
    then ``cv2.remap``. Built once per reference (a Delaunay triangulation of 149 points, ~5 ms)."""

    def __init__(self, ref_points: np.ndarray) -> None:
        d = ref_points[-1] - ref_points[-2]  # outer eye corners: the patch is upright
        angle = math.atan2(float(d[1]), float(d[0]))
        c, s = math.cos(angle), math.sin(angle)
        pts = ref_points[:-2].astype(np.float64) @ np.array([[c, -s], [s, c]])
        lo, hi = pts.min(0), pts.max(0)
        scale = (CANON_W - 2) / max(float(hi[0] - lo[0]), 1e-6)
        canon = (pts - lo) * scale + 1.0
        rows, cols = GRID
        h = int(math.ceil((float(hi[1] - lo[1]) * scale + 2) / rows)) * rows
        w = int(math.ceil(CANON_W / cols)) * cols
        self.shape = (h, w)
        tri = Delaunay(canon)
        yy, xx = np.mgrid[0:h, 0:w]
        pix = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)
        simplex = tri.find_simplex(pix)
        inside = simplex >= 0
        simplex = np.where(inside, simplex, 0)
        T = tri.transform[simplex]  # (P, 3, 2): barycentric transform per pixel
        b = np.einsum("pij,pj->pi", T[:, :2], pix - T[:, 2])
        weights = np.column_stack([b, 1.0 - b.sum(1)])
        n_pix = len(pix)
        self._map = csr_matrix((weights.ravel().astype(np.float32),
                                (np.repeat(np.arange(n_pix), 3), tri.simplices[simplex].ravel())),
                               shape=(n_pix, len(ref_points)))  # (the eye corners: columns of zeros)
        mask = inside.reshape(h, w).astype(np.uint8)
        mouth = canon[[LOWER_FACE.index(i) for i in INNER_LIP]]
        cv2.fillPoly(mask, [np.round(mouth).astype(np.int32)], 0)  # the inside of the reference's mouth
        self.mask = mask.astype(np.float32)
        self.cell_count = _cell_sums(self.mask)  #: pixels per cell the match counts (fixed by the reference)
        centre = np.zeros(GRID, np.float32)
        centre[1:3, 1:3] = CENTRE_WEIGHT - 1.0
        self.cell_weight = 1.0 + centre

    def sample(self, image_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The lower face of ``image_bgr`` (``points``: the frame's ``_WARP_POINTS``) as a canonical grey patch."""
        m = np.asarray(self._map @ points.astype(np.float32), np.float32).reshape(*self.shape, 2)
        patch = cv2.remap(image_bgr, m, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _cell_sums(a: np.ndarray) -> np.ndarray:
    """Sums over the GRID cells of the last two axes."""
    rows, cols = GRID
    *lead, h, w = a.shape
    return a.reshape(*lead, rows, h // rows, cols, w // cols).sum(axis=(-3, -1))


class MouthVisibility:
    """Frame by frame: is the tracked face's mouth seen? Not thread-safe (the tracker's thread)."""

    def __init__(self, settings: TrackingSettings | None = None) -> None:
        self.settings = settings or TrackingSettings()
        self._warp: _Warp | None = None
        self._ref: np.ndarray | None = None  # canonical grey reference patch
        self._ref_stats: tuple[np.ndarray, np.ndarray] | None = None  # its masked cell sums (b, b²)
        self._ref_pitch = 0.0
        self._hidden = False
        self._reason = ""
        self._run = 0  # frames in a row whose evidence disagrees with the current state

    @property
    def has_reference(self) -> bool:
        return self._ref is not None

    def reset(self) -> None:
        """The face was lost: the next one starts visible (the reference is kept: the same person returns)."""
        self._hidden, self._reason, self._run = False, "", 0

    def update(self, image_bgr: np.ndarray, landmarks: np.ndarray, pitch: float, *, reference: bool = False,
               mouth_open: float = 0.0) -> MouthCheck:
        """One frame: ``landmarks`` the raw 478×2 pixels, ``pitch`` degrees (> 0 chin up), ``reference`` takes
        this frame as the neutral one, ``mouth_open`` the tracked lip ratio (official range)."""
        s = self.settings
        if not s.mouth_check:
            self.reset()
            return MouthCheck()
        h, w = image_bgr.shape[:2]
        lips = landmarks[_OUTER_LIP]
        outside = ((lips[:, 0] < EDGE_PX) | (lips[:, 1] < EDGE_PX) | (lips[:, 0] > w - 1 - EDGE_PX)
                   | (lips[:, 1] > h - 1 - EDGE_PX))
        reason = "out of frame" if outside.mean() >= OUT_FRACTION else ""
        if reference and not reason:
            self._take_reference(image_bgr, landmarks, pitch)
        if not reason and pitch < self._ref_pitch - s.mouth_pitch_down_deg:
            reason = "looking down"
        match = light = None
        if self._warp is not None and not reason:
            patch = self._warp.sample(image_bgr, landmarks[_WARP_POINTS])
            light, contrast, match = self._measure(patch)
            if light < s.mouth_min_light or contrast < MIN_CONTRAST:
                reason = "too dark"
            elif match < s.mouth_min_match:
                reason = "covered"
            elif not self._hidden and match >= UPDATE_MIN_MATCH and mouth_open <= UPDATE_MAX_OPEN:
                self._ref += UPDATE_RATE * (patch - self._ref)  # follows slow drift, never an occluder
                self._ref_stats = None
        elif self._warp is None and not reason:  # before a reference: the light in the lips' box
            light, contrast = _light_around(image_bgr, lips)
            if light < s.mouth_min_light or contrast < MIN_CONTRAST:
                reason = "too dark"
        self._step(reason)
        return MouthCheck(visible=not self._hidden, reason=self._reason if self._hidden else "", match=match,
                          light=light)

    # ------------------------------------------------------------------ internals
    def _step(self, reason: str) -> None:
        """Hysteresis: the state changes after enough frames in a row say otherwise."""
        if bool(reason) == self._hidden:
            self._run = 0
            if reason:
                self._reason = reason
            return
        self._run += 1
        if self._run >= (HIDE_FRAMES if reason else SHOW_FRAMES):
            self._hidden, self._reason, self._run = bool(reason), reason, 0

    def _take_reference(self, image_bgr: np.ndarray, landmarks: np.ndarray, pitch: float) -> None:
        pts = landmarks[_WARP_POINTS]
        try:
            warp = _Warp(pts)
        except (ValueError, RuntimeError) as e:  # degenerate landmarks (Qhull): keep the last reference
            _log.warning("mouth check: no reference from this frame (%s); the last one is kept", e)
            return
        self._warp, self._ref, self._ref_stats = warp, warp.sample(image_bgr, pts), None
        self._ref_pitch = float(pitch)

    def _measure(self, patch: np.ndarray) -> tuple[float, float, float]:
        """(mean grey level of the region, its std, match with the reference)."""
        warp = self._warp
        m = warp.mask
        if self._ref_stats is None:
            mb = m * self._ref
            self._ref_stats = (_cell_sums(mb), _cell_sums(mb * self._ref))
        sb, sbb = self._ref_stats
        ma = m * patch
        n = warp.cell_count
        sa, saa, sab = _cell_sums(np.stack([ma, ma * patch, ma * self._ref]))
        total = float(n.sum())
        mean = float(sa.sum()) / total
        std = math.sqrt(max(float(saa.sum()) / total - mean * mean, 0.0))
        nn = np.maximum(n, 1.0)
        va, vb = saa - sa * sa / nn, sbb - sb * sb / nn
        cov = sab - sa * sb / nn
        rows, cols = GRID
        ok = (n >= 0.25 * m.size / (rows * cols)) & (vb / nn >= MIN_CELL_STD ** 2)
        if not ok.any():
            return mean, std, 1.0
        r = np.clip(cov / np.sqrt(np.maximum(va * vb, 1e-6)), 0.0, 1.0)
        weight = n * ok * warp.cell_weight
        return mean, std, float((r * weight).sum() / weight.sum())


def _light_around(image_bgr: np.ndarray, lips: np.ndarray) -> tuple[float, float]:
    """Mean and std of the grey levels in the lips' bounding box (before any reference exists)."""
    h, w = image_bgr.shape[:2]
    x0, y0 = np.clip(np.floor(lips.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(lips.max(0)).astype(int) + 1, 0, [w, h])
    roi = image_bgr[y0:y1, x0:x1]
    if roi.size == 0:
        return 0.0, 0.0
    mean, std = cv2.meanStdDev(cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY))
    return float(mean[0, 0]), float(std[0, 0])
