"""Appearance feature extractor F: the source face crop -> a 3-D feature volume (once per character).

(B,3,256,256) in [0,1] -> 2-D convs down to 64x64 with 512 channels, reshaped to 32 channels x depth
16, then six 3-D residual blocks -> f_s (B,32,16,64,64).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from liveportrait_core.models.networks.blocks import DownBlock2d, ResBlock3d, SameBlock2d


@dataclass(frozen=True)
class AppearanceConfig:
    image_channels: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channels: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6


class AppearanceFeatureExtractor(nn.Module):
    def __init__(self, cfg: AppearanceConfig = AppearanceConfig()):
        super().__init__()
        self.cfg = cfg
        e = cfg.block_expansion
        self.first = SameBlock2d(cfg.image_channels, e)
        chans = [min(cfg.max_features, e * 2 ** i) for i in range(cfg.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.second = nn.Conv2d(chans[-1], cfg.max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.first(image)
        for block in self.down_blocks:
            x = block(x)
        x = self.second(x)
        b, _, h, w = x.shape
        return self.resblocks_3d(x.view(b, self.cfg.reshape_channels, self.cfg.reshape_depth, h, w))
