"""The paste-back as tensor ops on the networks' device, equal to the CPU path (``crop.PasteBack``).

Why: on a GPU the animated crop would otherwise be downloaded, and the full character image copied and
blended on the CPU, before the next frame's networks can start. Here the crop never leaves the device;
only the finished BGRA frame goes down, once.

Equality with the CPU path, by construction rather than by tolerance:

- ``cv2.warpAffine`` (OpenCV 4.x, bilinear, 8-bit) does not interpolate at full precision. It inverts the
  matrix in float64, computes each destination pixel's source position in fixed point (10 fractional
  bits, ``cvRound`` per row and per column term), rounds it to 1/32 pixel (``INTER_BITS`` = 5) and mixes
  the four neighbours with 15-bit integer weights, rounding half up. ``cv_source_positions`` reproduces
  the positions bit for bit and ``grid_sample`` samples exactly there. With 1/32-pixel positions every
  bilinear weight is a multiple of 1/1024, so OpenCV's integer weights are exact, and ``grid_sample``'s
  float32 sum of 8-bit values times those weights is exact too (18 significant bits): the value is the
  same real number on both sides, and ``floor(v + 0.5)`` is OpenCV's rounding. For the positions to
  reach ``grid_sample`` unchanged, its normalised grid (``(2x + 1) / W - 1``) must be exact in float32,
  which holds when the crop's side is a power of two (512, the official crop). For other sides the grid
  carries float32 rounding (~1e-7 px) and a value lying exactly on .5 can round the other way: 1 LSB.
- Borders: outside the crop OpenCV's constant border is black, as ``padding_mode="zeros"`` (each tap
  outside counts 0); the crop's alpha is warped with ``BORDER_REPLICATE``, which is ``"border"``
  (clamping the position equals replicating the edge pixel, per axis).
- The blend repeats ``PasteBack``'s float32 operations in the same order (no fused multiply-add), so
  with equal warped values the blended colour and the truncation to uint8 are equal too.

Everything that depends only on the character (the grid, the mask, the character's share of the blend,
the crop's alpha warped into the image and the output alpha) is computed once; a frame is one
``grid_sample`` and a few element-wise ops into buffers made once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from liveportrait_core.driving.crop import PasteBack

#: OpenCV's fixed point for warpAffine: positions with AB_BITS fractional bits, rounded to 1/2**INTER_BITS px.
AB_BITS = 10
INTER_BITS = 5


def cv_source_positions(M: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source positions of ``cv2.warpAffine(src, M, size_wh, INTER_LINEAR)`` in 1/32 pixel (int64, HxW each).

    ``M`` maps source to destination (as passed to ``warpAffine``, float32 as stored); OpenCV inverts it in
    float64 and walks the destination in fixed point (``WarpAffineInvoker``), which this repeats.
    """
    m = np.asarray(M, np.float32)[:2].astype(np.float64).ravel().copy()
    d = m[0] * m[4] - m[1] * m[3]
    d = 1.0 / d if d != 0 else 0.0
    a11, a22 = m[4] * d, m[0] * d
    m[0], m[1], m[3], m[4] = a11, -m[1] * d, -m[3] * d, a22
    m[2], m[5] = -m[0] * m[2] - m[1] * m[5], -m[3] * m[2] - m[4] * m[5]
    w, h = size_wh
    scale = float(1 << AB_BITS)
    shift = AB_BITS - INTER_BITS
    round_delta = (1 << AB_BITS) // (1 << INTER_BITS) // 2
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    adelta, bdelta = np.rint(m[0] * xs * scale).astype(np.int64), np.rint(m[3] * xs * scale).astype(np.int64)
    x0 = np.rint((m[1] * ys + m[2]) * scale).astype(np.int64) + round_delta
    y0 = np.rint((m[4] * ys + m[5]) * scale).astype(np.int64) + round_delta
    return (x0[:, None] + adelta[None, :]) >> shift, (y0[:, None] + bdelta[None, :]) >> shift


def cv_sampling_grid(M: np.ndarray, size_wh: tuple[int, int], src_wh: tuple[int, int]) -> torch.Tensor:
    """The ``grid_sample`` grid (1, H, W, 2), ``align_corners=False``, that samples where warpAffine does."""
    X, Y = cv_source_positions(M, size_wh)
    sw, sh = src_wh
    one = 1 << INTER_BITS
    # pixel x ↔ normalised (2x + 1) / W − 1; with x = X / 32: (2X + 32) / (32 W) − 1 (exact for W = 2^k)
    gx = (2 * X + one) / float(one * sw) - 1.0
    gy = (2 * Y + one) / float(one * sh) - 1.0
    return torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))[None]


def warp_like_cv2(src: torch.Tensor, grid: torch.Tensor, *, replicate: bool = False) -> torch.Tensor:
    """Bilinear sample of an integer-valued float (N, C, h, w) at ``grid``, rounded as OpenCV rounds 8-bit."""
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border" if replicate else "zeros",
                        align_corners=False)
    return out.add_(0.5).floor_()


class DevicePasteBack:
    """``PasteBack.paste_bgra`` of one character on ``device``: the character's frame, with the face pasted.

    Made from the character's CPU ``PasteBack`` (the same mask, matrix and region) and its crop alpha. Per
    frame, ``paste(crop, out)`` writes into ``out`` only the face's box; ``new_frame()`` gives a frame
    buffer holding the character (colour and alpha) everywhere, which ``paste`` keeps valid for reuse.
    """

    def __init__(self, paste: "PasteBack", crop_alpha: np.ndarray | None, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.dsize = paste.dsize
        image, alpha = paste.image, paste.alpha
        h, w = image.shape[:2]
        self.size_hw = (h, w)
        self.roi = paste.roi
        x0, y0, x1, y1 = self.roi
        dev = self.device
        base = np.empty((h, w, 4), np.uint8)
        base[..., :3] = image
        base[..., 3] = 255 if alpha is None else alpha
        self._empty = x1 <= x0
        if self._empty:
            self._base = torch.from_numpy(base).to(dev)
            return
        # the CPU path's float32 arrays, computed with the same numpy operations (so: the same bits)
        m = paste.mask_ori[y0:y1, x0:x1, None]
        one_m = 1.0 - m
        background = image[y0:y1, x0:x1].astype(np.float32) * one_m
        M_roi = paste.M_c2o[:2].copy()
        M_roi[:, 2] -= (x0, y0)
        bw, bh = x1 - x0, y1 - y0
        grid = cv_sampling_grid(M_roi, (bw, bh), (self.dsize, self.dsize))
        chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(dev)  # noqa: E731
        self._grid = grid.to(dev)
        self._m = chw(m)
        self._background = chw(background)
        self._mixed: torch.Tensor | None = None
        if crop_alpha is not None:
            # the crop's alpha is the character's (constant): warped, covered and composited once
            a_src = torch.from_numpy(np.ascontiguousarray(crop_alpha, np.uint8)).float()[None, None]
            a_crop = warp_like_cv2(a_src, grid, replicate=True)[0].permute(1, 2, 0).numpy()  # (bh, bw, 1)
            cover_crop = a_crop.astype(np.float32) * (m / 255.0)
            ai = 1.0 if alpha is None else alpha[y0:y1, x0:x1, None].astype(np.float32) / 255.0
            alpha_cover = one_m * ai
            colour_cover = image[y0:y1, x0:x1].astype(np.float32) * alpha_cover
            see_through = (m > 0) & (True if alpha is None else alpha[y0:y1, x0:x1, None] < 255)
            total = cover_crop + alpha_cover
            mixed = (see_through | ((a_crop < 255) & (m > 0))) & (total > 1e-6)
            base[y0:y1, x0:x1, 3] = np.clip(total[..., 0] * 255.0 + 0.5, 0, 255)
            if mixed.any():
                self._mixed = chw(mixed)
                self._cover = chw(cover_crop)
                self._colour_cover = chw(colour_cover)
                self._total = chw(total)
                self._composite = torch.empty((1, 3, bh, bw), dtype=torch.float32, device=dev)
        self._base = torch.from_numpy(base).to(dev)
        self._colour = torch.empty((1, 3, bh, bw), dtype=torch.float32, device=dev)

    def new_frame(self) -> torch.Tensor:
        """An (H, W, 4) uint8 BGRA frame buffer on the device holding the character (made once per buffer)."""
        return self._base.clone()

    def paste(self, crop_bgr: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Paste the animated (3, dsize, dsize) BGR crop (uint8, or float holding integers) into ``out``.

        ``out`` is a frame from ``new_frame`` (or one ``paste`` wrote before): only the face's box is
        written, the rest already holds the character. Returns ``out``; nothing waits for the device.
        """
        if crop_bgr.shape != (3, self.dsize, self.dsize):
            raise ValueError(f"paste-back expects a 3x{self.dsize}x{self.dsize} crop, got {tuple(crop_bgr.shape)}")
        if self._empty:
            return out
        x0, y0, x1, y1 = self.roi
        src = crop_bgr[None] if crop_bgr.dtype == torch.float32 else crop_bgr[None].float()
        warped = warp_like_cv2(src, self._grid)
        colour = torch.mul(warped, self._m, out=self._colour).add_(self._background)  # the official blend
        if self._mixed is not None:  # see-through pixels: crop over character, straight alpha
            comp = torch.mul(warped, self._cover, out=self._composite).add_(self._colour_cover)
            comp.div_(self._total).add_(1e-3)
            colour = torch.where(self._mixed, comp, colour, out=self._colour)
        out[y0:y1, x0:x1, :3].copy_(colour.clamp_(0.0, 255.0)[0].permute(1, 2, 0))  # float → uint8 truncates
        return out
