"""Warping module W: moves the source feature volume to the driving pose (runs every frame).

The dense-motion network builds 22 candidate motions (identity + one translation per keypoint),
samples a compressed copy of f_s with each, adds keypoint Gaussian heatmaps (driving minus source),
and a 3-D U-Net ("hourglass") predicts a softmax mask over the candidates (-> the deformation field)
and an occlusion map. W then samples the full f_s with the deformation, flattens depth into channels
and applies two 2-D convs, multiplied by the occlusion map -> (B,256,64,64) for the decoder.

``DenseMotionNetwork.forward`` (hourglass_input -> hourglass -> heads -> outputs) and
``WarpingNetwork.forward`` are the one statement of the structure; the CPU fast form replaces the
``heads`` step and the hourglass decoder's last ``conv`` (models/fast).

Exactness notes: the coordinate grid has exact +-1 endpoints (align-corners style) but every
``grid_sample`` uses align_corners=False, as the official code does; the grid's channels are (x, y, z).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from liveportrait_core.models.networks.blocks import DownBlock3d, SameBlock2d, UpBlock3d


@dataclass(frozen=True)
class WarpingConfig:
    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channels: int = 32
    # dense-motion network
    dm_block_expansion: int = 32
    dm_max_features: int = 1024
    dm_num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4
    kp_variance: float = 0.01


def coordinate_grid(d: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(d, h, w, 3) grid, channels (x, y, z), each axis from -1 to 1 inclusive."""
    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, device=device, dtype=dtype) / (n - 1)) - 1
    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_gaussians(grid: torch.Tensor, kp: torch.Tensor, variance: float) -> torch.Tensor:
    """exp(-0.5 |grid - kp|^2 / variance) for every keypoint: (B,K,3) -> (B,K,d,h,w)."""
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)


class Encoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        chans = [in_features] + [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock3d(a, b) for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(UpBlock3d(cin, min(max_features, block_expansion * 2 ** i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """3-D U-Net that halves (h, w) five times, keeps depth, and concatenates skips on the way up."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DenseMotionNetwork(nn.Module):
    def __init__(self, cfg: WarpingConfig):
        super().__init__()
        self.cfg = cfg
        k = cfg.num_kp + 1
        self.hourglass = Hourglass(cfg.dm_block_expansion, k * (cfg.compress + 1), cfg.dm_num_blocks,
                                   cfg.dm_max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, k, 7, padding=3)
        self.compress = nn.Conv3d(cfg.reshape_channels, cfg.compress, 1)
        self.norm = nn.BatchNorm3d(cfg.compress)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * cfg.reshape_depth, 1, 7, padding=3)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        motions, x = self.hourglass_input(feature, kp_driving, kp_source)
        prediction = self.hourglass(x)
        return self.outputs(motions, *self.heads(prediction))

    def hourglass_input(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the 22 candidate motions (b,k,d,h,w,3), the hourglass input (b, k*(c+1), d, h, w))."""
        feature = F.relu(self.norm(self.compress(feature)))
        b, c, d, h, w = feature.shape
        k = self.cfg.num_kp + 1
        grid = coordinate_grid(d, h, w, feature.device, feature.dtype)
        # 22 candidate motions (driving -> source): identity, then a translation per keypoint.
        per_kp = grid[None, None] - kp_driving.to(grid.dtype)[:, :, None, None, None, :] \
            + kp_source.to(grid.dtype)[:, :, None, None, None, :]
        motions = torch.cat([grid[None, None].expand(b, 1, d, h, w, 3), per_kp], dim=1)  # (b,k,d,h,w,3)
        deformed = F.grid_sample(feature[:, None].expand(b, k, c, d, h, w).reshape(b * k, c, d, h, w),
                                 motions.reshape(b * k, d, h, w, 3), align_corners=False).view(b, k, c, d, h, w)
        heat = keypoint_gaussians(grid, kp_driving.to(grid.dtype), self.cfg.kp_variance) \
            - keypoint_gaussians(grid, kp_source.to(grid.dtype), self.cfg.kp_variance)
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1)
        return motions, torch.cat([heat[:, :, None], deformed], dim=2).view(b, k * (c + 1), d, h, w)

    def heads(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask logits (b,k,d,h,w), occlusion logits (b,1,h,w)); the occlusion conv sees depth as channels."""
        b, _, _, h, w = prediction.shape
        return self.mask(prediction), self.occlusion(prediction.reshape(b, -1, h, w))

    @staticmethod
    def outputs(motions: torch.Tensor, mask_logits: torch.Tensor, occlusion_logits: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        mask = torch.softmax(mask_logits, dim=1)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask[:, :, None]).sum(dim=1).permute(0, 2, 3, 4, 1)
        return {"mask": mask, "deformation": deformation, "occlusion_map": torch.sigmoid(occlusion_logits)}


class WarpingNetwork(nn.Module):
    def __init__(self, cfg: WarpingConfig = WarpingConfig()):
        super().__init__()
        self.cfg = cfg
        self.dense_motion_network = DenseMotionNetwork(cfg)
        out = cfg.block_expansion * 2 ** cfg.num_down_blocks
        self.third = SameBlock2d(cfg.max_features, out, lrelu=True)
        self.fourth = nn.Conv2d(out, out, 1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """Note the official positional order: driving keypoints before source keypoints."""
        return self.warp_features(feature_3d, self.dense_motion_network(feature_3d, kp_driving, kp_source))

    def warp_features(self, feature_3d: torch.Tensor, dense: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sample f_s with the dense motion, flatten depth into channels, two 2-D convs, occlusion."""
        deformation = dense["deformation"]
        out = F.grid_sample(feature_3d, deformation, align_corners=False)
        b, c, d, h, w = out.shape
        out = self.fourth(self.third(out.view(b, c * d, h, w))) * dense["occlusion_map"]
        return {"out": out, "occlusion_map": dense["occlusion_map"], "deformation": deformation}
