"""The disk cache of prepared characters: one ``<key>.npz`` per preparation, under a key made of the file's
content, the model's identity and everything else that changes the result. Only prepared data is written,
atomically, in its own folder; the user's image is re-read, never copied or modified."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

from liveportrait_core.driving import crop as crop_mod
from liveportrait_core.characters.faces import SourceFace
from liveportrait_core.characters.preparation import PreparedCharacter
from liveportrait_core.images import CHARACTER_DIVISION, CHARACTER_MAX_DIM, load_image

_log = logging.getLogger(__name__)

#: Bump when the preparation or the cache format changes: old cache entries are then ignored.
#: 2: entries also hold the paste-back mask in the image (``paste_mask``, ``paste_mask_roi``).
#: 3: the face's crop scale and shift (a sidecar may set them) are kept with it.
PREPARATION_VERSION = 3

_MOTION_KEYS = ("pitch", "yaw", "roll", "R", "kp", "exp", "t", "scale")


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


def cache_key(content_digest: str, model_id: str, sidecar_digest: str = "") -> str:
    """Content + model + what shapes the preparation (crop parameters, size limit, code version) + the image's
    sidecar (``sidecar.Sidecar.digest``: a placed face, a mask; "" when there is none)."""
    parts = [content_digest, model_id, f"v{PREPARATION_VERSION}", f"crop{crop_mod.SOURCE_SCALE}/"
             f"{crop_mod.SOURCE_VY_RATIO}/{crop_mod.SOURCE_DSIZE}", f"limit{CHARACTER_MAX_DIM}/{CHARACTER_DIVISION}"]
    if sidecar_digest:
        parts.append(f"sidecar{sidecar_digest}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


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
        "face_scalars": np.array([f.confidence, f.eye_ratio[0], f.eye_ratio[1], f.lip_ratio, f.roll_deg, f.size_px,
                                  f.crop_scale, f.crop_vy], np.float64),
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
    conf, el, er, lip, roll, fsize, scale, vy = (float(v) for v in a["face_scalars"])
    face = SourceFace(a["face_eye_centre"], a["face_lip_centre"], a["face_points"], conf, (el, er), lip, roll, fsize,
                      scale, vy)
    crop_alpha = None if img.alpha is None else crop_mod.warp_crop(img.alpha, transform.M_o2c, exact=True)
    motion = {k: torch.from_numpy(a[f"motion_{k}"]).to(device) for k in _MOTION_KEYS}
    return PreparedCharacter(name=name, path=path, key=key, image_bgr=img.bgr, alpha=img.alpha, crop=transform,
                             crop_rgb256=a["crop_rgb256"], crop_alpha512=crop_alpha, face=face,
                             f_s=torch.from_numpy(a["f_s"]).to(device), motion=motion, device=device,
                             paste_back=paste_back)
