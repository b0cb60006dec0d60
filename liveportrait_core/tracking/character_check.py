"""The ``check-character`` report: is each image usable as a character, and what will the crop be?

Reads the images, never writes next to them: crop previews go to a separate output folder, and a
folder that holds any of the checked images is refused as the output folder.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2

from liveportrait_core import crop, images
from liveportrait_core.tracking.character import CharacterFaceFinder

_log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = "check-character"


@dataclass
class CharacterReport:
    """One image's result, ready for JSON (``to_dict``)."""

    file: str
    face_found: bool = False
    message: str = ""
    confidence: float = 0.0
    roll_deg: float = 0.0
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0
    face_size_px: float = 0.0  #: in the image as loaded (what the crop is cut from)
    face_size_px_file: float = 0.0  #: in the file's own pixels (larger when the image was scaled down)
    face_size_ratio: float = 0.0
    image_size: tuple[int, int] = (0, 0)  #: the file's own size (width, height), as displayed
    loaded_size: tuple[int, int] = (0, 0)  #: after loading: longest side at most images.CHARACTER_MAX_DIM
    min_confidence: float = 0.0  #: the threshold the face was judged with
    has_alpha: bool = False
    eye_open: tuple[float, float] = (0.0, 0.0)
    mouth_open: float = 0.0
    crop_preview: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("confidence", "roll_deg", "pitch_deg", "yaw_deg", "face_size_px", "face_size_px_file",
                  "face_size_ratio", "mouth_open", "min_confidence"):
            d[k] = round(float(d[k]), 4)
        d["eye_open"] = [round(float(v), 4) for v in self.eye_open]
        d["image_size"], d["loaded_size"] = list(self.image_size), list(self.loaded_size)
        return d


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given plus the images directly inside given folders."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(images.list_images(p) if p.is_dir() else [p])
    return out


def check_out_dir(out_dir: Path, files: list[Path]) -> None:
    """Refuse an output folder that holds any checked image (previews must never land among user files)."""
    target = out_dir.resolve()
    for f in files:
        if f.resolve().parent == target:
            raise ValueError(f"output folder {out_dir} holds the image {f.name}; choose another --out folder "
                             "(previews are never written next to your images)")


def check_characters(paths: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
                     *, previews: bool = True, min_confidence: float | None = None,
                     min_face_px: int | None = None) -> list[CharacterReport]:
    """Check each image (files and/or folders); write ``<name>.crop.png`` previews into ``out_dir``."""
    files = expand_paths(paths)
    out = Path(out_dir)
    if previews:
        check_out_dir(out, files)
    kwargs = {k: v for k, v in (("min_confidence", min_confidence), ("min_face_px", min_face_px)) if v is not None}
    reports = []
    with CharacterFaceFinder(**kwargs) as finder:
        for f in files:
            reports.append(_check_one(finder, f, out if previews else None))
            reports[-1].min_confidence = finder.min_confidence
    return reports


def _check_one(finder: CharacterFaceFinder, path: Path, out: Path | None) -> CharacterReport:
    rep = CharacterReport(file=str(path))
    try:
        img = images.load_image(path, limit=True)
    except images.ImageError as e:
        rep.error = rep.message = str(e)
        return rep
    rep.image_size, rep.loaded_size, rep.has_alpha = file_size(img), img.size, img.alpha is not None
    face = finder.find(img.bgr)
    rep.face_found, rep.message, rep.confidence = face.found, face.message, face.confidence
    rep.warnings = list(face.warnings)
    if not face.found or face.crop is None:
        return rep
    rep.roll_deg, rep.pitch_deg, rep.yaw_deg = face.roll, face.pitch, face.yaw
    rep.face_size_px, rep.face_size_ratio = face.face_size_px, face.face_size_ratio
    rep.face_size_px_file = face.face_size_px * max(rep.image_size) / max(1, max(rep.loaded_size))
    rep.eye_open, rep.mouth_open = face.eye_open, face.mouth_open
    if out is not None:
        preview = crop.warp_crop(img.bgra() if img.alpha is not None else img.bgr, face.crop.M_o2c, exact=True)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{path.stem}.crop.png"
        ok, buf = cv2.imencode(".png", preview)
        if ok:
            target.write_bytes(buf.tobytes())
            rep.crop_preview = str(target.resolve())
    return rep


def file_size(img: images.LoadedImage) -> tuple[int, int]:
    """The file's own (width, height) as the picture is shown: ``original_size`` is as stored, so an
    EXIF rotation by 90° swaps it (detected by the loaded image's orientation)."""
    w, h = img.original_size
    lw, lh = img.size
    if not (w and h):
        return img.size
    return (h, w) if (w > h) != (lw > lh) and w != h and lw != lh else (w, h)
