"""Preparing a character for the networks: decode, find the face (or take it from the image's sidecar), cut the
official source crop, run the appearance and motion networks once. ``PreparedCharacter`` is what the animator
needs of one character: with its sidecar (per-character settings, mask) and the model variant it was made by."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liveportrait_core.driving import crop as crop_mod
from liveportrait_core.characters.faces import SHARP_FACE_PX, CharacterError, FaceFinder, SourceFace
from liveportrait_core.characters.sidecar import Sidecar, cut_mask
from liveportrait_core.images import ImageError, LoadedImage, load_image


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
    sidecar: Sidecar | None = None  #: the image's sidecar (its settings and mask), None without one
    variant: str = "human"  #: the weights variant whose networks prepared it (and must animate it)

    @property
    def size(self) -> tuple[int, int]:
        return self.image_bgr.shape[1], self.image_bgr.shape[0]

    def source_motion(self):
        """The ``animation.SourceMotion`` of this character (on its device)."""
        import torch  # noqa: PLC0415

        from liveportrait_core.driving.animation import SourceMotion
        from liveportrait_core.models.networks.keypoints import MotionInfo

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
            polygon = self.sidecar.mask if self.sidecar is not None else None
            if polygon is not None:  # the sidecar's mask cuts the official one
                cut = cut_mask(self.paste_back.mask_ori,
                               polygon * np.float32(image_scale(self.image_bgr, self.sidecar_size)))
                mask = np.clip(cut * 255.0 + 0.5, 0, 255).astype(np.uint8)
                self.paste_back = crop_mod.PasteBack(self.image_bgr, self.crop.M_c2o, self.alpha, mask_ori=mask)
        return self.paste_back

    @property
    def sidecar_size(self) -> int:
        """The longest side of the image as the sidecar measures it (the file's own pixels)."""
        return int(getattr(self.sidecar, "image_long_side", 0) or max(self.size))


def require_face_size(name: str, face: SourceFace, min_face_px: int) -> SourceFace:
    """``face``, or CharacterError when it is too small to animate (``characters.min_face_px``)."""
    if face.size_px < min_face_px:
        raise CharacterError(f"{name}: the face is only {face.size_px:.0f} px across (at least {min_face_px} px "
                             f"needed, {SHARP_FACE_PX}+ looks best); use a larger or closer-cropped picture")
    return face


def find_face(name: str, image_bgr: np.ndarray, face_finder: FaceFinder, min_face_px: int) -> SourceFace:
    """The face to animate, or CharacterError naming the file and saying what to do."""
    try:
        face = face_finder(image_bgr)
    except CharacterError as e:
        raise CharacterError(f"{name}: {e}") from None
    return require_face_size(name, face, min_face_px)


def image_scale(image_bgr: np.ndarray, long_side: int) -> float:
    """Loaded pixels per file pixel: characters are scaled down on load (``images.CHARACTER_MAX_DIM``), and a
    sidecar's coordinates are the file's."""
    return max(image_bgr.shape[:2]) / max(1, long_side)


def sidecar_face(name: str, img: LoadedImage, sidecar: Sidecar, min_face_px: int) -> SourceFace:
    """The face the sidecar places, in the loaded image's pixels; SidecarError when it lies outside the
    picture, CharacterError when it is too small."""
    long_side = max(img.original_size) or max(img.size)
    s = image_scale(img.bgr, long_side)
    w, h = img.size
    sidecar.check_within((round(w / s), round(h / s)))
    sidecar.image_long_side = long_side
    return require_face_size(name, sidecar.face.scaled(s).source_face(), min_face_px)


def load_character_image(path: Path, face_finder: FaceFinder, min_face_px: int,
                         name: str | None = None, sidecar: Sidecar | None = None) -> tuple[LoadedImage, SourceFace]:
    """Decode (with the size limit) and find the face — or take it from the image's ``sidecar`` when it places
    one (detection is skipped): every check a character must pass before the networks see it. Raises
    CharacterError naming the file and the reason."""
    try:
        img = load_image(path, limit=True)
    except ImageError as e:
        raise CharacterError(str(e)) from None
    if sidecar is not None:
        sidecar.image_long_side = max(img.original_size) or max(img.size)
        if sidecar.face is not None:
            return img, sidecar_face(name or path.name, img, sidecar, min_face_px)
    return img, find_face(name or path.name, img.bgr, face_finder, min_face_px)


def prepare_character(path: Path, models, face_finder: FaceFinder, *, min_face_px: int,
                      name: str | None = None, key: str = "", sidecar: Sidecar | None = None) -> PreparedCharacter:
    """Decode, find the face (or take the sidecar's), cut the official source crop, run F and M once. Raises
    CharacterError."""
    import torch  # noqa: PLC0415

    from liveportrait_core.models.networks.keypoints import MotionInfo

    name = name or path.name
    img, face = load_character_image(path, face_finder, min_face_px, name, sidecar)
    rgb = np.ascontiguousarray(img.bgr[..., ::-1])
    transform = face.crop_transform()
    crop512 = crop_mod.warp_crop(rgb, transform.M_o2c, exact=True)
    crop256 = crop_mod.to_network_size(crop512)
    crop_alpha = None if img.alpha is None else crop_mod.warp_crop(img.alpha, transform.M_o2c, exact=True)
    dev = models.device
    x = torch.from_numpy(crop256).to(dev).permute(2, 0, 1)[None].float().div_(255.0).clamp_(0, 1)
    f_s = models.run("appearance_feature_extractor", x)
    info = MotionInfo.from_raw(models.run("motion_extractor", x))
    return PreparedCharacter(name=name, path=path, key=key, image_bgr=img.bgr, alpha=img.alpha, crop=transform,
                             crop_rgb256=crop256, crop_alpha512=crop_alpha, face=face, f_s=f_s,
                             motion=dict(info.__dict__), device=dev, sidecar=sidecar,
                             variant=getattr(models, "variant", "human"))
