"""SPADE decoder G: warped features (B,256,64,64) -> the animated face crop (B,3,512,512) in (0,1).

The input is both the data path and the SPADE "segmentation map": every residual block modulates
its instance-normalised activations with a per-pixel gamma/beta predicted from that map (nearest-
resized to the block's resolution). conv_0/conv_1/conv_s carry the official spectral normalisation
(keys weight_orig/weight_u/weight_v); in eval mode the weight is weight_orig / (u . W v) with the
stored u, v — no power iteration — which is exactly what ``SpectralNormConv2d`` computes.

``SPADEDecoder.forward`` is the one statement of the structure; it calls named steps (``fc``,
``segmentation`` per resolution, the blocks, ``to_image``) that the CPU fast form replaces one by one
(models/fast).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SPADEConfig:
    input_channels: int = 256
    out_channels: int = 64
    num_middle_blocks: int = 6
    hidden: int = 128  #: channels of the SPADE shared conv


class SpectralNormConv2d(nn.Conv2d):
    """Conv2d whose weight is weight_orig / sigma, sigma = u . (W v) from the stored vectors.

    The state_dict matches ``torch.nn.utils.spectral_norm`` (bias, weight_orig, weight_u, weight_v).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0, bias: bool = True):
        super().__init__(cin, cout, kernel_size, padding=padding, bias=bias)
        w = self.weight
        del self.weight
        self.weight_orig = nn.Parameter(w.detach())
        self.register_buffer("weight_u", torch.zeros(cout))
        self.register_buffer("weight_v", torch.zeros(w[0].numel()))

    def effective_weight(self) -> torch.Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return w / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SPADE(nn.Module):
    """Instance norm modulated per pixel: x_hat * (1 + gamma(actv)) + beta(actv).

    ``actv`` is this SPADE's shared activation, relu(mlp_shared(segmap at x's size)): the decoder's
    ``segmentation`` step computes it (all SPADEs at one resolution read the same map).
    """

    def __init__(self, norm_channels: int, label_channels: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=1e-5) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin: int, fout: int, label_channels: int, hidden: int = 128):
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralNormConv2d(fin, fmid, 3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmid, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
        self.norm_0 = SPADE(fin, label_channels, hidden)
        self.norm_1 = SPADE(fmid, label_channels, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_channels, hidden)

    def spades(self) -> list[SPADE]:
        """The block's SPADEs in the order of ``forward``'s ``actvs``."""
        return [self.norm_0, self.norm_1] + ([self.norm_s] if self.learned_shortcut else [])

    def forward(self, x: torch.Tensor, actvs: list[torch.Tensor]) -> torch.Tensor:
        """``actvs``: the shared activations of ``spades()`` (norm_0, norm_1[, norm_s])."""
        shortcut = self.conv_s(self.norm_s(x, actvs[2])) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, actvs[0]), 0.2, inplace=True))  # on a fresh tensor
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, actvs[1]), 0.2, inplace=True))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    def __init__(self, cfg: SPADEConfig = SPADEConfig()):
        super().__init__()
        self.cfg = cfg
        c = cfg.input_channels
        self.fc = nn.Conv2d(c, 2 * c, 3, padding=1)
        for i in range(cfg.num_middle_blocks):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * c, 2 * c, c, cfg.hidden))
        self.up_0 = SPADEResnetBlock(2 * c, c, c, cfg.hidden)
        self.up_1 = SPADEResnetBlock(c, cfg.out_channels, c, cfg.hidden)
        self.conv_img = nn.Sequential(nn.Conv2d(cfg.out_channels, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def stages(self) -> list[tuple[int, list[SPADEResnetBlock]]]:
        """(scale of the 64x64 map, blocks at that resolution): 64^2, then 128^2, then 256^2."""
        middle = [getattr(self, f"G_middle_{i}") for i in range(self.cfg.num_middle_blocks)]
        return [(1, middle), (2, [self.up_0]), (4, [self.up_1])]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for scale, blocks in self.stages():
            if scale > 1:
                x = F.interpolate(x, scale_factor=2)
            for block, actvs in zip(blocks, self.segmentation(feature, scale, blocks)):
                x = block(x, actvs)
        return self.to_image(x)

    def segmentation(self, feature: torch.Tensor, scale: int, blocks: list[SPADEResnetBlock]
                     ) -> list[list[torch.Tensor]]:
        """Per block, its SPADEs' shared activations of the input feature (the SPADE "segmentation
        map"), nearest-upsampled by ``scale`` to the blocks' resolution."""
        seg = F.interpolate(feature, scale_factor=scale) if scale > 1 else feature
        return [[spade.mlp_shared(seg) for spade in block.spades()] for block in blocks]

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """(B,64,256,256) -> the (B,3,512,512) image in (0,1): conv to 12 channels, pixel shuffle."""
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
