"""SPADE decoder G: warped features (B,256,64,64) -> the animated face crop (B,3,512,512) in (0,1).

The input is both the data path and the SPADE "segmentation map": every residual block modulates
its instance-normalised activations with a per-pixel gamma/beta predicted from that map (nearest-
resized to the block's resolution). conv_0/conv_1/conv_s carry the official spectral normalisation
(keys weight_orig/weight_u/weight_v); in eval mode the weight is weight_orig / (u . W v) with the
stored u, v — no power iteration — which is exactly what ``SpectralNormConv2d`` computes.
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
        self.register_buffer("folded_weight", None, persistent=False)

    def effective_weight(self) -> torch.Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, torch.mv(w.reshape(w.shape[0], -1), self.weight_v))
        return w / sigma

    @torch.no_grad()
    def fold(self) -> None:
        """Compute the effective weight once (inference: u and v never change); not saved in the state_dict."""
        self.folded_weight = self.effective_weight().detach().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.folded_weight if self.folded_weight is not None else self.effective_weight()
        return self._conv_forward(x, w, self.bias)


class SPADE(nn.Module):
    def __init__(self, norm_channels: int, label_channels: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


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

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
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

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(self.cfg.num_middle_blocks):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_1(F.interpolate(self.up_0(F.interpolate(x, scale_factor=2), feature), scale_factor=2), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
