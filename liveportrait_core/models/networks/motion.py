"""Motion extractor M: a ConvNeXt-V2 tiny backbone with seven linear heads (runs every driving frame).

(B,3,256,256) in [0,1] -> dict of raw head outputs: pitch/yaw/roll (B,66) pose-bin logits, t (B,3),
exp (B,63), scale (B,1), kp (B,63). ``keypoints.MotionInfo.from_raw`` turns them into degrees,
rotation and keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MotionConfig:
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_kp: int = 21
    num_bins: int = 66
    in_channels: int = 3


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (ConvNeXt's 'channels_first' variant)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt-V2) on NHWC: per-channel L2 norm over H, W, divided
    by its mean over channels, scales the input; gamma, beta start at zero so it begins as identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """7x7 depth-wise conv -> LayerNorm -> Linear 4x -> GELU -> GRN -> Linear back, plus residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """The backbone plus heads; attribute names follow the official ``detector`` state_dict."""

    HEADS = ("kp", "scale", "pitch", "yaw", "roll", "t", "exp")

    def __init__(self, cfg: MotionConfig = MotionConfig()):
        super().__init__()
        d = cfg.dims
        self.downsample_layers = nn.ModuleList([nn.Sequential(nn.Conv2d(cfg.in_channels, d[0], 4, stride=4),
                                                              ChannelsFirstLayerNorm(d[0]))])
        for a, b in zip(d[:-1], d[1:]):
            self.downsample_layers.append(nn.Sequential(ChannelsFirstLayerNorm(a), nn.Conv2d(a, b, 2, stride=2)))
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(n)))
                                    for dim, n in zip(d, cfg.depths))
        self.norm = nn.LayerNorm(d[-1], eps=1e-6)
        sizes = {"kp": 3 * cfg.num_kp, "scale": 1, "pitch": cfg.num_bins, "yaw": cfg.num_bins,
                 "roll": cfg.num_bins, "t": 3, "exp": 3 * cfg.num_kp}
        for name in self.HEADS:
            setattr(self, f"fc_{name}", nn.Linear(d[-1], sizes[name]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = self.norm(x.mean((-2, -1)))
        return {name: getattr(self, f"fc_{name}")(x) for name in ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")}


class MotionExtractor(nn.Module):
    def __init__(self, cfg: MotionConfig = MotionConfig()):
        super().__init__()
        self.detector = ConvNeXtV2(cfg)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(image)
