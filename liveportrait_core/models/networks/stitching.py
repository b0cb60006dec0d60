"""The stitching, lip and eye MLPs and their keypoint-level use (official wrapper maths, float32).

stitching: [x_s, x_d] (126) -> 63 keypoint offsets + a shared (dx, dy) that keeps the animated crop
seamless when pasted back; lip: [x_s, lip ratios] (65) -> 63; eye: [x_s, eye ratios] (66) -> 63.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MLPConfig:
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


CONFIGS = {
    "stitching": MLPConfig(126, (128, 128, 64), 65),
    "lip": MLPConfig(65, (128, 128, 64), 63),
    "eye": MLPConfig(66, (256, 256, 128, 128, 64), 63),
}


class RetargetingMLP(nn.Module):
    """(Linear -> ReLU) per hidden size, then a final Linear; keys ``mlp.<2i>.weight/bias``."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        sizes = (cfg.input_size, *cfg.hidden_sizes)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], cfg.output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def _concat(kp: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    b = kp.shape[0]
    return torch.cat([kp.reshape(b, -1), other.reshape(b, -1).to(kp)], dim=1)


def stitch(mlp: nn.Module, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """Driving keypoints after stitching: x_d + delta (21x3), plus (dx, dy) on every keypoint's x, y."""
    b, n = x_s.shape[:2]
    delta = mlp(_concat(x_s, x_d))
    shift = torch.cat([delta[:, 3 * n:3 * n + 2], delta.new_zeros(b, 1)], dim=1)
    return x_d + delta[:, :3 * n].reshape(b, n, 3) + shift[:, None, :]


def retarget(mlp: nn.Module, x_s: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Keypoint offsets (B,21,3) from x_s and the open ratios (official ``retarget_eye`` / ``retarget_lip``,
    the same maths): eye MLP [source left, source right, driving] (B,3), lip MLP [source, driving] (B,2)."""
    return mlp(_concat(x_s, ratios)).reshape(x_s.shape[0], -1, 3)
