"""Placing a face by hand: the model behind ``place-face`` (state, clicks -> points -> crop and mask preview).

The window (``cli/commands/place_face.py``) only forwards OpenCV mouse and key events here and shows
``render()``; everything else — which point a click sets, dragging a point or a box, the crop that results,
the animated region, saving the sidecar — lives in ``Placement``, so a test drives it without a window.

Modes: **points** (click the eye on the image's left, the other eye, then the mouth; drag a point to move
it), **box** (drag a box around the face), **mask** (click the corners of a polygon that limits the animated
region). The crop is the official source crop of what is placed (``sidecar.PlacedFace.crop_transform``) and
the region is the official paste-back mask (``crop.PasteBack``), cut by the polygon when there is one —
exactly what the engine will use.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from liveportrait_core.characters import sidecar as sc_mod
from liveportrait_core.characters.sidecar import PlacedFace, Sidecar
from liveportrait_core.driving import crop as crop_mod

POINT_NAMES = ("left_eye", "right_eye", "mouth")
POINT_LABELS = {"left_eye": "eye (image left)", "right_eye": "eye (image right)", "mouth": "mouth"}
MODES = ("points", "box", "mask")
#: A press this close to a placed point (window pixels) grabs it instead of placing the next one.
GRAB_PX = 12
#: Crop-scale and shift steps of the keys.
SCALE_STEP = 0.1
VY_STEP = 0.025
PREVIEW_PX = 320
KEYS_HELP = ("p points  b box  m mask  +/- crop size  w/s crop up/down  z undo  c clear  "
             "v variant  enter save  q quit")

# OpenCV mouse events (cv2.EVENT_*), restated as ints so the model can be driven without a window
EVENT_MOVE, EVENT_DOWN, EVENT_UP, EVENT_RDOWN = cv2.EVENT_MOUSEMOVE, cv2.EVENT_LBUTTONDOWN, cv2.EVENT_LBUTTONUP, \
    cv2.EVENT_RBUTTONDOWN


@dataclass
class Placement:
    """What is placed on one image, and its previews. Coordinates are image pixels as displayed; the window
    shows the image scaled by ``view_scale`` and events arrive in window pixels."""

    image_bgr: np.ndarray
    sidecar_path: Path
    view_scale: float = 1.0
    mode: str = "points"
    points: dict[str, np.ndarray] = field(default_factory=dict)
    box: tuple[float, float, float, float] | None = None
    mask: list[np.ndarray] = field(default_factory=list)
    crop_scale: float = crop_mod.SOURCE_SCALE
    crop_vy: float = crop_mod.SOURCE_VY_RATIO
    variant: str | None = None  #: model.variant for this character (None: the global setting)
    other_settings: dict = field(default_factory=dict)  #: settings of a loaded sidecar, kept as they were
    message: str = ""
    _drag: str | None = None  #: the point being dragged, or "box"
    _box_start: np.ndarray | None = None
    _rendered: tuple | None = field(default=None, repr=False, compare=False)  #: (state, picture) of the last render

    @classmethod
    def for_image(cls, image_bgr: np.ndarray, sidecar_path: Path, max_view_px: int = 900,
                  start: Sidecar | None = None) -> "Placement":
        """A placement for ``image_bgr`` (as displayed), shown at most ``max_view_px`` on its long side,
        starting from ``start`` (an existing sidecar) when given."""
        h, w = image_bgr.shape[:2]
        p = cls(image_bgr, Path(sidecar_path), view_scale=min(1.0, max_view_px / max(h, w)))
        if start is not None:
            p.load(start)
        return p

    def load(self, s: Sidecar) -> None:
        f = s.face
        if f is not None:
            for k in POINT_NAMES:
                if getattr(f, k) is not None:
                    self.points[k] = np.asarray(getattr(f, k), np.float32)
            self.box = f.box
            self.crop_scale, self.crop_vy = f.crop_scale, f.crop_vy
            self.mode = "points" if f.has_points else "box"
        if s.mask is not None:
            self.mask = [np.asarray(p, np.float32) for p in s.mask]
        self.variant = s.settings.get("model.variant")
        self.other_settings = {k: v for k, v in s.settings.items() if k != "model.variant"}

    # -- events ---------------------------------------------------------------------------------------
    def _to_image(self, x: float, y: float) -> np.ndarray:
        h, w = self.image_bgr.shape[:2]
        p = np.array([x, y], np.float32) / np.float32(self.view_scale)
        return np.round(np.clip(p, 0, [w - 1, h - 1]), 2).astype(np.float32)  # as the sidecar stores it

    def on_mouse(self, event: int, x: int, y: int, flags: int = 0, *_: object) -> None:
        """An OpenCV mouse event in window pixels (``cv2.setMouseCallback`` calls this directly)."""
        p = self._to_image(x, y)
        if event == EVENT_RDOWN:
            self.undo()
        elif event == EVENT_DOWN:
            self._press(p)
        elif event == EVENT_MOVE and self._drag is not None:
            self._move(p)
        elif event == EVENT_UP and self._drag is not None:
            self._move(p)
            if self._drag == "box" and self.box is not None and min(self.box[2:]) < 4:
                self.box, self.message = None, "the box is too small; drag from one corner of the face to the other"
            self._drag = None

    def _press(self, p: np.ndarray) -> None:
        if self.mode == "points":
            near = [k for k, q in self.points.items() if np.linalg.norm(q - p) * self.view_scale <= GRAB_PX]
            if near:
                self._drag = near[0]
                return
            missing = [k for k in POINT_NAMES if k not in self.points]
            if not missing:
                self.message = "all three points are placed; drag one to move it, z to undo"
                return
            self.points[missing[0]] = p
            self._drag = missing[0]
        elif self.mode == "box":
            self._drag, self._box_start, self.box = "box", p, None
        else:
            self.mask.append(p)

    def _move(self, p: np.ndarray) -> None:
        if self._drag == "box":
            a = self._box_start
            lo, hi = np.minimum(a, p), np.maximum(a, p)
            self.box = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
        elif self._drag in POINT_NAMES:
            self.points[self._drag] = p

    def on_key(self, key: int) -> str | None:
        """A key code (``cv2.waitKey``). Returns "save" or "quit" when the window should act, else None."""
        if key < 0:
            return None
        ch = chr(key & 0xFF)
        if ch in ("\r", "\n"):
            return "save"
        if ch in ("q", "\x1b"):
            return "quit"
        if ch == "p":
            self.mode = "points"
        elif ch == "b":
            self.mode = "box"
        elif ch == "m":
            self.mode = "mask"
        elif ch in ("+", "="):
            self.crop_scale = min(sc_mod.CROP_SCALE_RANGE[1], round(self.crop_scale + SCALE_STEP, 3))
        elif ch == "-":
            self.crop_scale = max(sc_mod.CROP_SCALE_RANGE[0], round(self.crop_scale - SCALE_STEP, 3))
        elif ch == "w":
            self.crop_vy = max(sc_mod.CROP_VY_RANGE[0], round(self.crop_vy - VY_STEP, 4))
        elif ch == "s":
            self.crop_vy = min(sc_mod.CROP_VY_RANGE[1], round(self.crop_vy + VY_STEP, 4))
        elif ch == "z":
            self.undo()
        elif ch == "c":
            self.clear()
        elif ch == "v":
            order = (None, "human", "animal")
            self.variant = order[(order.index(self.variant) + 1) % len(order)]
        return None

    def undo(self) -> None:
        """Remove the last thing placed in the current mode."""
        if self.mode == "mask" and self.mask:
            self.mask.pop()
        elif self.mode == "box":
            self.box = None
        elif self.mode == "points" and self.points:
            last = [k for k in POINT_NAMES if k in self.points][-1]
            del self.points[last]

    def clear(self) -> None:
        """Clear what the current mode places."""
        if self.mode == "mask":
            self.mask = []
        elif self.mode == "box":
            self.box = None
        else:
            self.points = {}

    # -- results --------------------------------------------------------------------------------------
    def face(self) -> PlacedFace | None:
        """The face placed so far (the three points, a box or both), or None while incomplete."""
        has_points = all(k in self.points for k in POINT_NAMES)
        if not has_points and self.box is None:
            return None
        pts = {k: self.points[k] for k in POINT_NAMES} if has_points else {}
        return PlacedFace(**pts, box=self.box, crop_scale=self.crop_scale, crop_vy=self.crop_vy)

    def next_step(self) -> str:
        """What to do next, for the window's status line."""
        if self.mode == "box":
            return "drag a box around the face" if self.box is None else "box placed; enter saves"
        if self.mode == "mask":
            return f"mask: {len(self.mask)} corner(s); click more, m/p/b switch mode"
        missing = [k for k in POINT_NAMES if k not in self.points]
        return f"click the {POINT_LABELS[missing[0]]}" if missing else "points placed; enter saves"

    def sidecar(self) -> Sidecar:
        """The sidecar of what is placed (validated as it would be read back)."""
        face = self.face()
        if face is None:
            raise ValueError("place the eyes and the mouth, or a box, before saving")
        chosen = dict(self.other_settings)
        if self.variant is not None:
            chosen["model.variant"] = self.variant
        mask = np.stack(self.mask) if len(self.mask) >= 3 else None
        sc = Sidecar(path=self.sidecar_path, face=face, mask=mask, settings=chosen)
        h, w = self.image_bgr.shape[:2]
        sc.check_within((w, h))
        return sc

    def crop_preview(self) -> np.ndarray | None:
        """The 512x512 crop the networks will see (BGR), None while no face is placed."""
        face = self.face()
        if face is None:
            return None
        return crop_mod.warp_crop(self.image_bgr, face.crop_transform().M_o2c)

    def region_mask(self) -> np.ndarray | None:
        """The animated region in the image (float32 0..1): the official paste-back mask of the crop, cut by
        the mask polygon when one has three corners or more."""
        face = self.face()
        if face is None:
            return None
        m = crop_mod.PasteBack(self.image_bgr, face.crop_transform().M_c2o).mask_ori
        return sc_mod.cut_mask(m, np.stack(self.mask) if len(self.mask) >= 3 else None)

    def save(self, replace: bool = False) -> Path:
        """Write the sidecar beside the image. An existing sidecar is never replaced unless ``replace`` (an
        explicit request): the save then goes to the next free name and ``message`` says so."""
        sc = self.sidecar()
        target = self.sidecar_path
        if target.exists() and replace:
            tmp = sc_mod.free_name(target.with_name(target.name + ".new"))
            sc_mod.write_sidecar(sc, tmp)
            tmp.replace(target)
            self.message = f"replaced {target}"
            return target
        if target.exists():
            target = sc_mod.free_name(target)
            sc_mod.write_sidecar(sc, target)
            self.message = (f"{self.sidecar_path.name} exists and was kept; saved as {target.name} (rename it to "
                            f"{self.sidecar_path.name} to use it)")
            return target
        sc_mod.write_sidecar(sc, target)
        self.message = f"saved {target}"
        return target

    # -- drawing --------------------------------------------------------------------------------------
    def _state(self) -> tuple:
        return (self.mode, tuple((k, tuple(v)) for k, v in self.points.items()), self.box,
                tuple(tuple(p) for p in self.mask), self.crop_scale, self.crop_vy, self.variant, self.message)

    def render(self) -> np.ndarray:
        """The window's picture: the image (animated region bright, the rest dimmed; points, box, mask and
        crop square drawn) beside the crop preview and a status line. Drawn again only when something changed
        (the window asks every 30 ms; a slow redraw there would let typed keys pile up)."""
        state = self._state()
        if self._rendered is not None and self._rendered[0] == state:
            return self._rendered[1]
        canvas = self._render()
        self._rendered = (state, canvas)
        return canvas

    def _render(self) -> np.ndarray:
        h, w = self.image_bgr.shape[:2]
        vw, vh = max(1, round(w * self.view_scale)), max(1, round(h * self.view_scale))
        region = self.region_mask()
        img = self.image_bgr if region is None else \
            (self.image_bgr.astype(np.float32) * (0.35 + 0.65 * region[..., None])).astype(np.uint8)
        view = cv2.resize(img, (vw, vh), interpolation=cv2.INTER_AREA) if (vw, vh) != (w, h) else img.copy()
        s = self.view_scale

        def v(p):
            return tuple(int(round(c * s)) for c in p)

        face = self.face()
        if face is not None:
            corners = np.array([[0, 0], [512, 0], [512, 512], [0, 512]], np.float32)
            quad = face.crop_transform().to_image(corners) * s
            cv2.polylines(view, [np.round(quad).astype(np.int32)], True, (255, 200, 0), 1, cv2.LINE_AA)
        if self.box is not None:
            x, y, bw, bh = self.box
            cv2.rectangle(view, v((x, y)), v((x + bw, y + bh)), (0, 200, 255), 1, cv2.LINE_AA)
        colours = {"left_eye": (0, 255, 0), "right_eye": (0, 255, 255), "mouth": (0, 0, 255)}
        for k, p in self.points.items():
            cv2.circle(view, v(p), 5, colours[k], 2, cv2.LINE_AA)
        if self.mask:
            pts = np.round(np.stack(self.mask) * s).astype(np.int32)
            cv2.polylines(view, [pts], len(self.mask) >= 3, (255, 0, 255), 1, cv2.LINE_AA)
        side = PREVIEW_PX
        crop = self.crop_preview()
        panel = np.full((max(vh, side + 120), side, 3), 32, np.uint8)
        if crop is not None:
            panel[:side] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        lines = [f"mode: {self.mode}", self.next_step(), f"crop size x{self.crop_scale:.2f}  shift {self.crop_vy:+.3f}",
                 f"variant: {self.variant or 'global setting'}", self.message]
        wrapped = [part for t in lines if t for part in textwrap.wrap(t, 44)]
        for i, text in enumerate(wrapped[:(panel.shape[0] - side - 8) // 18]):
            cv2.putText(panel, text, (6, side + 20 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1,
                        cv2.LINE_AA)
        canvas = np.full((max(vh, panel.shape[0]) + 22, vw + side, 3), 16, np.uint8)
        canvas[:vh, :vw] = view
        canvas[:panel.shape[0], vw:] = panel
        cv2.putText(canvas, KEYS_HELP, (6, canvas.shape[0] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1,
                    cv2.LINE_AA)
        return canvas
