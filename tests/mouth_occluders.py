"""Synthetic things in front of a real face's mouth, for the mouth-visibility tests (tests only).

Each is drawn onto a copy of a real frame where the landmarks of the *unoccluded* frame put the mouth, scaled
by the mouth's width: a skin-coloured hand (its colour taken from the person's own cheek, the hardest case,
with fingers, the shadows between them and shading), a dark microphone with a grille, and a mug.
"""
from __future__ import annotations

import cv2
import numpy as np

MOUTH_CORNERS = (61, 291)
CHEEK = 205  # a point on the image-left cheek
CHIN = 152


def _frame_of(lmk: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Mouth centre, mouth width, the face's sideways axis and its downward axis (unit vectors)."""
    a, b = lmk[MOUTH_CORNERS[0]].astype(np.float64), lmk[MOUTH_CORNERS[1]].astype(np.float64)
    width = float(np.linalg.norm(b - a))
    ax = (b - a) / max(width, 1e-6)
    return (a + b) / 2, width, ax, np.array([-ax[1], ax[0]])


def _poly(centre, ax, ay, pts) -> np.ndarray:
    p = np.asarray(pts, np.float64)
    return (centre + p[:, :1] * ax + p[:, 1:] * ay).astype(np.int32)


def _shade(out: np.ndarray, mask: np.ndarray, colour: np.ndarray, light_dir: np.ndarray,
           rng: np.random.Generator, noise: float = 4.0) -> None:
    """Fill ``mask`` with ``colour`` lit across the mask (a gradient) and a little sensor noise."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return
    t = xs * light_dir[0] + ys * light_dir[1]
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    shade = (0.8 + 0.35 * t)[:, None]
    val = colour[None, :] * shade + rng.normal(0, noise, (len(xs), 3))
    out[ys, xs] = np.clip(val, 0, 255).astype(np.uint8)


def hand(frame: np.ndarray, lmk: np.ndarray, seed: int = 0) -> np.ndarray:
    """A hand over the mouth: the palm on the mouth and chin, four fingers fanning across the image-left cheek,
    in the face's own skin colour (sampled on the cheek), with the dark creases between the fingers."""
    out, rng = frame.copy(), np.random.default_rng(seed)
    c, w, ax, ay = _frame_of(lmk)
    cheek = lmk[CHEEK].astype(int)
    patch = frame[max(cheek[1] - 3, 0):cheek[1] + 4, max(cheek[0] - 3, 0):cheek[0] + 4].reshape(-1, 3)
    skin = np.median(patch, axis=0).astype(np.float64)
    mask = np.zeros(frame.shape[:2], np.uint8)
    palm = _poly(c, w * ax, w * ay, [[-0.45, -0.5], [0.55, -0.55], [0.8, 0.2], [0.7, 1.0], [-0.4, 1.05]])
    cv2.fillPoly(mask, [palm], 1)
    thick = max(2, int(0.24 * w))
    fingers = []
    for k in range(4):  # from the palm's edge to rounded tips on the cheek, slightly fanned
        root = c + w * (-0.3 * ax + (-0.42 + 0.27 * k) * ay)
        tip = c + w * ((-1.25 + 0.08 * abs(k - 1.5)) * ax + (-0.5 + 0.3 * k) * ay)
        fingers.append((tuple(int(v) for v in root), tuple(int(v) for v in tip)))
        cv2.line(mask, fingers[-1][0], fingers[-1][1], 1, thick)
        cv2.circle(mask, fingers[-1][1], thick // 2, 1, -1)
    _shade(out, mask.astype(bool), skin, ax * 0.6 + ay * 0.4, rng)
    crease = np.clip(skin * 0.55, 0, 255).tolist()
    edge = max(1, int(w * 0.025))
    for (r0, t0), (r1, t1) in zip(fingers, fingers[1:]):  # the shadow between neighbouring fingers
        mid_r = tuple((np.add(r0, r1) // 2).tolist())
        mid_t = tuple((np.add(t0, t1) // 2).tolist())
        cv2.line(out, mid_r, mid_t, crease, edge, cv2.LINE_AA)
    return cv2.GaussianBlur(out, (3, 3), 0) if w > 40 else out


def microphone(frame: np.ndarray, lmk: np.ndarray, seed: int = 1) -> np.ndarray:
    """A dark handheld microphone in front of the mouth: a round grille head and the handle below."""
    out, rng = frame.copy(), np.random.default_rng(seed)
    c, w, ax, ay = _frame_of(lmk)
    mask = np.zeros(frame.shape[:2], np.uint8)
    handle = _poly(c, w * ax, w * ay, [[-0.22, 0.3], [0.22, 0.3], [0.16, 2.5], [-0.16, 2.5]])
    cv2.fillPoly(mask, [handle], 1)
    _shade(out, mask.astype(bool), np.array([30.0, 30.0, 32.0]), ax, rng)
    head = np.zeros_like(mask)
    centre = tuple(int(v) for v in c + 0.05 * w * ay)
    cv2.circle(head, centre, int(0.62 * w), 1, -1)
    _shade(out, head.astype(bool), np.array([70.0, 70.0, 74.0]), ax + ay, rng, noise=6.0)
    step, r = max(2, int(w * 0.08)), int(w)  # the grille's mesh
    grille = np.zeros_like(mask)
    for k in range(-12, 13):
        o = k * step
        cv2.line(grille, (centre[0] + o - r, centre[1] - r), (centre[0] + o + r, centre[1] + r), 1, 1)
        cv2.line(grille, (centre[0] + o + r, centre[1] - r), (centre[0] + o - r, centre[1] + r), 1, 1)
    out[(grille & head).astype(bool)] = (35, 35, 38)
    cv2.circle(out, centre, int(0.62 * w), (20, 20, 22), max(1, int(w * 0.04)), cv2.LINE_AA)
    return out


def mug(frame: np.ndarray, lmk: np.ndarray, seed: int = 2, colour=(40.0, 60.0, 190.0)) -> np.ndarray:
    """A (red) mug held at the mouth: its body from the upper lip to below the chin, its rim and handle."""
    out, rng = frame.copy(), np.random.default_rng(seed)
    c, w, ax, ay = _frame_of(lmk)
    mask = np.zeros(frame.shape[:2], np.uint8)
    body = _poly(c, w * ax, w * ay, [[-0.75, -0.3], [0.75, -0.3], [0.75, 1.5], [-0.75, 1.5]])
    cv2.fillPoly(mask, [body], 1)
    _shade(out, mask.astype(bool), np.asarray(colour, np.float64), ax, rng)
    rim_c = tuple(int(v) for v in c - 0.3 * w * ay)
    angle = float(np.degrees(np.arctan2(ax[1], ax[0])))
    cv2.ellipse(out, rim_c, (int(0.75 * w), int(0.12 * w)), angle, 0, 360, (30, 30, 60), -1, cv2.LINE_AA)
    h_c = tuple(int(v) for v in c + 0.95 * w * ax + 0.5 * w * ay)
    cv2.ellipse(out, h_c, (int(0.25 * w), int(0.4 * w)), angle, -90, 90, tuple(v * 0.8 for v in colour),
                max(2, int(0.12 * w)), cv2.LINE_AA)
    return out


OCCLUDERS = {"hand": hand, "microphone": microphone, "mug": mug}
