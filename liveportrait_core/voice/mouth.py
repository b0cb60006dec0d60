"""From voice features to the mouth controls the driving maths takes, and the four ``audio.mode`` s.

Two controls, both on the official scales so that the official networks do the drawing:

* ``open_ratio``: extra lip opening on the official lip-ratio range (inner-lip gap over mouth width; closed
  about 0, a wide "ah" about 0.6): ``level * audio.max_open``, scaled by how open the current vowel is
  (A most, I and U least). The driving maths turns it into a keypoint delta through the official lip
  retargeting MLP (``animation.voice_lip_delta``).
* ``vowels``: weights of the vowel shapes (``VOWEL_SHAPES``: expression-keypoint offsets beside the named
  expressions, from the official "grin" and "pursing" sliders) times the level and ``audio.vowel_strength``.

Modes: ``off``; ``fallback`` — the voice only while the tracker does not see the mouth: the face is lost, or
it is tracked but its mouth is hidden (``FaceObservation.mouth_visible``: covered, out of frame, looking down,
too dark); faded in and out with the idle animation's easing, the tracked lip motion held at neutral as far
as the hidden mouth's fade has gone; ``mix`` — the larger of the tracked and the voiced opening (the voice
adds only what the tracked mouth lacks; a hidden mouth's tracked opening counts as zero and its lip motion is
held likewise); ``always`` — the mouth follows the voice only (the tracked lip rows are held at the neutral
reference). With no webcam (``capture.source: none``) the face is never
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
    #: how much of the tracked lip motion is replaced by the neutral one, 0..1 (``always``: 1; a hidden mouth: its
    #: fade), so that the voice alone drives a mouth the tracker cannot see
    hold_tracked_mouth: float = 0.0

    @property
    def active(self) -> bool:
        return self.open_ratio > 0.0 or any(self.vowels) or self.hold_tracked_mouth > 0.0


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


def _unit(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def apply_mode(mode: str, voice: MouthControls, idle_weight: float, tracked_open: float | None,
               hidden_weight: float = 0.0) -> MouthControls:
    """The controls for this frame under ``mode``.

    ``idle_weight``: 0 while the face is tracked .. 1 fully idle (lost or no webcam); ``tracked_open``: the
    tracked lip-open ratio (official range), None when there is none; ``hidden_weight``: 0 while the mouth is
    seen .. 1 once it has been unseen (hidden or the face lost) for the idle easing's time."""
    if mode == "off":
        return CLOSED
    hidden = _unit(hidden_weight)
    if mode == "fallback":
        w = max(_unit(idle_weight), hidden)
        if w <= 0.0:
            return CLOSED
        return MouthControls(voice.open_ratio * w, tuple(v * w for v in voice.vowels), hold_tracked_mouth=hidden)
    if mode == "mix":
        unseen = max(_unit(idle_weight), hidden)
        live = 0.0 if tracked_open is None else max(tracked_open, 0.0) * (1.0 - unseen)
        return MouthControls(max(voice.open_ratio - live, 0.0), voice.vowels, hold_tracked_mouth=hidden)
    if mode == "always":
        return MouthControls(voice.open_ratio, voice.vowels, hold_tracked_mouth=1.0)
    raise ValueError(f"audio.mode {mode!r}; allowed: {', '.join(MODES)}")
