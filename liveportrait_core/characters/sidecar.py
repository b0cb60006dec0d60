"""The sidecar of a character image: where the face is, what to animate, and the character's own settings.

A sidecar is a YAML file next to the image, named after it with ``.yaml`` added (``cat.png`` ->
``cat.png.yaml``). When it places the face, detection is skipped for that image: the face is where the sidecar
says, which is how characters the face finder refuses (animals, anime, mascots) are used. Coordinates are the
image's own pixels as it is displayed (x right, y down); a character scaled down on load
(``images.CHARACTER_MAX_DIM``) has them scaled with it.

```yaml
face:                          # optional; without it the face finder runs (with the settings below)
  left_eye: [260, 345]         # centre of the eye on the image's left
  right_eye: [395, 340]
  mouth: [340, 412]            # centre of the mouth
  landmarks: [[x, y], ...]     # optional: more face points; the face box is the extent of all points
  box: [x, y, width, height]   # the face box, instead of (or as well as) the points
  crop_scale: 2.3              # optional: crop side over the face box (official 2.3)
  crop_vy: -0.125              # optional: crop shift along the face, of its size (official -0.125)
  eye_open: [0.3, 0.3]         # optional: how open the eyes are (official ratio; default: open)
  mouth_open: 0.0              # optional: how open the mouth is (official ratio; default: closed)
mask: [[x, y], [x, y], ...]    # optional polygon: only inside it is the animation pasted back
settings:                      # optional: this character's own settings (validated like the settings file)
  model: {variant: animal}
  animation: {region: all, driving_multiplier: 1.5, eye_close_boost: 1.0}
  characters: {min_face_confidence: 0.5}
```

The crop is the official source crop (``crop.source_crop_transform``) of the points: the mean of the eye
centres, the mouth centre and the extent of every point given (a box counts as its four corners). The
settings a sidecar may set are ``CHARACTER_SETTINGS``; their values are checked by ``settings.apply_overrides``
(the one schema: ranges, choices and defaults live there). A bad sidecar raises ``SidecarError`` (a
``CharacterError``) whose lines name the file and the field; the library keeps it in its errors and the engine
keeps running. Sidecars are the user's files: this module only writes one on an explicit request, and never
over an existing file (``write_sidecar``).
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import yaml

from liveportrait_core import settings as settings_mod
from liveportrait_core.characters.faces import CharacterError, SourceFace
from liveportrait_core.driving import crop as crop_mod
from liveportrait_core.settings import SettingsError
from liveportrait_core.tracking import landmarks as lm

#: ``cat.png`` -> ``cat.png.yaml``
SUFFIX = ".yaml"
#: Settings a character may set for itself (dotted keys of ``settings.Settings``).
CHARACTER_SETTINGS = ("animation.region", "animation.driving_multiplier", "animation.eye_close_boost",
                      "animation.stitching", "animation.relative_motion", "animation.animal_driving", "model.variant",
                      "characters.min_face_confidence")
#: Allowed ranges of the crop adjustments (the official Gradio app offers 1.8-3.2 and -0.5-0.5; three hand-placed
#: points span less than a face, so larger scales are allowed).
CROP_SCALE_RANGE = (1.0, 6.0)
CROP_VY_RANGE = (-0.5, 0.5)
#: The confidence a hand-placed face reports (it is not a detector score).
PLACED_CONFIDENCE = 1.0
_FACE_KEYS = ("left_eye", "right_eye", "mouth", "landmarks", "box", "crop_scale", "crop_vy", "eye_open", "mouth_open")
_TOP_KEYS = ("face", "mask", "settings", "version")


class SidecarError(CharacterError):
    """A sidecar cannot be used; one line per bad field, each naming the file and the field."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        self.path = Path(path)
        self.errors = list(errors)
        head = f"{self.path}: " + (errors[0] if len(errors) == 1 else f"{len(errors)} fields are wrong:")
        body = "" if len(errors) == 1 else "\n" + "\n".join(f"  {e}" for e in errors)
        super().__init__(head + body + "; fix the file or run place-face on the image to make a new one")

    @property
    def fields(self) -> list[str]:
        """The field named by each error line (``face.left_eye``, ``settings.animation.region``, ...)."""
        return [e.split(":", 1)[0] for e in self.errors]


def sidecar_path(image: str | os.PathLike[str]) -> Path:
    """Where the sidecar of ``image`` lives: beside it, the image's full name plus ``.yaml``."""
    p = Path(image)
    return p.with_name(p.name + SUFFIX)


@dataclass
class PlacedFace:
    """A face placed by hand (image pixels as displayed): the three crop anchors and/or a box."""

    left_eye: np.ndarray | None = None  #: (2,)
    right_eye: np.ndarray | None = None  #: (2,)
    mouth: np.ndarray | None = None  #: (2,)
    landmarks: np.ndarray | None = None  #: (N, 2) more points for the face box
    box: tuple[float, float, float, float] | None = None  #: x, y, width, height
    crop_scale: float = crop_mod.SOURCE_SCALE
    crop_vy: float = crop_mod.SOURCE_VY_RATIO
    eye_open: tuple[float, float] = (lm.EYE_OFFICIAL_OPEN, lm.EYE_OFFICIAL_OPEN)
    mouth_open: float = 0.0

    @property
    def has_points(self) -> bool:
        return self.left_eye is not None and self.right_eye is not None and self.mouth is not None

    def scaled(self, s: float) -> "PlacedFace":
        """The same face in an image scaled by ``s`` (the character's size limit on load)."""
        def sc(a):
            return None if a is None else np.asarray(a, np.float32) * np.float32(s)
        box = None if self.box is None else tuple(float(v) * s for v in self.box)
        return PlacedFace(sc(self.left_eye), sc(self.right_eye), sc(self.mouth), sc(self.landmarks), box,
                          self.crop_scale, self.crop_vy, self.eye_open, self.mouth_open)

    def anchors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(eye centre, mouth centre, points whose extent is the face box) for the official crop. A box alone
        gives an upright face (eyes above the mouth on the box's vertical centre line)."""
        pts: list[np.ndarray] = []
        if self.has_points:
            eye = (np.asarray(self.left_eye, np.float32) + np.asarray(self.right_eye, np.float32)) / 2
            lip = np.asarray(self.mouth, np.float32)
            pts += [np.asarray(self.left_eye, np.float32), np.asarray(self.right_eye, np.float32), lip]
        if self.box is not None:
            x, y, w, h = self.box
            pts += [np.array(p, np.float32) for p in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))]
            if not self.has_points:
                eye, lip = np.array([x + w / 2, y + h * 0.4], np.float32), np.array([x + w / 2, y + h * 0.8], np.float32)
        if self.landmarks is not None:
            pts += list(np.asarray(self.landmarks, np.float32).reshape(-1, 2))
        if not pts:
            raise ValueError("a placed face needs the eyes and the mouth, or a box")
        return eye, lip, np.stack(pts).astype(np.float32)

    def crop_transform(self) -> crop_mod.CropTransform:
        """The official source crop of this face (rotated with the eye-mouth axis)."""
        eye, lip, pts = self.anchors()
        return crop_mod.source_crop_transform(eye, lip, pts, scale=self.crop_scale, vy_ratio=self.crop_vy)

    def source_face(self) -> SourceFace:
        """What a preparation keeps of this face (``faces.SourceFace``)."""
        eye, lip, pts = self.anchors()
        rect = self.crop_transform().rect
        return SourceFace(eye_centre=eye, lip_centre=lip, points=pts, confidence=PLACED_CONFIDENCE,
                          eye_ratio=(float(self.eye_open[0]), float(self.eye_open[1])),
                          lip_ratio=float(self.mouth_open), roll_deg=math.degrees(rect.angle),
                          # the face the crop frames, as the official crop (x2.3) would: three points span
                          # less than a face, and crop_scale makes up for it
                          size_px=float(rect.size) / crop_mod.SOURCE_SCALE, crop_scale=self.crop_scale,
                          crop_vy=self.crop_vy)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k in ("left_eye", "right_eye", "mouth"):
            v = getattr(self, k)
            if v is not None:
                d[k] = [_num(c) for c in np.asarray(v).reshape(2)]
        if self.landmarks is not None and len(self.landmarks):
            d["landmarks"] = [[_num(c) for c in p] for p in np.asarray(self.landmarks).reshape(-1, 2)]
        if self.box is not None:
            d["box"] = [_num(c) for c in self.box]
        if self.crop_scale != crop_mod.SOURCE_SCALE:
            d["crop_scale"] = round(float(self.crop_scale), 3)
        if self.crop_vy != crop_mod.SOURCE_VY_RATIO:
            d["crop_vy"] = round(float(self.crop_vy), 3)
        if tuple(self.eye_open) != (lm.EYE_OFFICIAL_OPEN, lm.EYE_OFFICIAL_OPEN):
            d["eye_open"] = [round(float(v), 3) for v in self.eye_open]
        if self.mouth_open:
            d["mouth_open"] = round(float(self.mouth_open), 3)
        return d


@dataclass
class Sidecar:
    """A parsed, validated sidecar."""

    path: Path
    face: PlacedFace | None = None
    mask: np.ndarray | None = None  #: (N, 2) polygon, image pixels as displayed
    settings: dict[str, Any] = field(default_factory=dict)  #: dotted key -> validated value
    digest: str = ""  #: content hash (part of the preparation cache key)
    image_long_side: int = 0  #: the image's long side in its own pixels, once applied to it (for scaling)

    @property
    def variant(self) -> str | None:
        """The model variant this character asks for (None: the global ``model.variant``)."""
        return self.settings.get("model.variant")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": 1}
        if self.face is not None:
            d["face"] = self.face.to_dict()
        if self.mask is not None:
            d["mask"] = [[_num(c) for c in p] for p in self.mask]
        if self.settings:
            nested: dict[str, Any] = {}
            for k, v in self.settings.items():
                section, name = k.split(".", 1)
                nested.setdefault(section, {})[name] = v
            d["settings"] = nested
        return d

    def check_within(self, size: tuple[int, int]) -> None:
        """SidecarError when a face point or the mask lies outside an image of ``size`` (width, height, as
        displayed): a sidecar made for another picture, or coordinates swapped."""
        w, h = size
        errors = []
        pts: dict[str, np.ndarray] = {}
        if self.face is not None:
            for k in ("left_eye", "right_eye", "mouth"):
                if getattr(self.face, k) is not None:
                    pts[f"face.{k}"] = np.asarray(getattr(self.face, k)).reshape(1, 2)
            if self.face.box is not None:
                x, y, bw, bh = self.face.box
                pts["face.box"] = np.array([[x, y], [x + bw, y + bh]])
        if self.mask is not None:
            pts["mask"] = self.mask
        for name, p in pts.items():
            bad = (p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] > w) | (p[:, 1] > h)
            if bad.any():
                first = p[np.argmax(bad)]
                errors.append(f"{name}: [{_num(first[0])}, {_num(first[1])}] lies outside the {w}x{h} image "
                              "(coordinates are the image's own pixels, x right, y down)")
        if errors:
            raise SidecarError(self.path, errors)


def extent_corners(eye_centre: np.ndarray, lip_centre: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The four corners (image pixels) of the box ``points`` span in the face's own frame (x across the eyes,
    y down the eye-mouth axis): as ``landmarks`` they give the same official crop as all of ``points``
    (check-character's starting sidecar keeps the detected face this way, four points instead of a hundred)."""
    rect_pts = np.asarray(points, np.float32)
    uy = np.asarray(lip_centre, np.float32) - np.asarray(eye_centre, np.float32)
    n = float(np.linalg.norm(uy))
    uy = np.array([0, 1], np.float32) if n <= 1e-3 else uy / np.float32(n)
    ux = np.array((uy[1], -uy[0]), np.float32)
    axes = np.array([ux, uy])
    r = rect_pts @ axes.T
    lo, hi = r.min(axis=0), r.max(axis=0)
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]], np.float32)
    return (corners @ axes).astype(np.float32)


def _num(v: float) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() else round(f, 2)


# ------------------------------------------------------------------------------------------------
# reading


def load_sidecar(image: str | os.PathLike[str]) -> Sidecar | None:
    """The sidecar of ``image``, validated; None when there is none. Raises SidecarError."""
    path = sidecar_path(image)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SidecarError(path, [f"file: cannot be read ({e.strerror or e})"]) from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise SidecarError(path, [f"file: not valid YAML ({e})"]) from None
    sc = parse_sidecar(data, path)
    sc.digest = hashlib.sha256(raw).hexdigest()
    return sc


def sidecar_stamp(image: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(mtime_ns, size) of the sidecar of ``image``, None when there is none: a change re-prepares the image."""
    try:
        st = sidecar_path(image).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def parse_sidecar(data: Any, path: str | os.PathLike[str]) -> Sidecar:
    """A ``Sidecar`` from YAML data; SidecarError lists every bad field at once."""
    path = Path(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SidecarError(path, [f"file: must be a mapping with face, mask and/or settings, got {_short(data)}"])
    errors: list[str] = []
    for k in data:
        if k not in _TOP_KEYS:
            errors.append(f"{k}: unknown field; known: {', '.join(_TOP_KEYS)}")
    face = _parse_face(data.get("face"), errors) if data.get("face") is not None else None
    mask = None
    if data.get("mask") is not None:
        mask = _points("mask", data["mask"], errors, min_n=3)
    chosen = _parse_settings(data.get("settings"), errors) if data.get("settings") is not None else {}
    if errors:
        raise SidecarError(path, errors)
    return Sidecar(path=path, face=face, mask=mask, settings=chosen)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_number(c: Any) -> bool:
    """A finite int or float from YAML (``true`` is a bool, not 1)."""
    return isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c)


def _point(name: str, v: Any, errors: list[str]) -> np.ndarray | None:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(map(_is_number, v)):
        errors.append(f"{name}: {_short(v)} is not a point; write [x, y] in image pixels")
        return None
    return np.array(v, np.float32)


def _points(name: str, v: Any, errors: list[str], min_n: int = 1) -> np.ndarray | None:
    if not isinstance(v, (list, tuple)) or len(v) < min_n:
        errors.append(f"{name}: {_short(v)} is not a list of at least {min_n} points [[x, y], ...]")
        return None
    n = len(errors)
    pts = [_point(f"{name}[{i}]", p, errors) for i, p in enumerate(v)]
    return None if len(errors) > n else np.stack(pts).astype(np.float32)


def _number(name: str, v: Any, lo: float, hi: float, errors: list[str]) -> float | None:
    if not _is_number(v):
        errors.append(f"{name}: {_short(v)} is not a number")
        return None
    if not lo <= v <= hi:
        errors.append(f"{name}: {v} is out of range; allowed: {lo} to {hi}")
        return None
    return float(v)


def _parse_face(v: Any, errors: list[str]) -> PlacedFace | None:
    if not isinstance(v, Mapping):
        errors.append(f"face: {_short(v)} must be a mapping (left_eye, right_eye, mouth and/or box)")
        return None
    n = len(errors)
    for k in v:
        if k not in _FACE_KEYS:
            errors.append(f"face.{k}: unknown field; known: {', '.join(_FACE_KEYS)}")
    f = PlacedFace()
    for k in ("left_eye", "right_eye", "mouth"):
        if v.get(k) is not None:
            setattr(f, k, _point(f"face.{k}", v[k], errors))
    given = [k for k in ("left_eye", "right_eye", "mouth") if v.get(k) is not None]
    if given and len(given) < 3:
        missing = [k for k in ("left_eye", "right_eye", "mouth") if k not in given]
        errors.append(f"face.{missing[0]}: missing; the eyes and the mouth go together "
                      f"(given: {', '.join(given)})")
    if v.get("landmarks") is not None:
        f.landmarks = _points("face.landmarks", v["landmarks"], errors)
    if v.get("box") is not None:
        b = v["box"]
        if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(map(_is_number, b)):
            errors.append(f"face.box: {_short(b)} is not a box; write [x, y, width, height] in image pixels")
        elif b[2] <= 0 or b[3] <= 0:
            errors.append(f"face.box: width and height must be positive, got {b[2]} x {b[3]}")
        else:
            f.box = tuple(float(c) for c in b)
    if not given and v.get("box") is None:
        errors.append("face: give left_eye, right_eye and mouth, or a box [x, y, width, height]")
    if v.get("crop_scale") is not None:
        f.crop_scale = _number("face.crop_scale", v["crop_scale"], *CROP_SCALE_RANGE, errors) or f.crop_scale
    if v.get("crop_vy") is not None:
        vy = _number("face.crop_vy", v["crop_vy"], *CROP_VY_RANGE, errors)
        f.crop_vy = f.crop_vy if vy is None else vy
    if v.get("eye_open") is not None:
        e = v["eye_open"]
        if not isinstance(e, (list, tuple)) or len(e) != 2:
            errors.append(f"face.eye_open: {_short(e)} is not [left, right]")
        else:
            vals = [_number(f"face.eye_open[{i}]", x, 0.0, 1.0, errors) for i, x in enumerate(e)]
            if None not in vals:
                f.eye_open = (vals[0], vals[1])
    if v.get("mouth_open") is not None:
        m = _number("face.mouth_open", v["mouth_open"], 0.0, 1.0, errors)
        f.mouth_open = f.mouth_open if m is None else m
    if len(errors) == n and f.has_points:
        d = float(np.linalg.norm(f.right_eye - f.left_eye))
        if d < 2:
            errors.append("face.right_eye: lies on face.left_eye; click the centre of each eye")
        elif float(np.linalg.norm(f.mouth - (f.left_eye + f.right_eye) / 2)) < 2:
            errors.append("face.mouth: lies between the eyes; click the centre of the mouth")
    return f if len(errors) == n else None


def _flatten(v: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(v, Mapping):
        for k, sub in v.items():
            _flatten(sub, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = v


def _parse_settings(v: Any, errors: list[str]) -> dict[str, Any]:
    """Allowed keys only, each validated by the settings schema (``settings.apply_overrides``)."""
    if not isinstance(v, Mapping):
        errors.append(f"settings: {_short(v)} must be a mapping, e.g. {{animation: {{region: exp}}}}")
        return {}
    flat: dict[str, Any] = {}
    _flatten(v, "", flat)
    out: dict[str, Any] = {}
    base = settings_mod.Settings()
    for key, value in flat.items():
        if key not in CHARACTER_SETTINGS:
            errors.append(f"settings.{key}: cannot be set per character; allowed here: {', '.join(CHARACTER_SETTINGS)}")
            continue
        try:
            out[key] = settings_mod.apply_overrides(base, {key: value}).get(key)
        except SettingsError as e:
            for line in e.errors:
                errors.append(f"settings.{key}: {line.removeprefix(f'setting {key!r}: ')}")
    return out


# ------------------------------------------------------------------------------------------------
# applying


def character_settings(settings: settings_mod.Settings, sidecar: Sidecar | None) -> settings_mod.Settings:
    """The settings one character runs with: the global ones, its variant's defaults
    (``variant_defaults``), then its sidecar's own settings. ``settings`` itself is not changed."""
    variant = (sidecar.variant if sidecar is not None else None) or settings.model.variant
    own = dict(sidecar.settings) if sidecar is not None else {}
    defaults = {k: v for k, v in variant_defaults(settings, variant).items() if k not in own}
    if not own and not defaults:
        return settings
    return settings_mod.apply_overrides(settings, {**defaults, **own})


def variant_defaults(settings: settings_mod.Settings, variant: str) -> dict[str, Any]:
    """What the official animal pipeline does differently (``live_portrait_pipeline_animal.py``): no
    stitching unless ``animation.animal_stitching`` asks for it (official "not recommended")."""
    if variant != "animal":
        return {}
    return {"animation.stitching": settings.animation.animal_stitching}


def mask_in_image(polygon: np.ndarray, size_hw: tuple[int, int], feather_px: int = crop_mod.MASK_RAMP_PX) -> np.ndarray:
    """The mask polygon filled (uint8 0/255) with a linear-ish feather of ``feather_px`` inward, so the
    animated region fades out like the official mask's border ramp."""
    h, w = size_hw
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(polygon).astype(np.int32).reshape(-1, 1, 2)], 255)
    if feather_px > 0:
        inner = cv2.distanceTransform((m > 0).astype(np.uint8), cv2.DIST_L2, 5)
        m = (np.clip(inner / feather_px, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return m


def cut_mask(mask: np.ndarray, polygon: np.ndarray | None) -> np.ndarray:
    """``mask`` (HxW float 0..1, the official paste-back mask in the image) cut by the sidecar's mask
    ``polygon`` (image pixels; None: as it is): what the engine, place-face and check-character animate."""
    if polygon is None:
        return mask
    return mask * (mask_in_image(polygon, mask.shape[:2]).astype(np.float32) / 255.0)


# ------------------------------------------------------------------------------------------------
# writing (only on request, never over an existing file)


HEADER = ("# LivePortrait character sidecar for {name}: where the face is (image pixels, x right, y down),\n"
          "# what is animated and this character's own settings. docs/CHARACTER_GUIDE.md explains every field.\n")


def dump_sidecar(sc: Sidecar, image_name: str = "") -> str:
    return HEADER.format(name=image_name or sc.path.name[: -len(SUFFIX)]) + yaml.safe_dump(
        sc.to_dict(), sort_keys=False, default_flow_style=None)


def write_sidecar(sc: Sidecar, target: str | os.PathLike[str] | None = None) -> Path:
    """Write ``sc`` to ``target`` (default: ``sc.path``), refusing to replace an existing file: a sidecar is
    the user's file. Raises FileExistsError with the way out (another name, or remove the old one)."""
    p = Path(target) if target is not None else sc.path
    text = dump_sidecar(sc, image_name=sc.path.name[: -len(SUFFIX)] if sc.path.name.endswith(SUFFIX) else "")
    parse_sidecar(yaml.safe_load(text), p)  # what is written reads back
    try:
        with open(p, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise FileExistsError(f"{p} already exists and is never overwritten; remove or rename it first, or save "
                              f"under another name (it is only read as {sidecar_path('IMAGE').name} beside the "
                              "image)") from None
    return p


def free_name(path: Path) -> Path:
    """``path`` when it does not exist, else the first free ``name.N.yaml`` beside it (for a save that must
    not replace the user's sidecar)."""
    if not path.exists():
        return path
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    n = 2
    while (cand := path.with_name(f"{stem}.{n}{SUFFIX}")).exists():
        n += 1
    return cand
