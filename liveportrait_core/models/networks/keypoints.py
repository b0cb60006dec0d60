"""Keypoint maths of LivePortrait: pose bins to degrees, the rotation matrix, the keypoint transform.

Conventions are the official ones (LIVEPORTRAIT_FACTS.md section 6): 66 pose bins of 3 degrees
centred so that ``angle = 3 * E[bin] - 97.5``; ``rotation_matrix`` returns ``(Rz(roll) Ry(yaw)
Rx(pitch))^T`` and keypoints are row vectors multiplied on the right (``kp @ R``); the transform is
``x = scale * (kp @ R + exp) + [t_x, t_y, 0]``. Everything stays on the tensors' device, in
float32, with no host round trip, because it runs every frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NUM_KP = 21
NUM_BINS = 66


def headpose_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, 66) bin logits -> (B,) degrees, as the softmax expectation of the bin index."""
    prob = torch.softmax(logits.float(), dim=-1)
    idx = torch.arange(logits.shape[-1], device=logits.device, dtype=prob.dtype)
    return (prob * idx).sum(dim=-1) * 3.0 - 97.5


def rotation_matrix(pitch_deg: torch.Tensor, yaw_deg: torch.Tensor, roll_deg: torch.Tensor) -> torch.Tensor:
    """Degrees, shape (B,) or (B, 1) each -> (B, 3, 3), the official (transposed) rotation matrix."""
    p, y, r = (a.float().reshape(-1) * (math.pi / 180.0) for a in (pitch_deg, yaw_deg, roll_deg))
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    cp, sp, cy, sy, cr, sr = p.cos(), p.sin(), y.cos(), y.sin(), r.cos(), r.sin()
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], dim=1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], dim=1).view(-1, 3, 3)
    return (rz @ ry @ rx).transpose(1, 2)


def transform_keypoints(kp: torch.Tensor, exp: torch.Tensor, R: torch.Tensor, scale: torch.Tensor,
                        t: torch.Tensor) -> torch.Tensor:
    """Canonical keypoints (B,21,3) -> posed keypoints; scale (B,1), t (B,3) (t_z ignored)."""
    kp = kp.reshape(kp.shape[0], NUM_KP, 3)
    exp = exp.reshape(exp.shape[0], NUM_KP, 3)
    x = scale.reshape(-1, 1, 1) * (kp @ R + exp)
    return x + torch.cat([t.reshape(-1, 3)[:, :2], torch.zeros_like(t.reshape(-1, 3)[:, 2:])], dim=1)[:, None, :]


@dataclass
class MotionInfo:
    """What the motion extractor says about one face, in the form the driving maths uses.

    pitch/yaw/roll: (B, 1) degrees; R: (B, 3, 3); kp, exp: (B, 21, 3) canonical keypoints and expression;
    t: (B, 3); scale: (B, 1).
    """

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    R: torch.Tensor
    kp: torch.Tensor
    exp: torch.Tensor
    t: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def from_raw(cls, raw: dict[str, torch.Tensor]) -> "MotionInfo":
        """Parse the motion extractor's raw outputs (official ``get_kp_info``), in float32."""
        pitch, yaw, roll = (headpose_to_degrees(raw[k])[:, None] for k in ("pitch", "yaw", "roll"))
        b = raw["kp"].shape[0]
        return cls(pitch=pitch, yaw=yaw, roll=roll, R=rotation_matrix(pitch, yaw, roll),
                   kp=raw["kp"].float().reshape(b, NUM_KP, 3), exp=raw["exp"].float().reshape(b, NUM_KP, 3),
                   t=raw["t"].float().reshape(b, 3), scale=raw["scale"].float().reshape(b, 1))

    def keypoints(self) -> torch.Tensor:
        """x = transform(kp, exp, R, scale, t): the posed keypoints (B, 21, 3)."""
        return transform_keypoints(self.kp, self.exp, self.R, self.scale, self.t)

    def to(self, device: torch.device | str) -> "MotionInfo":
        return MotionInfo(**{k: v.to(device) for k, v in self.__dict__.items()})
