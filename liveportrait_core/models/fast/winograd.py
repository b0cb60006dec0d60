"""Winograd F(4x4, 3x3): a 3x3 convolution with 2.25x fewer multiply-adds than the direct one (CPU).

On a CPU without a Winograd kernel in oneDNN (AVX2), the decoder's big 3x3 convs run at the
float32 peak already, so the only exact way to make them faster is to do less arithmetic. Winograd's
minimal filtering computes each 4x4 output tile from a 6x6 input tile with 36 products instead of 144:

    Y = A^T [ (G g G^T) * (B^T d B) ] A      (Lavin & Gray 2016, "Fast Algorithms for CNNs")

with the matrices built from interpolation points chosen for float32 accuracy (``POINTS``).

The filter transform G g G^T is done once at load; per frame the input tiles are transformed, the 36
"frequency" slices are multiplied by one batched GEMM (36 x (Cout x Cin) @ (Cin x tiles)), and the
output tiles are transformed back. Both transforms are separable small GEMMs, and the work
is done a band of tile rows at a time so that the intermediate products stay in the CPU's cache.

The result is the same convolution up to float32 rounding: in float64 it equals ``F.conv2d`` to
1e-12 (tests/test_winograd.py); in float32 its error against a float64 reference is of the same order
as the direct convolution's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TILE = 4  #: output tile side m
ALPHA = TILE + 2  #: input tile side m + r - 1
#: intermediate products per band, in output channels x tiles (~9 MiB of float32 per band)
BAND_WORK = 64 * 1024

#: Interpolation points of the Toom-Cook construction (plus the point at infinity). Lavin's
#: 0, +-1, +-2 give output-transform entries up to 8 and about 3x the direct conv's worst float32 error;
#: 0, +-1, 2, -1/2 (Barabasz et al. 2020, "Error analysis and improving the accuracy of Winograd
#: convolution") bring it to about the direct conv's own (measured on 512-channel convs: 3.1e-6 vs 2.5e-6).
POINTS = (0.0, 1.0, -1.0, 2.0, -0.5)


def transform_matrices(points: tuple[float, ...] = POINTS, m: int = TILE, r: int = 3
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B^T, G, A^T) of F(m, r), float64, from evaluating at ``points`` and infinity.

    Linear convolution c = a * b by Toom-Cook is c = V^-1 [(V_a a) . (V_b b)] with Vandermonde
    matrices V_a (n x m), V_b (n x r), V (n x n), n = m + r - 1; the correlation a CNN computes is its
    transpose: y = V_a^T [(V_b g) . (V^-T d)], so A^T = V_a^T, G = V_b, B^T = V^-T.
    """
    n = m + r - 1
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, got {len(points)}")

    def vandermonde(cols: int) -> torch.Tensor:
        v = torch.tensor([[p ** k for k in range(cols)] for p in points] + [[0.0] * cols], dtype=torch.float64)
        v[n - 1, cols - 1] = 1.0  # infinity: the leading coefficient
        return v

    return torch.linalg.inv(vandermonde(n)).T.contiguous(), vandermonde(r), vandermonde(m).T.contiguous()


_BT, _G, _AT = transform_matrices()


def transform_filter(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, [kd,] 3, 3) -> (kd, 36, Cout, Cin): G g G^T per filter and depth tap, in float64."""
    w = weight.detach().to("cpu", torch.float64)  # derived in float64 on the CPU (MPS has no float64)
    w = w[:, :, None] if w.dim() == 4 else w  # a 2-D conv is a 3-D conv with one depth tap
    u = torch.einsum("ak,oitkl,bl->taboi", _G, w, _G)
    return u.reshape(w.shape[2], ALPHA * ALPHA, *w.shape[:2]).to(weight.device, weight.dtype).contiguous()


def _separable(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """T X T^T for every tile at once: x (a, a*N) holds tile rows, then tile columns, then N tiles.

    Two small GEMMs (rows, then columns batched over rows) instead of one with the Kronecker
    product kron(T, T): 2a instead of a*a multiply-adds per value.
    """
    a = t.shape[1]
    rows = torch.mm(t, x)  # (k, a*N)
    return torch.matmul(t, rows.view(t.shape[0], a, -1))  # (k, k, N)


class WinogradConv3x3(nn.Module):
    """``F.conv2d(x, weight, bias, padding=1)`` for a 3x3, stride-1 convolution, by Winograd F(4x4, 3x3);
    for a 3x3x3 weight, ``F.conv3d(x, weight, bias, padding=1)``: Winograd in (h, w), the three depth
    taps as accumulated GEMMs on depth-shifted views of the transformed input (no copies).

    Holds the transformed filter (36/9 = 4x the weight's memory) as a non-persistent buffer: the
    official state_dict is untouched and ``.to()`` moves it with the module.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if weight.shape[-2:] != (3, 3) or weight.dim() == 5 and weight.shape[2] != 3 or weight.dim() not in (4, 5):
            raise ValueError(f"WinogradConv3x3 needs a 3x3 or 3x3x3 kernel, got {tuple(weight.shape[2:])}")
        self.out_channels, self.in_channels = weight.shape[:2]
        self.volumetric = weight.dim() == 5
        self.register_buffer("filter", transform_filter(weight), persistent=False)  # (kd, 36, O, C)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)
        kron = {"dtype": weight.dtype, "device": weight.device}
        self.register_buffer("input_transform", _BT.to(**kron), persistent=False)  # (6, 6)
        self.register_buffer("output_transform", _AT.to(**kron), persistent=False)  # (4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Winograd's transforms lose too much in half precision: always run in the filter's dtype.
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.filter.dtype)
            return self._forward(x) if self.volumetric else self._forward(x[:, :, None])[:, :, 0]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, d, h, w) -> (b, Cout, d, h, w)."""
        b, c, d, h, w = x.shape
        th, tw = -(-h // TILE), -(-w // TILE)
        pd = 1 if self.volumetric else 0
        # Pad by 1 (the conv's padding), plus up to 3 more at the bottom/right so the tiles cover the map.
        xp = F.pad(x, (1, 1 + tw * TILE - w, 1, 1 + th * TILE - h, pd, pd))
        out = x.new_empty(b, self.out_channels, d, th * TILE, tw * TILE)
        band = max(1, BAND_WORK // (self.out_channels * d * tw))
        if torch.compiler.is_compiling():
            band = th  # one band: a traced loop would unroll into dozens of copies of the graph
        for i in range(b):
            tiles = xp[i].unfold(2, ALPHA, TILE).unfold(3, ALPHA, TILE)  # (c, d+2pd, th, tw, 6, 6), a view
            for r0 in range(0, th, band):
                self._band(tiles[:, :, r0:r0 + band], out[i, :, :, r0 * TILE:(r0 + band) * TILE])
        if out.shape[3:] != (h, w):
            out = out[..., :h, :w].contiguous()
        return out

    def _band(self, tiles: torch.Tensor, dst: torch.Tensor) -> None:
        """One band of tile rows: (c, dp, r, tw, 6, 6) input tiles -> dst (Cout, d, 4r, 4tw)."""
        c, dp, r, tw = tiles.shape[:4]
        kd = self.filter.shape[0]
        o, d, n = self.out_channels, dp - kd + 1, r * tw
        t = tiles.permute(4, 5, 0, 1, 2, 3).reshape(ALPHA, ALPHA * c * dp * n)  # the one gather copy
        v = _separable(self.input_transform, t).view(ALPHA * ALPHA, c, dp, n)  # B^T d B
        m = torch.bmm(self.filter[0], v[:, :, 0:d].reshape(ALPHA * ALPHA, c, d * n))  # (36, o, d*n)
        for k in range(1, kd):  # the other depth taps: strided views, accumulated in place
            m.baddbmm_(self.filter[k], v[:, :, k:k + d].reshape(ALPHA * ALPHA, c, d * n))
        y = _separable(self.output_transform, m.view(ALPHA, ALPHA * o * d * n))  # A^T m A: (4, 4, o*d*n)
        y = y.view(TILE, TILE, o, d, r, tw).permute(2, 3, 4, 0, 5, 1)  # (o, d, r, 4, tw, 4)
        dst = dst.view(o, d, r, TILE, tw, TILE)
        if self.bias is None:
            dst.copy_(y)
        elif torch.compiler.is_compiling():  # inductor cannot write ``out=`` into a view
            dst.copy_(y + self.bias.view(o, 1, 1, 1, 1, 1))
        else:  # bias added in the same pass that reorders the tiles into the image
            torch.add(y, self.bias.view(o, 1, 1, 1, 1, 1), out=dst)

    def extra_repr(self) -> str:
        kind = "3x3x3: F(4x4, 3x3) x 3 depth taps" if self.volumetric else "F(4x4, 3x3)"
        return f"{self.in_channels}, {self.out_channels}, {kind}"
