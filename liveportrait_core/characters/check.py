"""The ``check-character`` report: is each image usable as a character, what will the crop be, and what
would make it better?

One face finder (``faces.CharacterFaceFinder``, with the thresholds of ``settings.CharacterSettings``) looks
at each image once; the report holds its measurements, the file's format, a verdict with advice
(``assess``) and the previews: the official source crop, the animated-region mask and the image with the
region outside it dimmed. Reads the images, never writes next to them: previews go to a separate output
folder, and a folder that holds any of the checked images is refused as the output folder.

An image with a sidecar (``sidecar.py``, ``IMAGE.yaml``) that places the face is measured as the engine will
use it: detection is skipped, the report says "face from sidecar" (``face_source``), and the previews show the
placed crop and the mask polygon. ``write_sidecars`` writes a starting sidecar for images without one, from the
detected face or, for a refused image, its best candidate — the only file this module writes beside an image,
on that explicit request, and never over an existing one.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from liveportrait_core.driving import crop
from liveportrait_core import images, paths
from liveportrait_core.characters.faces import (SHARP_FACE_PX, CharacterError, CharacterFace, CharacterFaceFinder,
                                                SourceFace)
from liveportrait_core.characters import sidecar as sidecar_mod
from liveportrait_core.characters.preparation import image_scale, require_face_size, sidecar_face
from liveportrait_core.tracking import landmarks as lm
from liveportrait_core.settings import CharacterSettings

_log = logging.getLogger(__name__)

#: Official lip-normalisation threshold: a source mouth more open than this is "open".
_MOUTH_OPEN = 0.03
_EYES_CLOSED = 0.12


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
    format: str = ""  #: what the file's bytes say (``image_format``), whatever its extension
    mask_preview: str | None = None
    region_preview: str | None = None
    verdict: str = ""  #: "good", "usable" or "unusable" (``assess``)
    advice: list[str] = field(default_factory=list)
    face_source: str = ""  #: "sidecar" (placed by hand in IMAGE.yaml), "detector", or "" (no face)
    sidecar: str | None = None  #: the sidecar read (or written) for this image

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("confidence", "roll_deg", "pitch_deg", "yaw_deg", "face_size_px", "face_size_px_file",
                  "face_size_ratio", "mouth_open", "min_confidence"):
            d[k] = round(float(d[k]), 4)
        d["eye_open"] = [round(float(v), 4) for v in self.eye_open]
        d["image_size"], d["loaded_size"] = list(self.image_size), list(self.loaded_size)
        d["warnings"], d["advice"] = list(self.warnings), list(self.advice)
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


def check_images(paths: Iterable[str | os.PathLike[str]], settings: CharacterSettings | None = None,
                 out_dir: str | os.PathLike[str] | None = None, write_sidecars: bool = False) -> list[CharacterReport]:
    """Check each image (files and/or folders) with ``settings``' thresholds (the defaults when None); write
    ``<name>.crop.png``, ``<name>.mask.png`` and ``<name>.region.png`` into ``out_dir`` (None: no previews).
    ``write_sidecars``: write a starting ``IMAGE.yaml`` for each image without one (``starting_sidecar``).
    Raises ValueError for an output folder among the images, ``TrackerUnavailable`` without MediaPipe."""
    cs = settings or CharacterSettings()
    files = expand_paths(paths)
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        check_out_dir(out, files)
    with CharacterFaceFinder(cs) as finder:
        if out is not None and files:
            out.mkdir(parents=True, exist_ok=True)
        return [_check_one(finder, f, out, cs, write_sidecars) for f in files]


def _check_one(finder: CharacterFaceFinder, path: Path, out: Path | None, cs: CharacterSettings,
               write_sidecar: bool = False) -> CharacterReport:
    rep = CharacterReport(file=str(path), format=image_format(path), min_confidence=finder.min_confidence)
    written: Path | None = None
    try:
        img = images.load_image(path, limit=True)
        sc = sidecar_mod.load_sidecar(path)
        if sc is not None:
            rep.sidecar = str(sc.path)
    except images.ImageError as e:
        rep.error = rep.message = str(e)
    except sidecar_mod.SidecarError as e:
        rep.error = rep.message = str(e)
        rep.sidecar = str(e.path)
    else:
        if sc is not None and sc.face is not None:
            _measure_placed(rep, img, sc, out, cs)
        else:
            own = sc.settings.get("characters.min_face_confidence") if sc is not None else None
            threshold, finder.min_confidence = finder.min_confidence, own or finder.min_confidence
            try:
                rep.min_confidence = finder.min_confidence
                face = finder.find(img.bgr)
            finally:
                finder.min_confidence = threshold
            _measure(rep, img, face, out, cs)
            if write_sidecar and sc is None:
                written = _write_starting_sidecar(rep, img, face)
    rep.verdict, rep.advice = assess(rep.to_dict(), cs)
    if written is not None:  # measured again as the engine will now see it: the face from the new sidecar
        again = _check_one(finder, path, out, cs)
        origin = "the detected face" if rep.face_found else \
            f"the refused best candidate (scored {rep.confidence:.2f}): check the crop preview"
        again.advice.insert(0, f"starting sidecar written from {origin}; correct it with "
                            + paths.cli_command("place-face", str(path)))
        return again
    return rep


def starting_sidecar(img: images.LoadedImage, face: CharacterFace, path: Path) -> sidecar_mod.Sidecar | None:
    """A sidecar placing the detected face — or a refused image's best candidate — in the file's own pixels:
    the eye centres, the mouth centre and the four corners of the face box (``sidecar.extent_corners``: the
    same crop as detection). None when there was not even a candidate."""
    pts = face.landmarks if face.found and face.landmarks is not None else face.candidate
    if pts is None:
        return None
    s = image_scale(img.bgr, max(img.original_size) or max(img.size))
    pts = np.asarray(pts, np.float32) / np.float32(s)
    left = pts[list(lm.EYE_IMAGE_LEFT)].mean(axis=0)
    right = pts[list(lm.EYE_IMAGE_RIGHT)].mean(axis=0)
    mouth = pts[list(lm.MOUTH_CORNERS)].mean(axis=0)
    eye, lip = lm.eye_lip_centres(pts)
    placed = sidecar_mod.PlacedFace(left_eye=left, right_eye=right, mouth=mouth,
                                    landmarks=sidecar_mod.extent_corners(eye, lip, pts[lm.CROP_POINTS]))
    if face.found:
        placed.eye_open, placed.mouth_open = (float(face.eye_open[0]), float(face.eye_open[1])), float(face.mouth_open)
    return sidecar_mod.Sidecar(path=sidecar_mod.sidecar_path(path), face=placed)


def _write_starting_sidecar(rep: CharacterReport, img: images.LoadedImage, face: CharacterFace) -> Path | None:
    sc = starting_sidecar(img, face, Path(rep.file))
    if sc is None:
        rep.warnings.append("no sidecar written: not even a weak face candidate; place the face by hand: "
                            + paths.cli_command("place-face", rep.file))
        return None
    try:
        return sidecar_mod.write_sidecar(sc)
    except (FileExistsError, OSError) as e:
        rep.warnings.append(f"no sidecar written: {e}")
        return None


def _measure_placed(rep: CharacterReport, img: images.LoadedImage, sc: sidecar_mod.Sidecar, out: Path | None,
                    cs: CharacterSettings) -> None:
    """The report of a face placed by the image's sidecar: detection is skipped, as in the engine."""
    path = Path(rep.file)
    rep.image_size, rep.loaded_size, rep.has_alpha = file_size(img), img.size, img.alpha is not None
    rep.face_source, rep.message = "sidecar", f"face from sidecar {sc.path.name}"
    try:
        face = sidecar_face(path.name, img, sc, 1)
    except CharacterError as e:
        rep.error = rep.message = str(e)
        return
    rep.face_found, rep.confidence, rep.roll_deg = True, face.confidence, face.roll_deg
    rep.face_size_px = face.size_px
    rep.face_size_ratio = face.size_px / max(1, min(img.size))
    rep.face_size_px_file = face.size_px * max(rep.image_size) / max(1, max(rep.loaded_size))
    rep.eye_open, rep.mouth_open = face.eye_ratio, face.lip_ratio
    if out is None:
        return
    transform = face.crop_transform()
    preview = crop.warp_crop(img.bgra() if img.alpha is not None else img.bgr, transform.M_o2c, exact=True)
    rep.crop_preview = _write_png(out / f"{path.stem}.crop.png", preview)
    polygon = None if sc.mask is None else sc.mask * np.float32(image_scale(img.bgr, sc.image_long_side))
    mask, overlay = animated_region(img.bgr, face, polygon)
    rep.mask_preview = _write_png(out / f"{path.stem}.mask.png", mask)
    rep.region_preview = _write_png(out / f"{path.stem}.region.png", overlay)


def _measure(rep: CharacterReport, img: images.LoadedImage, face: CharacterFace, out: Path | None,
             cs: CharacterSettings) -> None:
    path = Path(rep.file)
    rep.image_size, rep.loaded_size, rep.has_alpha = file_size(img), img.size, img.alpha is not None
    rep.face_found, rep.message, rep.confidence = face.found, face.message, face.confidence
    rep.face_source = "detector" if face.found else ""
    rep.warnings = list(face.warnings)
    if not face.found or face.crop is None:
        return
    rep.roll_deg, rep.pitch_deg, rep.yaw_deg = face.roll, face.pitch, face.yaw
    rep.face_size_px, rep.face_size_ratio = face.face_size_px, face.face_size_ratio
    rep.face_size_px_file = face.face_size_px * max(rep.image_size) / max(1, max(rep.loaded_size))
    rep.eye_open, rep.mouth_open = face.eye_open, face.mouth_open
    if out is None:
        return
    preview = crop.warp_crop(img.bgra() if img.alpha is not None else img.bgr, face.crop.M_o2c, exact=True)
    rep.crop_preview = _write_png(out / f"{path.stem}.crop.png", preview)
    try:
        mask, overlay = animated_region(img.bgr, require_face_size(path.name, face.source_face(), cs.min_face_px))
    except CharacterError as e:
        rep.warnings.append(f"no mask preview: {e}")
        return
    rep.mask_preview = _write_png(out / f"{path.stem}.mask.png", mask)
    rep.region_preview = _write_png(out / f"{path.stem}.region.png", overlay)


def _write_png(path: Path, image: np.ndarray) -> str | None:
    """Write ``image`` as PNG; its absolute path, or None when it could not be encoded."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        return None
    path.write_bytes(buf.tobytes())
    return str(path.resolve())


def file_size(img: images.LoadedImage) -> tuple[int, int]:
    """The file's own (width, height) as the picture is shown: ``original_size`` is as stored, so an
    EXIF rotation by 90° swaps it (detected by the loaded image's orientation)."""
    w, h = img.original_size
    lw, lh = img.size
    if not (w and h):
        return img.size
    return (h, w) if (w > h) != (lw > lh) and w != h and lw != lh else (w, h)


def image_format(path: Path) -> str:
    """The format the file's bytes say (PNG, JPEG, WebP), whatever its extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return "unreadable"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head.startswith(b"\xff\xd8"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return "unknown"


def animated_region(image_bgr: np.ndarray, face: SourceFace,
                    polygon: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, overlay) for a character image and its ``SourceFace``: the paste-back mask in the image's own
    pixels (uint8, 255 = animated), cut by a sidecar's mask ``polygon`` (image pixels) when given, and the
    image with everything outside the animated region dimmed (BGR)."""
    mask = sidecar_mod.cut_mask(crop.PasteBack(image_bgr, face.crop_transform().M_c2o).mask_ori, polygon)
    overlay = (image_bgr.astype(np.float32) * (0.35 + 0.65 * mask[..., None])).astype(np.uint8)
    return (mask * 255.0 + 0.5).astype(np.uint8), overlay


def assess(report: dict[str, Any], settings: CharacterSettings | None = None) -> tuple[str, list[str]]:
    """Verdict ("good", "usable", "unusable") and advice for one report (as a dict, ``CharacterReport.to_dict``),
    with ``settings``' smallest face size (the default when None)."""
    min_face_px = (settings or CharacterSettings()).min_face_px
    if report.get("error"):
        return "unusable", [str(report["error"])]
    if not report.get("face_found"):  # the finder's message says why and what to do (threshold, risks)
        return "unusable", [str(report.get("message") or "no face found; use a picture with one clearly "
                                "visible, roughly frontal human face")]
    advice: list[str] = []
    size = float(report.get("face_size_px", 0))
    shrunk, fix = _shrink_note(report, size)
    if size < min_face_px:
        return "unusable", [f"the face is only {size:.0f} px across{shrunk} (at least {min_face_px} needed); "
                            + (fix or "use a larger or closer-cropped picture")]
    if size < SHARP_FACE_PX:
        advice.append(f"the face is {size:.0f} px across{shrunk}; {SHARP_FACE_PX}+ px gives a sharper animation"
                      + (f": {fix}" if fix else ""))
    if float(report.get("face_size_ratio", 0)) > 0.7:
        advice.append("the face fills the picture; leave room around it (the animated crop is 2.3x the face), "
                      "or the crop will have black borders")
    if abs(float(report.get("yaw_deg", 0))) > 25 or abs(float(report.get("pitch_deg", 0))) > 25:
        advice.append("the face is turned away from the camera; a frontal face animates best")
    if abs(float(report.get("roll_deg", 0))) > 30:
        advice.append("the head is strongly tilted; an upright face animates best")
    if float(report.get("mouth_open", 0)) > _MOUTH_OPEN:
        advice.append("the mouth is open; a closed mouth works best (or set animation.normalize_lip=true)")
    eyes = report.get("eye_open") or (1.0, 1.0)
    if min(float(e) for e in eyes) < _EYES_CLOSED:
        advice.append("the eyes look closed or narrow; open eyes work best")
    if 0 < float(report.get("confidence", 1.0)) < 0.9:
        advice.append("the face is hard to recognise (stylised or partly hidden); check the preview")
    if report.get("format") not in (None, "PNG", "JPEG", "WebP"):
        advice.append(f"the file's content is {report.get('format')}; re-save it as PNG or JPEG")
    advice.extend(str(w) for w in report.get("warnings", []) if "faces found" in str(w))
    advice = list(dict.fromkeys(advice))  # each piece of advice once
    return ("good" if not advice else "usable"), advice


def _shrink_note(report: dict[str, Any], size: float) -> tuple[str, str]:
    """(note, fix) when loading scaled the image down: the face's size in the file, and how to keep more of
    it. "Use a larger picture" would be false advice for an image already larger than what is kept."""
    file_px = float(report.get("face_size_px_file") or size)
    (fw, fh), (lw, lh) = report.get("image_size") or (0, 0), report.get("loaded_size") or (0, 0)
    if not (lw and lh) or max(fw, fh) <= max(lw, lh) or file_px < size + 1:
        return "", ""
    keep = int(file_px * max(lw, lh) / SHARP_FACE_PX)
    return (f" after loading ({file_px:.0f} px in the file; characters are reduced to {max(lw, lh)} px on the long "
            f"side: {fw}x{fh} -> {lw}x{lh})",
            f"crop the picture around the head, keeping hair and shoulders, to at most {keep} px on its long side")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The reports (``to_dict``) as a table; what was not measured reads "-" (no face: no ratio or roll; an
    unreadable file: no size and no candidate score), never a zero that looks like a measurement."""
    lines = [f"{'image':28} {'format':6} {'size':>10} {'alpha':5} {'face':4} {'conf':>5} {'ratio':>5} {'roll':>6}  verdict"]
    for r in rows:
        w, h = r.get("image_size") or (0, 0)
        size = f"{w}x{h}" if w and h else "-"
        found = r["face_found"]
        conf = f"{r['confidence']:5.2f}" if found or r["confidence"] > 0 else "-"
        conf = "hand" if r.get("face_source") == "sidecar" else conf
        ratio, roll = (f"{r['face_size_ratio']:5.2f}", f"{r['roll_deg']:6.1f}") if found else ("-", "-")
        lines.append(f"{Path(r['file']).name[:28]:28} {r['format']:6} {size:>10} {'yes' if r['has_alpha'] else 'no':5} "
                     f"{'yes' if found else 'NO':4} {conf:>5} {ratio:>5} {roll:>6}  {r['verdict'].upper()}")
        for a in r["advice"]:
            lines.append(f"    - {a}")
        if r.get("face_source") == "sidecar":
            lines.append(f"    face from sidecar: {r.get('sidecar')}")
        for k, label in (("crop_preview", "crop"), ("mask_preview", "animated region mask"),
                         ("region_preview", "animated region")):
            if r.get(k):
                lines.append(f"    {label}: {r[k]}")
    return "\n".join(lines)
