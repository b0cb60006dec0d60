"""From voice features to the mouth controls the driving maths takes, and the four ``audio.mode`` s.

Two controls, both on the official scales so that the official networks do the drawing:

* ``open_ratio``: extra lip opening on the official lip-ratio range (inner-lip gap over mouth width; closed
  about 0, a wide "ah" about 0.6): ``level * audio.max_open``, scaled by how open the current vowel is
  (A most, I and U least). The driving maths turns it into a keypoint delta through the official lip
  retargeting MLP (``animation.voice_lip_delta``).
* ``vowels``: weights of the vowel shapes (``VOWEL_SHAPES``: expression-keypoint offsets beside the named
  expressions, from the official "grin" and "pursing" sliders) times the level and ``audio.vowel_strength``.

Modes: ``off``; ``fallback`` — the voice only while the face is lost, faded in and out with the idle weight
(the same easing the idle animation uses); ``mix`` — the larger of the tracked and the voiced opening (the
voice adds only what the tracked mouth lacks); ``always`` — the mouth follows the voice only (the tracked
lip rows are held at the neutral reference). With no webcam (``capture.source: none``) the face is never
found, so ``fallback``, ``mix`` and ``always`` all voice the idle character.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from liveportrait_core.voice.features import VOWELS, VoiceFeatures

if TYPE_CHECKING:  # pragma: no cover
    from liveportrait_core.settings import AudioSettings

MODES = ("off", "fallback", "mix", "always")
#: How open each vowel is relative to A (a rounded U or a spread I opens the jaw less).
OPEN_FACTOR = {"a": 1.0, "i": 0.45, "u": 0.45, "e": 0.7, "o": 0.8}
_OPEN = np.array([OPEN_FACTOR[v] for v in VOWELS])

#: The official "grin" slider at 10 (lips spread wide): rows and components of the expression.
GRIN = {(20, 2): -0.01, (20, 1): -0.01, (14, 1): -0.01}
#: The official "pursing" slider at 10 (lips together and forward).
PURSE = {(14, 1): 0.01, (3, 1): -0.005, (7, 1): -0.005, (17, 2): -0.005}


def _scaled(d: dict, k: float) -> dict:
    return {key: v * k for key, v in d.items()}


#: Vowel shapes at weight 1: expression offsets (row, component) -> value, without the opening itself (that
#: is the lip retargeting's). A: the opening alone; I: spread; E: half spread; U: pursed; O: half pursed.
VOWEL_SHAPES: dict[str, dict] = {"a": {}, "i": dict(GRIN), "u": dict(PURSE), "e": _scaled(GRIN, 0.6),
                                 "o": _scaled(PURSE, 0.6)}


def vowel_shape_array(num_kp: int = 21) -> np.ndarray:
    """(5, num_kp, 3) float32: the vowel shapes in VOWELS order, for the device."""
    a = np.zeros((len(VOWELS), num_kp, 3), np.float32)
    for i, v in enumerate(VOWELS):
        for (r, c), val in VOWEL_SHAPES[v].items():
            a[i, r, c] += val
    return a


@dataclass(frozen=True)
class MouthControls:
    """What the voice asks of the mouth now."""

    open_ratio: float = 0.0  #: extra lip-open ratio (official range) on top of the neutral mouth
    vowels: tuple[float, ...] = (0.0,) * len(VOWELS)  #: vowel-shape weights (VOWELS order)
    hold_tracked_mouth: bool = False  #: ``always``: the tracked lip motion is replaced by the voice's

    @property
    def active(self) -> bool:
        return self.open_ratio > 0.0 or any(self.vowels) or self.hold_tracked_mouth


CLOSED = MouthControls()


def mouth_from_features(f: VoiceFeatures, s: "AudioSettings") -> MouthControls:
    """The voice's own controls (before the mode): opening and vowel weights, both zero when gated."""
    if f.level <= 0.0:
        return CLOSED
    w = np.asarray(f.vowels, np.float64)
    voiced = float(w.sum())
    factor = (1.0 - voiced) + float(w @ _OPEN) if (s.vowels and voiced > 0) else 1.0
    vowels = tuple(float(x) for x in w * (f.level * s.vowel_strength)) if s.vowels else CLOSED.vowels
    return MouthControls(open_ratio=f.level * s.max_open * factor, vowels=vowels)


def apply_mode(mode: str, voice: MouthControls, idle_weight: float, tracked_open: float | None) -> MouthControls:
    """The controls for this frame under ``mode``.

    ``idle_weight``: 0 while the face is tracked .. 1 fully idle (lost or no webcam); ``tracked_open``: the
    tracked lip-open ratio (official range), None when there is none."""
    if mode == "off":
        return CLOSED
    if mode == "fallback":
        w = min(max(idle_weight, 0.0), 1.0)
        if w <= 0.0:
            return CLOSED
        return MouthControls(voice.open_ratio * w, tuple(v * w for v in voice.vowels))
    if mode == "mix":
        live = 0.0 if tracked_open is None else max(tracked_open, 0.0) * (1.0 - min(max(idle_weight, 0.0), 1.0))
        return MouthControls(max(voice.open_ratio - live, 0.0), voice.vowels)
    if mode == "always":
        return MouthControls(voice.open_ratio, voice.vowels, hold_tracked_mouth=True)
    raise ValueError(f"audio.mode {mode!r}; allowed: {', '.join(MODES)}")
