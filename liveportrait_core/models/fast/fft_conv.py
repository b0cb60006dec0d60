"""The dense-motion network's two 7x7 heads by FFT: 12x fewer multiply-adds than the direct convs (CPU).

On a CPU the warping module's largest cost is its mask head, a 7x7x7 conv 142 -> 22 on a 16x64x64
volume (140 GFLOP, a third of W), and next to it the occlusion head, a 7x7 conv over the same
volume with depth flattened into channels (2272 -> 1). Both read the same tensor and both have large
(h, w) kernels, which is where convolution by FFT pays: the (h, w) plane is cut into 32x32 blocks
(overlap-save, 40x40 transforms), every block of every (channel, depth) slice is transformed once,
and each head is a sum of per-frequency products over channels (and, for the mask, its 7 depth
taps), done as real batched GEMMs on the stacked real and imaginary parts.

Same function up to float32 rounding: equal to ``conv3d``/``conv2d`` to 1e-12 in float64
(tests/test_fft_conv.py), and in float32 closer to a float64 reference than the direct conv
(measured 2e-7 vs 1e-5 relative on the mask head). The filters' spectra are kept (about 150 MiB
for the official sizes), a memory-for-time trade made only on CPUs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLOCK = 32  #: output block side in (h, w)
FFT_SIZE = 40  #: transform side: >= BLOCK + kernel - 1, and a fast FFT length


def _filter_spectrum(weight: torch.Tensor, n: int) -> torch.Tensor:
    """(..., k, k) correlation filters -> (n, n//2+1, ...) conjugate spectra, float64."""
    k = weight.shape[-1]
    spec = torch.fft.rfft2(F.pad(weight.detach().to("cpu", torch.float64), (0, n - k, 0, n - k))).conj()
    dims = weight.dim()
    return spec.permute(dims - 2, dims - 1, *range(dims - 2))


def _stack_real_imag(spec: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Complex (..., c, ...) -> real (..., 2c, ...): real parts then imaginary parts along ``dim``."""
    return torch.cat([spec.real, spec.imag], dim=dim).to(dtype).contiguous()


class FFTMotionHeads(nn.Module):
    """``(mask(pred), occlusion(pred.flatten(1, 2)))`` for a dense-motion network's Conv3d/Conv2d heads.

    ``mask``: Conv3d(C, O, k) with padding k//2; ``occlusion``: Conv2d(C*D, 1, k) with padding k//2,
    reading the (C, D) volume with depth flattened into channels, as the official network does.
    """

    def __init__(self, mask: nn.Conv3d, occlusion: nn.Conv2d, depth: int,
                 block: int = BLOCK, fft_size: int = FFT_SIZE):
        super().__init__()
        k = mask.kernel_size[0]
        if (mask.kernel_size != (k, k, k) or occlusion.kernel_size != (k, k) or mask.padding != (k // 2,) * 3
                or occlusion.padding != (k // 2,) * 2 or fft_size < block + k - 1):
            raise ValueError("FFTMotionHeads needs cubic/square kernels of one size with 'same' padding")
        self.k, self.block, self.fft_size = k, block, fft_size
        self.channels, self.mask_out = mask.in_channels, mask.out_channels
        dtype = mask.weight.dtype
        # mask: (bins, k depth taps, 2*O, C); occlusion: (bins, 2, C*D)
        m = _filter_spectrum(mask.weight, fft_size)  # (n, m, O, C, k_depth)
        m = m.permute(0, 1, 4, 2, 3).reshape(-1, k, self.mask_out, self.channels)
        self.register_buffer("mask_spectrum", _stack_real_imag(m, 2, dtype).to(mask.weight.device), persistent=False)
        o = _filter_spectrum(occlusion.weight[0], fft_size).reshape(-1, 1, self.channels * depth)
        self.register_buffer("occlusion_spectrum", _stack_real_imag(o, 1, dtype).to(mask.weight.device),
                             persistent=False)
        self.register_buffer("mask_bias", mask.bias.detach().view(-1, 1, 1, 1).clone(), persistent=False)
        self.register_buffer("occlusion_bias", occlusion.bias.detach().view(1, 1, 1).clone(), persistent=False)

    def forward(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # FFTs have no half-precision CPU kernels: always run in the spectra's dtype.
        with torch.autocast(prediction.device.type, enabled=False):
            prediction = prediction.to(self.mask_spectrum.dtype)
            if prediction.shape[0] == 1:  # the live case: no stacking copy
                mask, occlusion = self._one(prediction[0])
                return mask[None], occlusion[None]
            masks, occlusions = zip(*(self._one(p) for p in prediction))
            return torch.stack(masks), torch.stack(occlusions)

    def _one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One volume (C, D, H, W) -> mask logits (O, D, H, W), occlusion logits (1, H, W)."""
        c, d, h, w = x.shape
        bs, n, p = self.block, self.fft_size, self.k // 2
        nbh, nbw = -(-h // bs), -(-w // bs)
        xp = F.pad(x, (p, nbw * bs - bs + n - w - p, p, nbh * bs - bs + n - h - p))
        blocks = xp.unfold(2, n, bs).unfold(3, n, bs)  # (C, D, nbh, nbw, n, n): overlapping views
        spec = torch.fft.rfft2(blocks)  # (C, D, nbh, nbw, n, n//2+1)
        bins, nb2 = n * (n // 2 + 1), nbh * nbw * 2
        spec = spec.permute(4, 5, 0, 1, 2, 3).contiguous().view(bins, c, d, nbh * nbw)  # the one reorder copy
        xr = torch.view_as_real(spec).view(bins, c, d, nb2)  # re/im interleaved per block

        # mask: depth taps as accumulating GEMMs on depth-shifted views (zero padding = skipped rows)
        z = torch.bmm(self.mask_spectrum[:, p], xr.view(bins, c, d * nb2)).view(bins, -1, d, nb2)
        for t in range(self.k):
            dz = t - p
            lo, hi = max(0, -dz), min(d, d - dz)
            if dz == 0 or hi <= lo:
                continue
            rows = z[:, :, lo:hi].view(bins, -1, (hi - lo) * nb2)  # a strided view: accumulates in place
            rows.baddbmm_(self.mask_spectrum[:, t], xr[:, :, lo + dz:hi + dz].reshape(bins, c, -1))
        mask = self._to_image(z.view(bins, 2, self.mask_out, d * nbh * nbw, 2), (self.mask_out, d), nbh, nbw, h, w)
        occ = torch.bmm(self.occlusion_spectrum, xr.view(bins, c * d, nb2)).view(bins, 2, 1, nbh * nbw, 2)
        occlusion = self._to_image(occ, (1,), nbh, nbw, h, w)
        return mask.add_(self.mask_bias), occlusion.add_(self.occlusion_bias)

    def _to_image(self, z: torch.Tensor, lead: tuple[int, ...], nbh: int, nbw: int, h: int, w: int) -> torch.Tensor:
        """(bins, 2 [filter re/im], ..., 2 [input re/im]) products -> the (lead..., h, w) output."""
        n, bs = self.fft_size, self.block
        re = z[:, 0, ..., 0] - z[:, 1, ..., 1]
        im = z[:, 0, ..., 1] + z[:, 1, ..., 0]
        spec = torch.complex(re, im).view(n, n // 2 + 1, *lead, nbh, nbw)
        nl = len(lead)
        spec = spec.permute(*range(2, 2 + nl + 2), 0, 1)  # (lead..., nbh, nbw, n, m)
        y = torch.fft.irfft2(spec, s=(n, n))[..., :bs, :bs]  # (lead..., nbh, nbw, bs, bs)
        perm = [*range(nl), nl, nl + 2, nl + 1, nl + 3]
        y = y.permute(*perm).reshape(*lead, nbh * bs, nbw * bs)
        return y[..., :h, :w].contiguous() if (nbh * bs, nbw * bs) != (h, w) else y.contiguous()
