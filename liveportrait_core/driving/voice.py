"""The voice inside the driving maths: its mouth opening through the official lip retargeting MLP, its vowel
shapes as expression offsets, and the tracked lip motion held at neutral when the voice alone drives the mouth.

The opening is a lip-open ratio on the official scale (``voice.mouth``); the official lip retargeting takes
(x_s, [source ratio, driving ratio]) to a keypoint delta. The voice's delta is the MLP's delta from the
character's own ratio c_s to c_s + opening, minus its delta for no change (c_s to c_s): silence adds exactly
nothing, and the opening adds to whatever the motion already shows (tracked, idle or expressions).
``drive_keypoints`` adds it before stitching, as the official retargeting deltas are, so stitching and
paste-back treat it like tracked motion. Everything stays on the tensors' device: one small MLP call (a batch
of two) per voiced frame, no host sync.
"""
from __future__ import annotations

import functools
from dataclasses import replace

import torch

from liveportrait_core.driving.animation import LIP_ROWS, Offsets, RetargetingNets, SourceMotion, upload
from liveportrait_core.models.networks.keypoints import NUM_KP, MotionInfo
from liveportrait_core.models.networks.stitching import retarget


def voice_lip_delta(nets: RetargetingNets, source: SourceMotion, opening: float) -> torch.Tensor | None:
    """(1, 21, 3) keypoint delta for ``opening`` (extra lip-open ratio, official scale); None when there is
    nothing to add (no opening, or no lip MLP)."""
    if nets.lip is None or opening <= 0.0:
        return None
    c = source.lip_ratio.reshape(1, 1)
    ratios = torch.cat([torch.cat([c, c + opening], dim=1), torch.cat([c, c], dim=1)], dim=0)
    d = retarget(nets.lip, source.x_s.expand(2, -1, -1), ratios)
    return d[:1] - d[1:]


@functools.lru_cache(maxsize=4)
def _lip_mask(device: torch.device) -> torch.Tensor:
    m = torch.zeros(1, NUM_KP, 1, dtype=torch.bool)
    m[:, list(LIP_ROWS)] = True
    return m.to(device)


def hold_lips(live: MotionInfo, neutral: MotionInfo, weight: float = 1.0) -> MotionInfo:
    """``live`` with its lip rows (the official lip region) of the expression moved ``weight`` (0..1) of the way to
    ``neutral``: the webcam still drives the head, eyes and brows, the voice alone the mouth (``audio.mode:
    always``: 1; a hidden mouth: its fade, ``voice.mouth.apply_mode``)."""
    held = neutral.exp if weight >= 1.0 else torch.lerp(live.exp, neutral.exp, weight)
    return replace(live, exp=torch.where(_lip_mask(live.exp.device), held, live.exp))


class VowelShapes:
    """The vowel shapes (``voice.mouth.VOWEL_SHAPES``) on the animation's device, weighted per frame."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.to(device)

    def to(self, device: torch.device | str) -> "VowelShapes":
        from liveportrait_core.voice.mouth import vowel_shape_array  # noqa: PLC0415 - numpy only

        self.device = torch.device(device)
        self._shapes = torch.from_numpy(vowel_shape_array(NUM_KP)).to(self.device)
        self._zero_pose = torch.zeros(1, 3, device=self.device)
        return self

    def offsets(self, weights: tuple[float, ...]) -> Offsets | None:
        """The weighted sum of the shapes as expression offsets (None when every weight is 0)."""
        if not any(weights):
            return None
        w = upload(torch.tensor(weights, dtype=torch.float32), self.device)  # per voiced frame: no wait for the GPU
        return Offsets(exp=(w[:, None, None] * self._shapes).sum(0, keepdim=True), pose_deg=self._zero_pose)
