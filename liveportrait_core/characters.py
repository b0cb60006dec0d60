"""The character library: find character images, check them, prepare each once, keep a few on the GPU.

Preparing a character (face landmarks, the official source crop, the appearance features f_s and the
motion extractor's view of the source) costs two network passes and a landmark pass; doing that on
every switch would stall the stream. So each prepared character is cached on disk, under a key made of
the file's content, the model's identity and everything else that changes the result, and the last
``characters.device_cache_size`` used ones stay on the device: a switch between them only swaps
references. User files are only ever read; the cache lives in its own folder.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from . import crop as crop_mod
from . import paths
from .images import CHARACTER_DIVISION, CHARACTER_MAX_DIM, ImageError, LoadedImage, list_images, load_image
from .settings import CharacterSettings, Settings

_log = logging.getLogger(__name__)

#: Bump when the preparation or the cache format changes: old cache entries are then ignored.
#: 2: entries also hold the paste-back mask in the image (``paste_mask``, ``paste_mask_roi``).
PREPARATION_VERSION = 2


class CharacterError(ValueError):
    """A character image cannot be used; the message names the file and what to do."""


# ------------------------------------------------------------------------------------------------
# finding files


def character_folders(cs: CharacterSettings) -> list[Path]:
    """The configured folders, in order: ``characters.folder`` then ``characters.extra_folders``."""
    out: list[Path] = []
    for f in [cs.folder, *cs.extra_folders]:
        if f:
            p = paths.resolve(f)
            if p not in out:
                out.append(p)
    return out


def list_character_files(cs: CharacterSettings) -> list[Path]:
    """Character image files in a stable order (folder order, then file name); missing folders are skipped."""
    files: list[Path] = []
    for folder in character_folders(cs):
        if not folder.is_dir():
            _log.debug("characters folder %s does not exist; skipped", folder)
            continue
        try:
            found = list_images(folder)
        except OSError as e:
            _log.warning("cannot list characters folder %s: %s", folder, e)
            continue
        files.extend(sorted(found, key=lambda p: (p.name.casefold(), p.name)))
    return files


# ------------------------------------------------------------------------------------------------
# the face in a character image


@dataclass
class SourceFace:
    """What the landmark pass says about the face in a character image (image pixels)."""

    eye_centre: np.ndarray  #: (2,) mean of the two eye centres
    lip_centre: np.ndarray  #: (2,) mouth centre
    points: np.ndarray  #: (N, 2) landmarks whose extent defines the crop box
    confidence: float
    eye_ratio: tuple[float, float]  #: open ratios (left, right), the tracker's convention
    lip_ratio: float
    roll_deg: float
    size_px: float  #: face size across, pixels


class FaceFinder(Protocol):
    def __call__(self, image_bgr: np.ndarray) -> SourceFace:
        """The face in a still BGR image (the largest when there are several); raises CharacterError
        with the reason (no face, not a human face, too small) when there is none to use."""


class TrackerFaceFinder:
    """The tracking package's character-image face finder (MediaPipe, static mode, confidence gate,
    small-face passes), opened on first use and kept for later images."""

    def __init__(self, min_face_px: int = 64, min_confidence: float = 0.8) -> None:
        self.min_face_px = min_face_px
        self.min_confidence = min_confidence
        self._finder = None
        self._lock = threading.Lock()

    def __call__(self, image_bgr: np.ndarray) -> SourceFace:
        from .tracking import landmarks as lm  # noqa: PLC0415
        from .tracking.character import CharacterFaceFinder  # noqa: PLC0415 - imports MediaPipe

        with self._lock:
            if self._finder is None:
                self._finder = CharacterFaceFinder(min_confidence=self.min_confidence, min_face_px=self.min_face_px)
            face = self._finder.find(image_bgr)
        if not face.found or face.landmarks is None:
            raise CharacterError(face.message)
        pts = face.landmarks
        eye, lip = lm.eye_lip_centres(pts)
        return SourceFace(eye_centre=eye, lip_centre=lip, points=pts[lm.CROP_POINTS], confidence=float(face.confidence),
                          eye_ratio=(float(face.eye_open[0]), float(face.eye_open[1])),
                          lip_ratio=float(face.mouth_open), roll_deg=float(face.roll), size_px=float(face.face_size_px))

    def close(self) -> None:
        with self._lock:
            if self._finder is not None:
                self._finder.close()
                self._finder = None


# ------------------------------------------------------------------------------------------------
# prepared characters


@dataclass
class PreparedCharacter:
    """Everything the animator needs about one character; ``to(device)`` gives the device copy."""

    name: str
    path: Path
    key: str  #: cache key (content, model, settings)
    image_bgr: np.ndarray  #: the character image after the official resize-to-limit
    alpha: np.ndarray | None  #: its alpha channel (None: opaque)
    crop: crop_mod.CropTransform  #: the official source crop (512)
    crop_rgb256: np.ndarray  #: the network input (RGB 256x256)
    crop_alpha512: np.ndarray | None  #: the alpha cut with the same crop (for compositing inside the face)
    face: SourceFace
    f_s: Any  #: torch (1, 32, 16, 64, 64) appearance features
    motion: dict[str, Any]  #: motion extractor outputs of the source (MotionInfo fields as tensors)
    device: Any = None
    paste_back: crop_mod.PasteBack | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image_bgr.shape[1], self.image_bgr.shape[0]

    def source_motion(self):
        """The ``animation.SourceMotion`` of this character (on its device)."""
        import torch  # noqa: PLC0415

        from .animation import SourceMotion  # noqa: PLC0415
        from .models.keypoints import MotionInfo  # noqa: PLC0415

        dev = self.f_s.device
        info = MotionInfo(**{k: v for k, v in self.motion.items()})
        return SourceMotion(info, torch.tensor([list(self.face.eye_ratio)], dtype=torch.float32, device=dev),
                            torch.tensor([[self.face.lip_ratio]], dtype=torch.float32, device=dev))

    def to(self, device) -> "PreparedCharacter":
        out = PreparedCharacter(**{**self.__dict__, "f_s": self.f_s.to(device),
                                   "motion": {k: v.to(device) for k, v in self.motion.items()}, "device": device})
        return out

    def ensure_paste_back(self) -> crop_mod.PasteBack:
        """The paste-back (mask warped into the image) of this character, made once."""
        if self.paste_back is None:
            self.paste_back = crop_mod.PasteBack(self.image_bgr, self.crop.M_c2o, self.alpha)
        return self.paste_back


def model_identity(models) -> str:
    """A short fingerprint of the appearance and motion networks' weights and precision.

    Hashes a sample of every tensor (its shape and first values), so official, animal and test weights,
    or fp16 and fp32, never share cache entries; costs a few small device reads once per start.
    """
    import torch  # noqa: PLC0415

    h = hashlib.sha256()
    h.update(str(getattr(models, "dtype", "")).encode())
    for name in ("appearance_feature_extractor", "motion_extractor"):
        module = models[name]
        for k, v in module.state_dict().items():
            h.update(k.encode())
            h.update(str(tuple(v.shape)).encode())
            sample = v.detach().reshape(-1)[:16].to("cpu", torch.float32).numpy()
            h.update(sample.tobytes())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(content_digest: str, model_id: str) -> str:
    """Content + model + what shapes the preparation (crop parameters, size limit, code version)."""
    parts = [content_digest, model_id, f"v{PREPARATION_VERSION}", f"crop{crop_mod.SOURCE_SCALE}/"
             f"{crop_mod.SOURCE_VY_RATIO}/{crop_mod.SOURCE_DSIZE}", f"limit{CHARACTER_MAX_DIM}/{CHARACTER_DIVISION}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def find_face(name: str, image_bgr: np.ndarray, face_finder: FaceFinder, min_face_px: int) -> SourceFace:
    """The face to animate, or CharacterError naming the file and saying what to do."""
    try:
        face = face_finder(image_bgr)
    except CharacterError as e:
        raise CharacterError(f"{name}: {e}") from None
    if face.size_px < min_face_px:
        raise CharacterError(f"{name}: the face is only {face.size_px:.0f} px across (at least {min_face_px} px "
                             "needed, 200+ looks best); use a larger or closer-cropped picture")
    return face


def load_character_image(path: Path, face_finder: FaceFinder, min_face_px: int = 64,
                         name: str | None = None) -> tuple[LoadedImage, SourceFace]:
    """Decode (with the size limit) and find the face: every check a character must pass before the
    networks see it. Raises CharacterError naming the file and the reason."""
    try:
        img = load_image(path, limit=True)
    except ImageError as e:
        raise CharacterError(str(e)) from None
    return img, find_face(name or path.name, img.bgr, face_finder, min_face_px)


def prepare_character(path: Path, models, face_finder: FaceFinder, *, min_face_px: int = 64,
                      name: str | None = None, key: str = "") -> PreparedCharacter:
    """Decode, find the face, cut the official source crop, run F and M once. Raises CharacterError."""
    import torch  # noqa: PLC0415

    from .models.keypoints import MotionInfo  # noqa: PLC0415

    name = name or path.name
    img, face = load_character_image(path, face_finder, min_face_px, name)
    rgb = np.ascontiguousarray(img.bgr[..., ::-1])
    transform = crop_mod.source_crop_transform(face.eye_centre, face.lip_centre, face.points)
    crop512 = crop_mod.warp_crop(rgb, transform.M_o2c, exact=True)
    crop256 = crop_mod.to_network_size(crop512)
    crop_alpha = None if img.alpha is None else crop_mod.warp_crop(img.alpha, transform.M_o2c, exact=True)
    dev = models.device
    x = torch.from_numpy(crop256).to(dev).permute(2, 0, 1)[None].float().div_(255.0).clamp_(0, 1)
    f_s = models.run("appearance_feature_extractor", x)
    info = MotionInfo.from_raw(models.run("motion_extractor", x))
    return PreparedCharacter(name=name, path=path, key=key, image_bgr=img.bgr, alpha=img.alpha, crop=transform,
                             crop_rgb256=crop256, crop_alpha512=crop_alpha, face=face, f_s=f_s,
                             motion=dict(info.__dict__), device=dev)


# ------------------------------------------------------------------------------------------------
# disk cache


_MOTION_KEYS = ("pitch", "yaw", "roll", "R", "kp", "exp", "t", "scale")


def save_prepared(p: PreparedCharacter, cache_dir: Path) -> Path:
    """Write the prepared data (never the user's image) atomically into the cache folder.

    With it goes the paste-back mask in the image's own pixels (made here if not yet made): only its
    bounding box, as the exact uint8 values ``PasteBack`` computes, so a cache hit skips that warp too.
    """
    roi, mask_box = p.ensure_paste_back().mask_box()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{p.key}.npz"
    tmp = cache_dir / f".{p.key}.{os.getpid()}.{threading.get_ident()}.tmp.npz"
    f = p.face
    arrays = {
        "f_s": p.f_s.detach().float().cpu().numpy(),
        "M_o2c": p.crop.M_o2c, "M_c2o": p.crop.M_c2o,
        "rect": np.array([*p.crop.rect.centre, p.crop.rect.size, p.crop.rect.angle], np.float64),
        "crop_rgb256": p.crop_rgb256,
        "face_eye_centre": f.eye_centre, "face_lip_centre": f.lip_centre, "face_points": f.points,
        "face_scalars": np.array([f.confidence, f.eye_ratio[0], f.eye_ratio[1], f.lip_ratio, f.roll_deg, f.size_px],
                                 np.float64),
        "paste_mask_roi": np.array(roi, np.int64), "paste_mask": mask_box,
        "version": np.array(PREPARATION_VERSION),
    }
    arrays.update({f"motion_{k}": p.motion[k].detach().float().cpu().numpy() for k in _MOTION_KEYS})
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, target)
    return target


def load_prepared(path: Path, name: str, key: str, device, cache_dir: Path) -> PreparedCharacter | None:
    """The cached preparation of ``path`` (re-reading the image itself), or None when absent, unreadable or
    not matching the image (e.g. a paste-back mask of another size): the caller then prepares again."""
    import torch  # noqa: PLC0415

    file = cache_dir / f"{key}.npz"
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            if int(z["version"]) != PREPARATION_VERSION:
                return None
            a = {k: z[k] for k in z.files}
        img = load_image(path, limit=True)
        mask = crop_mod.mask_from_box(a["paste_mask_roi"], a["paste_mask"], img.bgr.shape[:2])
        paste_back = crop_mod.PasteBack(img.bgr, a["M_c2o"], img.alpha, mask_ori=mask)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        _log.warning("ignoring unreadable cache entry %s (%s); preparing %s again", file, e, name)
        return None
    cx, cy, size, angle = a["rect"]
    rect = crop_mod.CropRect(np.array([cx, cy], np.float32), float(size), float(angle))
    transform = crop_mod.CropTransform(rect=rect, dsize=crop_mod.SOURCE_DSIZE, M_o2c=a["M_o2c"], M_c2o=a["M_c2o"])
    conf, el, er, lip, roll, fsize = (float(v) for v in a["face_scalars"])
    face = SourceFace(a["face_eye_centre"], a["face_lip_centre"], a["face_points"], conf, (el, er), lip, roll, fsize)
    crop_alpha = None if img.alpha is None else crop_mod.warp_crop(img.alpha, transform.M_o2c, exact=True)
    motion = {k: torch.from_numpy(a[f"motion_{k}"]).to(device) for k in _MOTION_KEYS}
    return PreparedCharacter(name=name, path=path, key=key, image_bgr=img.bgr, alpha=img.alpha, crop=transform,
                             crop_rgb256=a["crop_rgb256"], crop_alpha512=crop_alpha, face=face,
                             f_s=torch.from_numpy(a["f_s"]).to(device), motion=motion, device=device,
                             paste_back=paste_back)


# ------------------------------------------------------------------------------------------------
# the library


@dataclass
class _Entry:
    name: str
    path: Path
    stamp: tuple[int, int]  #: (mtime_ns, size) when last seen
    digest: str | None = None  #: content hash for that stamp


class CharacterLibrary:
    """The ordered list of character files, their preparation and the device LRU cache.

    Thread-safe: the engine lists and selects from any thread, the animator prepares on the inference
    thread.
    """

    def __init__(self, settings: Settings, models, face_finder: FaceFinder | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.models = models
        self._face_finder = face_finder
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        self._device: "OrderedDict[str, PreparedCharacter]" = OrderedDict()
        self._errors: dict[str, str] = {}
        self._model_id: str | None = None
        self._last_scan = -1e18
        self.prepare_calls = 0  #: full preparations run (network passes), for tests and status
        self.update_settings(settings)

    # -- settings and scanning ---------------------------------------------------------------------
    def update_settings(self, settings: Settings) -> None:
        with self._lock:
            self.settings = settings
            cs = settings.characters
            self.cache_dir = paths.resolve(cs.cache_dir) if cs.cache_dir else paths.user_cache_dir() / "characters"
            while len(self._device) > cs.device_cache_size:
                self._device.popitem(last=False)
            finder = self._face_finder
            if isinstance(finder, TrackerFaceFinder) and (finder.min_face_px, finder.min_confidence) != (
                    cs.min_face_px, cs.min_face_confidence):
                self._face_finder = None  # new thresholds: refused images get another chance on next use
            self.rescan(force=True)

    @property
    def face_finder(self) -> FaceFinder:
        if self._face_finder is None:
            cs = self.settings.characters
            self._face_finder = TrackerFaceFinder(cs.min_face_px, cs.min_face_confidence)
        return self._face_finder

    def rescan(self, force: bool = False) -> list[str]:
        """Pick up added, removed and changed files (at most every ``rescan_s``); returns changed names."""
        with self._lock:
            now = self._clock()
            every = self.settings.characters.rescan_s
            if not force and (every <= 0 or now - self._last_scan < every):
                return []
            self._last_scan = now
            found: "OrderedDict[str, _Entry]" = OrderedDict()
            for p in list_character_files(self.settings.characters):
                name = p.name if p.name not in found else f"{p.parent.name}/{p.name}"
                try:
                    st = p.stat()
                except OSError:
                    continue
                old = self._entries.get(name)
                stamp = (st.st_mtime_ns, st.st_size)
                found[name] = old if (old is not None and old.path == p and old.stamp == stamp) else _Entry(name, p, stamp)
            changed = [n for n in set(found) | set(self._entries)
                       if n not in found or n not in self._entries or found[n] is not self._entries[n]]
            for n in changed:
                self._device.pop(n, None)
                self._errors.pop(n, None)
            if changed and self._entries:
                _log.info("characters changed: %s", ", ".join(sorted(changed)))
            self._entries = found
            return sorted(changed)

    # -- listing -----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def path(self, name: str) -> Path:
        with self._lock:
            return self._entry(name).path

    def errors(self) -> dict[str, str]:
        """Characters that could not be prepared, with the reason."""
        with self._lock:
            return dict(self._errors)

    def slots(self) -> list[str]:
        """Characters for hotkeys 1-9: ``hotkeys.character_slots`` when set, else the library order."""
        with self._lock:
            wanted = [s for s in self.settings.hotkeys.character_slots if s]
            return (wanted or list(self._entries))[:9]

    def resolve(self, key: int | str) -> str:
        """A slot (0-based: hotkey 1 is slot 0, the engine's convention) or a file name (or its stem)."""
        with self._lock:
            if isinstance(key, int):
                slots = self.slots()
                if not 0 <= key < len(slots):
                    raise CharacterError(f"no character in slot {key + 1}; {len(slots)} slot(s) are filled "
                                         f"({', '.join(slots) or 'no characters found'})")
                key = slots[key]
            if key in self._entries:
                return key
            matches = [n for n in self._entries if Path(n).name == key or Path(n).stem == key]
            if len(matches) == 1:
                return matches[0]
            raise CharacterError(f"unknown character {key!r}; found: {', '.join(self._entries) or 'none'} "
                                 f"(in {', '.join(map(str, character_folders(self.settings.characters)))})")

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise CharacterError(f"unknown character {name!r}") from None

    # -- preparing ---------------------------------------------------------------------------------
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = model_identity(self.models)
        return self._model_id

    def get(self, name: str) -> PreparedCharacter:
        """The prepared character on the device: from the LRU, the disk cache, or prepared now."""
        with self._lock:
            name = self.resolve(name)
            hit = self._device.get(name)
            if hit is not None:
                self._device.move_to_end(name)
                return hit
            entry = self._entry(name)
            try:
                prepared = self._load_or_prepare(entry)
            except CharacterError as e:
                self._errors[name] = str(e)
                _log.warning("%s", e)
                raise
            self._errors.pop(name, None)
            prepared.ensure_paste_back()
            self._device[name] = prepared
            while len(self._device) > self.settings.characters.device_cache_size:
                self._device.popitem(last=False)
            return prepared

    def close(self) -> None:
        """Release the device copies and the face finder (MediaPipe)."""
        with self._lock:
            self._device.clear()
            close = getattr(self._face_finder, "close", None)
            if close is not None:
                close()

    def check(self, name: str) -> SourceFace:
        """The checks of a preparation without the networks (decode, face, size): fast, and possible before
        the models load. Raises CharacterError (also kept in ``errors()``)."""
        with self._lock:
            name = self.resolve(name)
            entry = self._entry(name)
            try:
                _img, face = load_character_image(entry.path, self.face_finder,
                                                  self.settings.characters.min_face_px, name)
            except CharacterError as e:
                self._errors[name] = str(e)
                raise
            return face

    def cached_on_device(self) -> list[str]:
        with self._lock:
            return list(self._device)

    def _load_or_prepare(self, entry: _Entry) -> PreparedCharacter:
        try:
            if entry.digest is None:
                entry.digest = file_digest(entry.path)
        except OSError as e:
            raise CharacterError(f"{entry.path}: cannot read the file ({e.strerror or e})") from None
        key = cache_key(entry.digest, self.model_id())
        cached = load_prepared(entry.path, entry.name, key, self.models.device, self.cache_dir)
        if cached is not None:
            _log.info("character %s loaded from the cache", entry.name)
            return cached
        t0 = time.perf_counter()
        self.prepare_calls += 1
        prepared = prepare_character(entry.path, self.models, self.face_finder,
                                     min_face_px=self.settings.characters.min_face_px, name=entry.name, key=key)
        _log.info("character %s prepared in %.2f s", entry.name, time.perf_counter() - t0)
        try:
            save_prepared(prepared, self.cache_dir)
        except OSError as e:
            _log.warning("cannot write the character cache in %s (%s); %s will be prepared again next time",
                         self.cache_dir, e.strerror or e, entry.name)
        return prepared


def check_chosen_character(settings: Settings) -> str:
    """The explicitly chosen character (``characters.active``, e.g. from ``--character``), checked before
    anything heavy loads: its library name, or CharacterError naming the file and why it cannot be used.
    An explicit choice is refused loudly, never replaced by another file of its folder."""
    library = CharacterLibrary(settings, models=None)
    try:
        name = library.resolve(settings.characters.active)
        library.check(name)
        return name
    finally:
        library.close()


# ------------------------------------------------------------------------------------------------
# check-character: verdict, advice, animated-region mask


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


def animated_region_mask(path: Path, min_face_px: int = 64, face_finder: FaceFinder | None = None,
                         min_confidence: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(mask, overlay) for a character image: the paste-back mask in the image's own pixels (uint8, 255 =
    animated) and the image with everything outside the animated region dimmed (BGR)."""
    img, face = load_character_image(path, face_finder or TrackerFaceFinder(min_face_px, min_confidence), min_face_px)
    transform = crop_mod.source_crop_transform(face.eye_centre, face.lip_centre, face.points)
    mask = crop_mod.PasteBack(img.bgr, transform.M_c2o).mask_ori
    overlay = (img.bgr.astype(np.float32) * (0.35 + 0.65 * mask[..., None])).astype(np.uint8)
    return (mask * 255.0 + 0.5).astype(np.uint8), overlay


#: A face this many pixels across (or more) fills the 512 crop's face without upscaling (512 / 2.3 ≈ 222).
_SHARP_FACE_PX = 200
#: Official lip-normalisation threshold: a source mouth more open than this is "open".
_MOUTH_OPEN = 0.03
_EYES_CLOSED = 0.12


def assess(report: dict[str, Any], min_face_px: int = 64) -> tuple[str, list[str]]:
    """Verdict ("good", "usable", "unusable") and advice for one ``check-character`` report (as a dict)."""
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
    if size < _SHARP_FACE_PX:
        advice.append(f"the face is {size:.0f} px across{shrunk}; {_SHARP_FACE_PX}+ px gives a sharper animation"
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
    keep = int(file_px * max(lw, lh) / _SHARP_FACE_PX)
    return (f" after loading ({file_px:.0f} px in the file; characters are reduced to {max(lw, lh)} px on the long "
            f"side: {fw}x{fh} -> {lw}x{lh})",
            f"crop the picture around the head, keeping hair and shoulders, to at most {keep} px on its long side")
