"""Crop and paste-back geometry: the official LivePortrait source crop, the live driving crop, the
paste-back mask and the paste-back itself.

The crop maths follows the official ``src/utils/crop.py`` step by step, in float32 like the
original, so that it reproduces the reference vectors (``crop_paste.npz``). It is generic over the
landmark layout: callers pass an eye centre, a lip centre and the point set whose extent defines
the box (the 106-point layout for the reference vectors, MediaPipe points in the product — see
``tracking/landmarks.py``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Official source-crop parameters (CropConfig): 512² crop, face box ×2.3, shifted up by 0.125 of its size.
SOURCE_DSIZE = 512
SOURCE_SCALE = 2.3
SOURCE_VY_RATIO = -0.125
#: Official driving-crop parameters (``*_crop_driving_video``); the driving crop is never rotated.
DRIVING_SCALE = 2.2
DRIVING_VY_RATIO = -0.1
#: Side of the network input.
NETWORK_SIZE = 256
#: Width of the linear ramp along the border of the paste-back mask, in crop pixels.
MASK_RAMP_PX = 16


@dataclass(frozen=True)
class CropRect:
    """A square in the original image: centre (x, y) and side in pixels, rotation in radians."""

    centre: np.ndarray  #: (2,) float32
    size: float
    angle: float


@dataclass(frozen=True)
class CropTransform:
    """Where a crop comes from: the square in the image and the 3×3 matrices both ways."""

    rect: CropRect
    dsize: int
    M_o2c: np.ndarray  #: 3×3 float32, original image → crop pixels
    M_c2o: np.ndarray  #: 3×3 float32, crop pixels → original image

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) image points into crop pixels."""
        return points @ self.M_o2c[:2, :2].T + self.M_o2c[:2, 2]

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) crop points back into the image."""
        return points @ self.M_c2o[:2, :2].T + self.M_c2o[:2, 2]


def lmk106_eye_lip_centres(lmk106: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Official eye centre (mean of the two eye centres) and lip centre of insightface 106-pt landmarks."""
    pts = np.asarray(lmk106, dtype=np.float32)
    left = np.mean(pts[[33, 35, 40, 39]], axis=0)
    right = np.mean(pts[[87, 89, 94, 93]], axis=0)
    return (left + right) / 2, (pts[52] + pts[61]) / 2


def rect_from_points(eye_centre: np.ndarray, lip_centre: np.ndarray, points: np.ndarray, *,
                     scale: float, vy_ratio: float) -> CropRect:
    """The official ``parse_rect_from_landmark``: a square aligned with the eye→lip axis around ``points``.

    The box is measured in the face's own frame (x across the eyes, y down the eye→lip axis), made
    square with its larger side, enlarged by ``scale`` and moved along the face's y axis by
    ``vy_ratio`` of its size. The official horizontal offset is never applied (``vx_ratio`` is not
    forwarded by the official code), so there is none here either.
    """
    pts = np.asarray(points, dtype=np.float32)
    uy = (np.asarray(lip_centre, np.float32) - np.asarray(eye_centre, np.float32)).astype(np.float32)
    length = float(np.linalg.norm(uy))
    uy = np.array([0, 1], dtype=np.float32) if length <= 1e-3 else uy / np.float32(length)
    ux = np.array((uy[1], -uy[0]), dtype=np.float32)
    angle = math.acos(float(ux[0]))
    if ux[1] < 0:
        angle = -angle
    centre0 = np.mean(pts, axis=0)
    rpts = (pts - centre0) @ np.array([ux, uy]).T
    lt, rb = np.min(rpts, axis=0), np.max(rpts, axis=0)
    centre1 = (lt + rb) / 2
    size = np.float32(max(rb[0] - lt[0], rb[1] - lt[1])) * np.float32(scale)
    centre = centre0 + ux * centre1[0] + uy * centre1[1]
    centre = centre + uy * (size * np.float32(vy_ratio))
    return CropRect(centre=centre.astype(np.float32), size=float(size), angle=angle)


def crop_transform(rect: CropRect, dsize: int = SOURCE_DSIZE, rotate: bool = True) -> CropTransform:
    """The official crop matrices of ``rect`` (``_estimate_similar_transform_from_pts``), float32."""
    s = dsize / np.float32(rect.size)
    tc = dsize / 2
    cx, cy = float(rect.centre[0]), float(rect.centre[1])
    if rotate:
        c, n = math.cos(rect.angle), math.sin(rect.angle)
        m = [[s * c, s * n, tc - s * (c * cx + n * cy)], [-s * n, s * c, tc - s * (-n * cx + c * cy)]]
    else:
        m = [[s, 0, tc - s * cx], [0, s, tc - s * cy]]
    o2c = np.array([*m, [0, 0, 1]], dtype=np.float32)
    c2o = np.eye(3, dtype=np.float32)
    # invertAffineTransform rather than np.linalg.inv: the same inverse, without LAPACK's per-call
    # overhead (which reaches milliseconds when its threads compete for a busy CPU)
    c2o[:2] = cv2.invertAffineTransform(o2c[:2])
    return CropTransform(rect=rect, dsize=dsize, M_o2c=o2c, M_c2o=c2o)


def source_crop_transform(eye_centre: np.ndarray, lip_centre: np.ndarray, points: np.ndarray, *,
                          scale: float = SOURCE_SCALE, vy_ratio: float = SOURCE_VY_RATIO,
                          dsize: int = SOURCE_DSIZE, rotate: bool = True) -> CropTransform:
    """The official source crop (``Cropper.crop_source_image``): rotated with the face, 2.3× the face."""
    return crop_transform(rect_from_points(eye_centre, lip_centre, points, scale=scale, vy_ratio=vy_ratio),
                          dsize, rotate)


def square_transform(centre: np.ndarray, size: float, dsize: int = SOURCE_DSIZE) -> CropTransform:
    """An unrotated crop of the square ``size`` around ``centre`` (the live driving crop's box)."""
    return crop_transform(CropRect(np.asarray(centre, np.float32), float(size), 0.0), dsize, rotate=False)


def warp_crop(image: np.ndarray, M_o2c: np.ndarray, dsize: int = SOURCE_DSIZE, exact: bool = False) -> np.ndarray:
    """Cut the crop out of ``image`` as the official code does (bilinear, black outside the image).

    ``exact`` samples with full-precision bilinear weights (see ``warp_affine``): use it for work
    done once per character (the source crop); per frame the OpenCV path is used.
    """
    return warp_affine(image, M_o2c, (dsize, dsize), exact=exact)


def warp_affine(image: np.ndarray, M: np.ndarray, size_wh: tuple[int, int], exact: bool = False) -> np.ndarray:
    """``cv2.warpAffine`` (bilinear, constant black border) of ``image`` by the 2×3/3×3 matrix ``M``.

    OpenCV 4.11 (the newest that installs beside ``numpy<2``, which MediaPipe 0.10.21 needs)
    quantises source positions to 1/32 pixel, which moves sharp edges by up to ~4 LSB. The
    official reference vectors were made with a newer OpenCV that interpolates in full precision;
    ``exact=True`` reproduces that (numpy, float32, rounded) at a cost that is fine once per
    character but not per frame.
    """
    M2 = np.ascontiguousarray(np.asarray(M, np.float32)[:2])
    w, h = size_wh
    if not exact:
        return cv2.warpAffine(image, M2, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
    inv = cv2.invertAffineTransform(M2).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0f, y0f = np.floor(sx), np.floor(sy)
    fx, fy = sx - x0f, sy - y0f
    ih, iw = image.shape[:2]
    src = image.reshape(ih, iw, -1).astype(np.float32)
    padded = np.zeros((ih + 2, iw + 2, src.shape[2]), np.float32)  # one black pixel all round
    padded[1:-1, 1:-1] = src
    x0 = np.clip(x0f.astype(np.int64), -1, iw) + 1
    y0 = np.clip(y0f.astype(np.int64), -1, ih) + 1
    x1 = np.clip(x0f.astype(np.int64) + 1, -1, iw) + 1
    y1 = np.clip(y0f.astype(np.int64) + 1, -1, ih) + 1
    fx, fy = fx[..., None], fy[..., None]
    top = padded[y0, x0] * (1 - fx) + padded[y0, x1] * fx
    bottom = padded[y1, x0] * (1 - fx) + padded[y1, x1] * fx
    out = np.clip(np.round(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)
    return out.reshape((h, w) + image.shape[2:])


def to_network_size(crop: np.ndarray, size: int = NETWORK_SIZE) -> np.ndarray:
    """512² crop → 256² network input with area averaging, as the official source crop does."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=4)
def mask_template(dsize: int = SOURCE_DSIZE, ramp: int = MASK_RAMP_PX) -> np.ndarray:
    """The official paste-back mask (``resources/mask_template.png``), generated instead of shipped.

    255 inside; along each border a linear ramp over ``ramp`` pixels, quarter-circle corners of
    radius ``ramp``; value = floor(255·d/ramp) with d the distance inside the rounded square whose
    edges lie at pixel 0 and pixel ``dsize`` (so the first row/column is 0 and the last is 15, as
    in the official PNG). Matches the official template exactly at 512². Read-only (cached).
    """
    i = np.arange(dsize, dtype=np.float64)
    edge = np.minimum(i, dsize - i)
    cy = np.maximum(ramp - edge, 0)[:, None]
    cx = np.maximum(ramp - edge, 0)[None, :]
    depth = np.clip(ramp - np.sqrt(cx * cx + cy * cy), 0, ramp)
    mask = np.floor(255.0 * depth / ramp).astype(np.uint8)
    mask.setflags(write=False)
    return mask


class PasteBack:
    """The official paste-back of an animated crop into the full character image, precomputed per character.

    The mask warped into the image (``mask_ori``) depends only on the character, so it is computed
    once; each frame then warps the crop and blends it only inside the mask's bounding box (outside
    it the official result equals the original image). ``paste`` gives the official result (BGR or
    RGB, whatever order the image and crop share); ``paste_bgra`` also carries the character's alpha.
    """

    def __init__(self, image: np.ndarray, M_c2o: np.ndarray, alpha: np.ndarray | None = None,
                 dsize: int = SOURCE_DSIZE, mask_ori: np.ndarray | None = None) -> None:
        """``mask_ori``: the HxW uint8 mask made earlier for the same image, ``M_c2o`` and ``dsize`` (the
        character cache's, ``mask_from_box``); given, the warp is skipped and the result is bit-identical."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"paste-back needs an HxWx3 uint8 image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        self.image = image
        self.alpha = alpha
        self.dsize = dsize
        self.M_c2o = np.asarray(M_c2o, np.float32)
        if mask_ori is None:
            mask = self._mask_in_image(dsize, w, h)
        elif mask_ori.shape != (h, w) or mask_ori.dtype != np.uint8:
            raise ValueError(f"paste-back mask is {mask_ori.shape} {mask_ori.dtype}, needs {(h, w)} uint8")
        else:
            mask = mask_ori
        #: mask in the image, 0..1 (one channel of the official 3-channel ``mask_ori``)
        self.mask_ori = mask.astype(np.float32) / 255.0
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:  # the crop lies entirely outside the image: nothing to paste
            self.roi = (0, 0, 0, 0)
        else:
            self.roi = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        x0, y0, x1, y1 = self.roi
        m = self.mask_ori[y0:y1, x0:x1, None]
        self._m, self._1m = m, 1.0 - m
        self._background = image[y0:y1, x0:x1].astype(np.float32) * self._1m
        self._M_roi = self.M_c2o[:2].copy()
        self._M_roi[:, 2] -= (x0, y0)
        self._alpha_cover: np.ndarray | None = None  # made on the first paste_bgra with a crop alpha
        self._colour_cover: np.ndarray | None = None
        self._see_through: np.ndarray | None = None

    def mask_box(self) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """(roi, mask) — the mask's bounding box (x0, y0, x1, y1) and the uint8 mask inside it (a copy):
        all of the mask that is not 0, compact enough to store; ``mask_from_box`` rebuilds it exactly."""
        x0, y0, x1, y1 = self.roi
        box = self.mask_ori[y0:y1, x0:x1] * np.float32(255.0) + np.float32(0.5)
        return self.roi, np.clip(box, 0, 255).astype(np.uint8)

    def _mask_in_image(self, dsize: int, w: int, h: int) -> np.ndarray:
        """The official ``mask_ori`` (one channel, uint8), sampled exactly but only where the crop lands."""
        corners = np.array([[0, 0], [dsize, 0], [0, dsize], [dsize, dsize]], np.float32)
        mapped = corners @ self.M_c2o[:2, :2].T + self.M_c2o[:2, 2]
        x0, y0 = np.clip(np.floor(mapped.min(axis=0)).astype(int) - 1, 0, (w, h))
        x1, y1 = np.clip(np.ceil(mapped.max(axis=0)).astype(int) + 2, 0, (w, h))
        mask = np.zeros((h, w), np.uint8)
        if x1 > x0 and y1 > y0:
            m = self.M_c2o[:2].copy()
            m[:, 2] -= (x0, y0)
            mask[y0:y1, x0:x1] = warp_affine(mask_template(dsize), m, (int(x1 - x0), int(y1 - y0)), exact=True)
        return mask

    def _warp_roi(self, crop: np.ndarray, exact: bool = False, replicate: bool = False) -> np.ndarray:
        x0, y0, x1, y1 = self.roi
        if replicate:  # for alpha: the crop's edge continues outward instead of fading to 0
            return cv2.warpAffine(crop, self._M_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        return warp_affine(crop, self._M_roi, (x1 - x0, y1 - y0), exact=exact)

    def paste(self, crop: np.ndarray, out: np.ndarray | None = None, exact: bool = False) -> np.ndarray:
        """Official result: clip(mask·warp(crop) + (1−mask)·image) → uint8 (truncating).

        ``out`` (HxWx3 uint8, may be a view) is reused when given: outside the mask's box it must
        already hold the image (only the box is written), which a reused output buffer does.
        ``exact`` warps with full-precision bilinear weights (slow; see ``warp_affine``).
        """
        if crop.shape[:2] != (self.dsize, self.dsize):
            raise ValueError(f"paste-back expects a {self.dsize}x{self.dsize} crop, got {crop.shape}")
        if out is None:
            out = self.image.copy()
        x0, y0, x1, y1 = self.roi
        if x1 > x0:
            blended = self._warp_roi(crop, exact).astype(np.float32) * self._m + self._background
            np.clip(blended, 0, 255, out=blended)
            out[y0:y1, x0:x1] = blended  # float → uint8 assignment truncates, as astype does
        return out

    def paste_bgra(self, crop: np.ndarray, crop_alpha: np.ndarray | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
        """Paste into a 4-channel frame (straight alpha).

        Outside the face: the character's colour and alpha. Inside, without ``crop_alpha``: the
        official colour blend and the character's alpha. With ``crop_alpha`` (the alpha that goes
        with the animated crop, e.g. the character's alpha cut with the source crop): the crop,
        with coverage mask·crop_alpha, composited over the character, with coverage
        (1−mask)·alpha — A = m·a_c + (1−m)·a_i, colour = (m·a_c·C_c + (1−m)·a_i·C_i) / A — so
        colours hidden under transparent pixels never bleed into the result. For opaque images
        this is exactly the official paste. ``out`` (HxWx4) is reused as in ``paste``.
        """
        if out is None:
            h, w = self.image.shape[:2]
            out = np.empty((h, w, 4), np.uint8)
            out[..., :3] = self.image
        out[..., 3] = 255 if self.alpha is None else self.alpha
        x0, y0, x1, y1 = self.roi
        if crop_alpha is None or x1 <= x0:
            self.paste(crop, out=out[..., :3])
            return out
        if crop.shape[:2] != (self.dsize, self.dsize) or crop_alpha.shape[:2] != (self.dsize, self.dsize):
            raise ValueError(f"paste-back expects {self.dsize}x{self.dsize} crops, got {crop.shape}, {crop_alpha.shape}")
        a_crop = self._warp_roi(crop_alpha, replicate=True)[..., None]
        cover_crop = a_crop.astype(np.float32) * (self._m / 255.0)
        if self._alpha_cover is None:  # the character's own coverage (1−m)·a_i and premultiplied colour
            ai = 1.0 if self.alpha is None else self.alpha[y0:y1, x0:x1, None].astype(np.float32) / 255.0
            self._alpha_cover = self._1m * ai
            self._colour_cover = self.image[y0:y1, x0:x1].astype(np.float32) * self._alpha_cover
            self._see_through = (self._m > 0) & (True if self.alpha is None else self.alpha[y0:y1, x0:x1, None] < 255)
        total = cover_crop + self._alpha_cover
        warped = self._warp_roi(crop).astype(np.float32)
        colour = warped * self._m + self._background  # the official blend, exact where both are opaque
        mixed = self._see_through | ((a_crop < 255) & (self._m > 0))
        if mixed.any():
            composite = warped * cover_crop + self._colour_cover
            np.divide(composite, total, out=composite, where=total > 1e-6)
            # where nothing covers a pixel its colour is invisible: the official blend stays
            colour = np.where(mixed & (total > 1e-6), composite + 1e-3, colour)
        out[y0:y1, x0:x1, :3] = np.clip(colour, 0, 255)
        out[y0:y1, x0:x1, 3] = np.clip(total[..., 0] * 255.0 + 0.5, 0, 255)
        return out


def mask_from_box(roi, box: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """The full HxW uint8 paste-back mask from ``PasteBack.mask_box()`` (0 outside the box).

    Raises ValueError when the parts do not fit together (a box outside the image, a box of another size
    than its ``roi``, not uint8): the caller then computes the mask again.
    """
    h, w = (int(v) for v in size_hw)
    roi = np.asarray(roi)
    if roi.shape != (4,) or not np.issubdtype(roi.dtype, np.integer):
        raise ValueError(f"paste-back mask box must be 4 integers, got {roi.shape} {roi.dtype}")
    x0, y0, x1, y1 = (int(v) for v in roi)
    box = np.asarray(box)
    if box.dtype != np.uint8 or box.ndim != 2:
        raise ValueError(f"paste-back mask box must be a 2-D uint8 array, got {box.shape} {box.dtype}")
    if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h) or box.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"paste-back mask box {box.shape} at {(x0, y0, x1, y1)} does not fit a {w}x{h} image")
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = box
    return mask
