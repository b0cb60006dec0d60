"""Eye-close boost: a blink closes a stylised character's big eyes fully, through the official eye retargeting.

The motion of a human blink moves the eyelid keypoints by what closes a human eye; drawn eyes (anime, mascots)
are often much taller, so they only half close (LivePortrait users: big anime eyes that never close). The
official eye-retargeting MLP knows how the keypoints of *this* character move between its own eye opening and
any other: ``closing_delta`` is its keypoint change from the character's open ratio to closed (the official
closed ratio, ``landmarks.EYE_OFFICIAL_CLOSED``), computed once per character. Each frame adds that change
times ``animation.eye_close_boost`` times how closed the eyes are meant to be (``blink_level``): 0 with open
eyes, 1 at the bottom of a blink — tracked (the driving eye ratio against the calibrated one) or idle (the
idle animator's blinks). It is added before stitching, as the official retargeting deltas are. Per frame it
costs one multiply-add on the device and no host sync.
"""
from __future__ import annotations

import torch

from liveportrait_core.models.networks.stitching import retarget
from liveportrait_core.tracking.landmarks import EYE_OFFICIAL_CLOSED, EYE_OFFICIAL_OPEN


def closing_delta(eye_net, x_s: torch.Tensor, source_eye_ratio: torch.Tensor) -> torch.Tensor:
    """(1, 21, 3): the official eye retargeting's keypoint change from the source's own eye opening (the mean
    of its two ratios) to closed. Zero by construction when nothing closes (the same MLP, both ratios)."""
    s = source_eye_ratio.reshape(1, 2).to(x_s)
    own = s.mean(dim=1, keepdim=True)
    closed = torch.full_like(own, EYE_OFFICIAL_CLOSED)
    with torch.inference_mode():
        return retarget(eye_net, x_s, torch.cat([s, closed], dim=1)) - retarget(eye_net, x_s, torch.cat([s, own], dim=1))


def tracked_blink(eye_open: tuple[float, float] | None, reference: tuple[float, float] | None = None) -> float:
    """How closed the tracked eyes are, 0 (as open as at calibration) .. 1 (closed): the mean of the two
    official-range ratios between the reference's opening (``EYE_OFFICIAL_OPEN`` before calibration) and
    ``EYE_OFFICIAL_CLOSED``. Host floats from the tracker: no device sync."""
    if eye_open is None:
        return 0.0
    ref = sum(reference) / 2 if reference else EYE_OFFICIAL_OPEN
    span = ref - EYE_OFFICIAL_CLOSED
    if span <= 1e-6:
        return 0.0
    e = (float(eye_open[0]) + float(eye_open[1])) / 2
    return min(1.0, max(0.0, (ref - e) / span))


def blink_level(tracked: float, idle: float, idle_weight: float) -> float:
    """The blink to boost: the tracked one while live, the idle animator's while idle, blended by the idle
    weight (0 live .. 1 idle) as the motion is."""
    return max(tracked * (1.0 - idle_weight), idle * idle_weight)
