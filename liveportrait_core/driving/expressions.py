"""Named expressions on top of tracking: smile, winks, blink, vowels, eyebrows, gaze, head tilt.

Each expression is a fixed offset of the motion extractor's expression (21 keypoints x 3) and/or the
head pose, in the style of the official image-editing sliders (``src/gradio_pipeline.py``); the rows
and magnitudes and how they were chosen are documented in docs/EXPRESSIONS.md. The engine (any
thread) calls ``set(name, active, strength)``; the inference thread asks ``offsets(now)`` once per
frame and gets the eased sum of all active expressions as one ``animation.Offsets`` on the device.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch

from liveportrait_core.driving.animation import Offsets, upload
from liveportrait_core.driving.expression_names import NAMES
from liveportrait_core.models.networks.keypoints import NUM_KP

_log = logging.getLogger(__name__)

#: Keypoint groups of the two eyes (upper lid, lower lid) and brows. Rows 11/13 belong to the eye on the
#: image's left (the character's right eye): on the official motion sequences they follow the 203-point
#: layout's first ("left", image-left) eye. Swap these two if a check with the real weights disagrees.
IMAGE_LEFT_EYE = {"upper": 11, "lower": 13, "brow": 1, "cheek": 3}
IMAGE_RIGHT_EYE = {"upper": 15, "lower": 16, "brow": 2, "cheek": 7}
CHARACTER_RIGHT, CHARACTER_LEFT = IMAGE_LEFT_EYE, IMAGE_RIGHT_EYE

#: Keypoints that move when the mouth opens, measured on the official motion sequence d5 (lip ratio
#: 0.67 against a closed frame): (row, component) -> offset.
_MOUTH_OPEN = {(19, 1): 0.060, (19, 2): 0.004, (20, 1): -0.0085, (20, 2): 0.0115, (14, 1): 0.0125,
               (17, 1): -0.0045, (17, 2): -0.0035}


def _eye_close(eye: dict) -> dict:
    """One eye shut (real blink on the motion sequence d1: upper lid +0.012 y, lower lid -0.0045 y)."""
    return {(eye["upper"], 1): 0.0125, (eye["lower"], 1): -0.0045}


def _wink(eye: dict, x_sign: float) -> dict:
    """Official wink slider at 12 (cheek and lip corner follow) plus the brow drop seen in the wink clip."""
    out = _eye_close(eye)
    out.update({(eye["brow"], 1): 0.004, (eye["cheek"], 1): -0.0036, (17, 0): 0.0036 * x_sign, (17, 1): 0.0036})
    return out


def _gaze(x: float, y: float) -> dict:
    """Official eyeball-direction slider: x > 0 looks towards the image's right, y > 0 up."""
    left, right = (0.0007, 0.001) if x > 0 else (0.001, 0.0007)
    out = {(11, 0): x * left, (15, 0): x * right}
    # the slider couples gaze with the lids: looking up opens them, looking down lowers them
    for row in (11, 15):
        out[(row, 1)] = -0.0005 * y
    for row in (13, 16):
        out[(row, 1)] = -0.00015 * y
    return out


def _scaled(d: dict, k: float) -> dict:
    return {key: v * k for key, v in d.items()}


def _merge(*parts: dict) -> dict:
    out: dict = {}
    for p in parts:
        for key, v in p.items():
            out[key] = out.get(key, 0.0) + v
    return out


@dataclass(frozen=True)
class ExpressionShape:
    """The offset of one expression at strength 1."""

    exp: dict  #: (row, component) -> expression offset
    pose_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  #: pitch, yaw, roll

    def exp_array(self) -> np.ndarray:
        a = np.zeros((NUM_KP, 3), np.float32)
        for (r, c), v in self.exp.items():
            a[r, c] += v
        return a


#: Every expression at strength 1 (see docs/EXPRESSIONS.md for the sources of each number).
SHAPES: dict[str, ExpressionShape] = {
    # official smile slider at 1.0 (its range is -0.3 .. 1.3)
    "smile": ExpressionShape({(20, 1): -0.01, (14, 1): -0.02, (17, 1): 0.0065, (17, 2): 0.003, (13, 1): -0.00275,
                              (16, 1): -0.00275, (3, 1): -0.0035, (7, 1): -0.0035}),
    # the official wink slider pulls the lip corner (row 17) towards the image-left eye it closes
    "wink_left": ExpressionShape(_wink(CHARACTER_LEFT, -1.0)),
    "wink_right": ExpressionShape(_wink(CHARACTER_RIGHT, +1.0)),
    "blink": ExpressionShape(_merge(_eye_close(IMAGE_LEFT_EYE), _eye_close(IMAGE_RIGHT_EYE))),
    "aaa": ExpressionShape(dict(_MOUTH_OPEN)),
    # official "grin" slider at 10 (wide lips) with the mouth a quarter open
    "eee": ExpressionShape(_merge({(20, 2): -0.01, (20, 1): -0.01, (14, 1): -0.01}, _scaled(_MOUTH_OPEN, 0.25))),
    # official "pursing" slider at 10 (lips together and forward) with the mouth a third open
    "woo": ExpressionShape(_merge({(14, 1): 0.01, (3, 1): -0.005, (7, 1): -0.005, (17, 2): -0.005},
                                  _scaled(_MOUTH_OPEN, 0.35))),
    # official eyebrow slider moves rows 1 and 2 by 0.001 per step (range +-30); both brows up by 15 steps
    "eyebrows_up": ExpressionShape({(1, 1): -0.015, (2, 1): -0.015}),
    # gaze: the character's own left is the image's right (+x) for a character facing the camera
    "pupils_left": ExpressionShape(_gaze(15.0, 0.0)),
    "pupils_right": ExpressionShape(_gaze(-15.0, 0.0)),
    "pupils_up": ExpressionShape(_gaze(0.0, 20.0)),
    "pupils_down": ExpressionShape(_gaze(0.0, -20.0)),
    "head_tilt": ExpressionShape({}, pose_deg=(0.0, 0.0, 12.0)),
}
if tuple(SHAPES) != NAMES:  # one list of names for the engine and the OBS hotkeys
    raise RuntimeError(f"expression shapes {tuple(SHAPES)} differ from expression_names.NAMES {NAMES}")
EXPRESSION_NAMES = NAMES  #: the name the engine's backend asks for


def smoothstep(p: float) -> float:
    p = min(max(p, 0.0), 1.0)
    return p * p * (3.0 - 2.0 * p)


class Expressions:
    """Active expressions with their strength, eased in and out over ``ease_s`` seconds
    (``animation.expression_ease_s``)."""

    def __init__(self, ease_s: float, device: torch.device | str = "cpu") -> None:
        self.ease_s = ease_s
        self._lock = threading.Lock()
        self._target: dict[str, float] = {n: 0.0 for n in NAMES}  # wanted strength (0 when inactive)
        self._level: dict[str, float] = {n: 0.0 for n in NAMES}  # eased progress towards it, 0..1
        self._strength: dict[str, float] = {n: 1.0 for n in NAMES}
        self._t: float | None = None
        self.to(device)

    def to(self, device: torch.device | str) -> "Expressions":
        """Keep the expression shapes on the device the animation runs on."""
        self.device = torch.device(device)
        self._exp = torch.from_numpy(np.stack([SHAPES[n].exp_array() for n in NAMES])).to(self.device)
        self._pose = torch.tensor([SHAPES[n].pose_deg for n in NAMES], dtype=torch.float32, device=self.device)
        return self

    def set(self, name: str, active: bool, strength: float = 1.0) -> None:
        """Start (active) or release an expression; strength 0..1 scales its offset."""
        if name not in SHAPES:
            raise KeyError(f"unknown expression {name!r}; known: {', '.join(NAMES)}")
        strength = min(max(float(strength), 0.0), 1.0)
        with self._lock:
            if active:
                self._strength[name] = strength
            self._target[name] = 1.0 if active else 0.0

    def clear(self) -> None:
        """Release every expression (they ease out)."""
        with self._lock:
            for n in NAMES:
                self._target[n] = 0.0

    def active(self) -> dict[str, float]:
        """Expressions currently switched on, with their strength."""
        with self._lock:
            return {n: self._strength[n] for n in NAMES if self._target[n] > 0}

    def weight(self, name: str) -> float:
        """The eased weight of one expression as of the last ``weights``/``offsets`` call (the time is not
        advanced): the eye-close boost reads the blink hotkey's."""
        with self._lock:
            return smoothstep(self._level[name]) * self._strength[name]

    def restart_clock(self) -> None:
        """The frames' clock starts again: the next ``weights`` call advances nothing (no step back in time)."""
        with self._lock:
            self._t = None

    def weights(self, now: float) -> np.ndarray:
        """Advance the easing to ``now`` (seconds) and return the eased weight of every expression."""
        with self._lock:
            dt = 0.0 if self._t is None else max(now - self._t, 0.0)
            self._t = now
            step = 1.0 if self.ease_s <= 0 else dt / self.ease_s
            w = np.zeros(len(NAMES), np.float32)
            for i, n in enumerate(NAMES):
                lv, tg = self._level[n], self._target[n]
                lv = min(lv + step, tg) if tg > lv else max(lv - step, tg)
                self._level[n] = lv
                w[i] = smoothstep(lv) * self._strength[n]
        return w

    def offsets(self, now: float) -> Offsets | None:
        """The eased sum of the active expressions, or None when nothing is showing (saves the work)."""
        w = self.weights(now)
        if not w.any():
            return None
        return self.offsets_for(w)

    def offsets_for(self, weights: np.ndarray) -> Offsets:
        wt = upload(torch.from_numpy(weights), self.device)  # per frame while one shows: no wait for the GPU
        exp = (wt[:, None, None] * self._exp).sum(0, keepdim=True)
        return Offsets(exp=exp, pose_deg=(wt[:, None] * self._pose).sum(0, keepdim=True))

    def shape_offsets(self, name: str, weight: float) -> Offsets:
        """One expression at a given weight (idle blinks use this)."""
        w = np.zeros(len(NAMES), np.float32)
        w[NAMES.index(name)] = weight
        return self.offsets_for(w)


def add_offsets(a: Offsets | None, b: Offsets | None) -> Offsets | None:
    if a is None:
        return b
    if b is None:
        return a
    return Offsets(exp=a.exp + b.exp, pose_deg=a.pose_deg + b.pose_deg)
