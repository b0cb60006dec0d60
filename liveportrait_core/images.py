"""Read character images (PNG, JPEG, WebP) into BGR uint8 plus an optional alpha channel.

Whatever the file holds — grayscale, 16-bit, with or without alpha, rotated by an EXIF tag — the
rest of the engine sees one shape: ``bgr`` HxWx3 uint8 and ``alpha`` HxW uint8 or None. Anything
that cannot be turned into that raises ``ImageError`` with a message that names the file and says
what to do. Files are only ever read.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_log = logging.getLogger(__name__)

#: Extensions the character library accepts.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
#: Official ``source_max_dim`` / ``source_division``.
OFFICIAL_MAX_DIM = 1280
OFFICIAL_DIVISION = 2
#: A character's longest side is scaled down to this when it is loaded (the official ``source_max_dim``;
#: not a setting): it bounds the per-frame paste-back and the memory a character holds, and the networks
#: see a 512x512 face crop either way. ``outputs.width/height`` scale the frames from there.
CHARACTER_MAX_DIM = OFFICIAL_MAX_DIM
#: The official code crops sides to even numbers (for its video writer), losing a row or column of odd
#: sizes; characters keep their exact size and only the video recorder rounds (outputs/recorder.py).
CHARACTER_DIVISION = 1
#: Refuse images whose decoded size would exhaust memory (about 16K×16K).
MAX_PIXELS = 16384 * 16384


class ImageError(ValueError):
    """An image file cannot be used; the message names the file and the fix."""


@dataclass
class LoadedImage:
    """A decoded image: ``bgr`` HxWx3 uint8, ``alpha`` HxW uint8 (None when the file has none)."""

    path: Path
    bgr: np.ndarray
    alpha: np.ndarray | None = None
    original_size: tuple[int, int] = (0, 0)  #: (width, height) as stored in the file

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after orientation and resizing."""
        return self.bgr.shape[1], self.bgr.shape[0]

    def bgra(self) -> np.ndarray:
        """HxWx4 uint8 (opaque alpha when the file has none)."""
        a = self.alpha if self.alpha is not None else np.full(self.bgr.shape[:2], 255, np.uint8)
        return np.dstack([self.bgr, a])


def load_image(path: str | os.PathLike[str], *, limit: bool = False, max_dim: int = CHARACTER_MAX_DIM,
               division: int = CHARACTER_DIVISION) -> LoadedImage:
    """Decode ``path``; with ``limit`` apply ``resize_to_limit`` (longest side ≤ ``max_dim``, sides a
    multiple of ``division`` by cropping the last rows/columns: by default the exact size is kept)."""
    p = Path(path)
    if p.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ImageError(f"{p}: unsupported file type '{p.suffix}'; use one of {', '.join(IMAGE_EXTENSIONS)}")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)  # works with non-ASCII paths on Windows, unlike imread
    except OSError as e:
        raise ImageError(f"{p}: cannot read the file ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageError(f"{p}: the file is empty")
    raw = data.tobytes()
    meta = _pil_image(raw)
    _check_animated(meta, str(p))
    img = decode_image(raw, name=str(p))
    original = (img.shape[1], img.shape[0])
    img = _apply_exif_orientation(img, meta, str(p))
    bgr, alpha = to_bgr_alpha(img, name=str(p))
    if limit:
        bgr, alpha = resize_to_limit(bgr, alpha, max_dim=max_dim, division=division)
        if bgr.shape[:2] != img.shape[:2] and max(img.shape[:2]) > max_dim > 0:
            _tell_once(f"{p.name}: {img.shape[1]}x{img.shape[0]} scaled down to {bgr.shape[1]}x{bgr.shape[0]} "
                       f"(characters are limited to {max_dim} px on the longest side)")
    return LoadedImage(path=p, bgr=bgr, alpha=alpha, original_size=original)


_told: set[str] = set()


def _tell_once(message: str) -> None:
    """Log ``message`` once per process (a character is read by the check, the preparation and the cache)."""
    if message not in _told:
        _told.add(message)
        _log.info("%s", message)


def decode_image(data: bytes, name: str = "<image>") -> np.ndarray:
    """``cv2.imdecode`` with ``IMREAD_UNCHANGED`` (keeps alpha and 16-bit), with clear errors."""
    buf = np.frombuffer(data, np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ImageError(f"{name}: cannot decode the image ({e.err}); re-save it as PNG or JPEG") from None
    if img is None:
        raise ImageError(f"{name}: not a readable PNG/JPEG/WebP image (corrupt or another format); "
                         "re-save it as PNG or JPEG")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageError(f"{name}: {img.shape[1]}x{img.shape[0]} is too large; scale it down below 16384x16384")
    return img


def to_bgr_alpha(img: np.ndarray, name: str = "<image>") -> tuple[np.ndarray, np.ndarray | None]:
    """Any decoded array → (BGR uint8, alpha uint8 or None)."""
    img = _to_uint8(img, name)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), None
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2BGR), None
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(img[..., 0]), cv2.COLOR_GRAY2BGR), np.ascontiguousarray(img[..., 1])
    if channels == 3:
        return img, None
    if channels == 4:
        alpha = np.ascontiguousarray(img[..., 3])
        bgr = np.ascontiguousarray(img[..., :3])
        return bgr, (None if alpha.min() == 255 else alpha)
    raise ImageError(f"{name}: {channels} colour channels are not supported; re-save it as RGB or RGBA PNG")


def _to_uint8(img: np.ndarray, name: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # round to nearest: 65535 → 255, 257·k → k
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        _log.info("%s: floating-point image, assuming values in 0..1", name)
        return (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ImageError(f"{name}: pixel type {img.dtype} is not supported; re-save it as an 8-bit PNG or JPEG")


def resize_to_limit(bgr: np.ndarray, alpha: np.ndarray | None = None, *, max_dim: int = OFFICIAL_MAX_DIM,
                    division: int = OFFICIAL_DIVISION) -> tuple[np.ndarray, np.ndarray | None]:
    """The official ``resize_to_limit``: shrink (bilinear) so the longest side is ``max_dim``, then crop
    the last rows/columns so both sides are multiples of ``division`` (skipped if that leaves nothing)."""
    h, w = bgr.shape[:2]
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            new_h, new_w = max_dim, int(w * (max_dim / h))
        else:
            new_w, new_h = max_dim, int(h * (max_dim / w))
        bgr = cv2.resize(bgr, (new_w, new_h))
        alpha = None if alpha is None else cv2.resize(alpha, (new_w, new_h))
    division = max(division, 1)
    h, w = bgr.shape[:2]
    new_h, new_w = h - h % division, w - w % division
    if new_h and new_w and (new_h, new_w) != (h, w):
        bgr = np.ascontiguousarray(bgr[:new_h, :new_w])
        alpha = None if alpha is None else np.ascontiguousarray(alpha[:new_h, :new_w])
    return bgr, alpha


def _pil_image(data: bytes):
    """The file opened with Pillow for its metadata only (lazy: pixels are not decoded), or None when
    Pillow is missing or cannot read it."""
    try:
        import io

        from PIL import Image
    except ImportError:  # a declared dependency; without it EXIF orientation and animation are not checked
        return None
    try:
        return Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - metadata is best effort; OpenCV decides whether the image is readable
        return None


def _check_animated(im, name: str) -> None:
    if im is not None and getattr(im, "is_animated", False) and getattr(im, "n_frames", 1) > 1:
        _log.warning("%s is animated (%d frames); only its first frame is used", name, im.n_frames)


_EXIF_ORIENTATION = 0x0112


def _apply_exif_orientation(img: np.ndarray, im, name: str) -> np.ndarray:
    """Rotate/flip as the EXIF orientation tag says (cameras store portraits sideways)."""
    if im is None:
        return img
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, the pixels are fine
        return img
    ops = {2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
           4: lambda a: cv2.flip(a, 0), 5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
           6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
           7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
           8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}
    if orientation in ops:
        _log.debug("%s: applying EXIF orientation %d", name, orientation)
        return ops[orientation](img)
    return img


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    d = Path(folder)
    return sorted(p for p in d.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
