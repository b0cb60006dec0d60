"""Idle animation: what the character does while no face is tracked.

When tracking is lost the motion eases from the last tracked pose to the neutral reference in about
``idle_ease_s`` (a frozen or snapping face looks broken on stream), then the character keeps living:
slow breathing (a little pitch and roll) and blinks at natural, irregular intervals. When the face
comes back the motion eases from neutral to the live one over the same time.
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, replace

import torch

from liveportrait_core.driving.animation import Offsets, pose_of, with_pose
from liveportrait_core.driving.expressions import Expressions, add_offsets, smoothstep
from liveportrait_core.models.networks.keypoints import NUM_KP, MotionInfo


def blend_motion(live: MotionInfo, neutral: MotionInfo, w: float) -> MotionInfo:
    """``live`` moved a fraction ``w`` (0..1) of the way to ``neutral``: pose angles, expression,
    translation and scale interpolated, rotation rebuilt from the angles."""
    if w <= 0.0:
        return live
    if w >= 1.0:
        return neutral
    pose = torch.lerp(pose_of(live), pose_of(neutral), w)
    return replace(with_pose(live, pose), exp=torch.lerp(live.exp, neutral.exp, w),
                   t=torch.lerp(live.t, neutral.t, w), scale=torch.lerp(live.scale, neutral.scale, w))


@dataclass
class IdleStyle:
    """How lively the idle character is (our choices; small on purpose)."""

    breath_hz: float = 0.22  #: about 13 breaths a minute
    breath_pitch_deg: float = 0.8
    sway_hz: float = 0.07
    sway_roll_deg: float = 0.5
    blink_min_s: float = 2.0  #: shortest gap between blinks
    blink_mean_extra_s: float = 2.5  #: mean of the exponential extra gap (people blink every 2-6 s)
    blink_close_s: float = 0.08
    blink_open_s: float = 0.14


class IdleAnimator:
    """Tracks how idle the character is (0 live .. 1 fully idle) and what it does meanwhile.

    ``ease_s`` and ``alive``: ``animation.idle_ease_s`` and ``animation.idle``.
    """

    def __init__(self, ease_s: float, alive: bool, style: IdleStyle | None = None,
                 seed: int | None = None) -> None:
        self.ease_s = ease_s
        self.alive = alive
        self.style = style or IdleStyle()
        self._rng = random.Random(seed)
        self._progress = 0.0  # 0 live .. 1 idle, linear in time
        self._t: float | None = None
        self._idle_since: float | None = None
        self._next_blink: float | None = None

    @property
    def weight(self) -> float:
        """Eased idle weight of the last update (0: fully live, 1: fully idle)."""
        return smoothstep(self._progress)

    def update(self, found: bool, now: float) -> float:
        """Advance to ``now`` with the tracking state; returns the idle weight."""
        dt = 0.0 if self._t is None else max(now - self._t, 0.0)
        self._t = now
        step = 1.0 if self.ease_s <= 0 else dt / self.ease_s
        self._progress = max(self._progress - step, 0.0) if found else min(self._progress + step, 1.0)
        if not found and self._idle_since is None:
            self._idle_since = now
            self._next_blink = now + self._gap()
        elif found and self._progress == 0.0:
            self._idle_since = self._next_blink = None
        return self.weight

    def _gap(self) -> float:
        s = self.style
        return s.blink_min_s + self._rng.expovariate(1.0 / s.blink_mean_extra_s)

    def blink_level(self, now: float) -> float:
        """0 open .. 1 shut: a quick close and a slower open, at irregular intervals."""
        if self._next_blink is None:
            return 0.0
        s = self.style
        u = now - self._next_blink
        if u < 0.0:
            return 0.0
        if u < s.blink_close_s:
            return smoothstep(u / s.blink_close_s)
        if u < s.blink_close_s + s.blink_open_s:
            return 1.0 - smoothstep((u - s.blink_close_s) / s.blink_open_s)
        self._next_blink = now + self._gap()
        return 0.0

    def offsets(self, now: float, expressions: Expressions) -> Offsets | None:
        """Breathing and blinks, scaled by the idle weight; None while live or not alive."""
        w = self.weight
        if not self.alive or w <= 0.0 or self._idle_since is None:
            return None
        s = self.style
        t = now - self._idle_since
        pitch = s.breath_pitch_deg * math.sin(2.0 * math.pi * s.breath_hz * t)
        roll = s.sway_roll_deg * math.sin(2.0 * math.pi * s.sway_hz * t)
        pitch_axis, roll_axis = _pose_axes(expressions.device)
        breath = Offsets(exp=torch.zeros(1, NUM_KP, 3, device=expressions.device),
                         pose_deg=pitch_axis * (pitch * w) + roll_axis * (roll * w))
        blink = self.blink_level(now) * w
        return add_offsets(breath, expressions.shape_offsets("blink", blink) if blink > 0 else None)


@functools.lru_cache(maxsize=4)
def _pose_axes(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3) unit pitch and roll rows on ``device``, made once: the breathing pose is a scale of them, so
    no frame builds a tensor from host values (on CUDA a blocking copy that waits for the queued work)."""
    axes = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]).to(device)
    return axes[0], axes[1]
