"""Idle: ease to neutral when the face is lost, breathe and blink, ease back when it returns."""
from __future__ import annotations

import pytest
import torch

from liveportrait_core.driving.expressions import Expressions
from liveportrait_core.driving.idle import IdleAnimator, blend_motion
from liveportrait_core.models.networks.keypoints import MotionInfo, rotation_matrix


def motion(yaw: float, e: float) -> MotionInfo:
    p, y, r = torch.zeros(1, 1), torch.tensor([[yaw]]), torch.zeros(1, 1)
    return MotionInfo(pitch=p, yaw=y, roll=r, R=rotation_matrix(p, y, r), kp=torch.zeros(1, 21, 3),
                      exp=torch.full((1, 21, 3), e), t=torch.full((1, 3), e), scale=torch.ones(1, 1))


def test_weight_eases_to_idle_in_ease_time_and_back():
    idle = IdleAnimator(ease_s=0.5, alive=True, seed=0)
    assert idle.update(True, 0.0) == 0.0
    w = [idle.update(False, t) for t in (0.1, 0.25, 0.4, 0.5, 0.6)]
    assert all(a < b for a, b in zip(w[:4], w[1:4]))  # monotonic while easing
    assert w[1] == pytest.approx(0.5, abs=0.01) and w[3] == 1.0 and w[4] == 1.0
    back = [idle.update(True, t) for t in (0.7, 0.85, 1.1)]
    assert 0.0 < back[0] < 1.0 and back[-1] == 0.0


def test_blend_motion_goes_from_last_pose_to_neutral():
    live, neutral = motion(20.0, 0.1), motion(0.0, 0.0)
    assert blend_motion(live, neutral, 0.0) is live and blend_motion(live, neutral, 1.0) is neutral
    half = blend_motion(live, neutral, 0.5)
    assert half.yaw.item() == pytest.approx(10.0)
    assert torch.allclose(half.R, rotation_matrix(torch.zeros(1), torch.tensor([10.0]), torch.zeros(1)), atol=1e-6)
    assert torch.allclose(half.exp, torch.full((1, 21, 3), 0.05))


def test_idle_breathes_and_blinks_at_natural_intervals():
    ex = Expressions(ease_s=0.15)
    idle = IdleAnimator(ease_s=0.5, alive=True, seed=3)
    idle.update(True, 0.0)
    assert idle.offsets(0.0, ex) is None  # live: nothing added
    fps, seconds = 30, 60
    blinks, shut, pitches, last_start = 0, False, [], None
    gaps = []
    for i in range(1, fps * seconds):
        t = i / fps
        idle.update(False, t)
        off = idle.offsets(t, ex)
        assert off is not None
        pitches.append(off.pose_deg[0, 0].item())
        closed = off.exp[0, 11, 1].item() > 0.006  # upper lid more than half way down
        if closed and not shut:
            blinks += 1
            if last_start is not None:
                gaps.append(t - last_start)
            last_start = t
        shut = closed
    assert 8 <= blinks <= 30  # people blink every 2-6 s
    assert min(gaps) >= 1.9
    assert max(abs(p) for p in pitches) <= 1.0 and max(pitches) - min(pitches) > 1.0  # subtle but moving


def test_not_alive_still_eases_but_adds_nothing():
    idle = IdleAnimator(ease_s=0.2, alive=False)
    idle.update(True, 0.0)
    assert idle.update(False, 1.0) == 1.0
    assert idle.offsets(1.0, Expressions(ease_s=0.15)) is None
