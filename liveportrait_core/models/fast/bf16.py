"""bf16 forms of W and G (CPUs with native bf16, AMX / avx512_bf16, and CUDA GPUs): bf16 only where it pays and
stays accurate.

Made through the same seam as the float32 fast forms (models/fast/__init__.py): shallow copies of the
plain networks whose leaves are replaced, so the plain ``forward`` still states the structure. The
precision policy is stated here once, leaf by leaf (measured on recipe weights, docs/PERFORMANCE.md):

* bf16 (oneDNN AMX kernels, weights cast once, activations channels-last): the big convolutions only —
  G's convs and SPADE modulations, W's 3-D hourglass convs. Each returns float32, so every other step
  (instance norms, modulation arithmetic, residual sums, batch norms, pooling, the sigmoid) runs in
  float32 as in the plain network.
* float32: everything that builds or uses coordinates or probabilities — W's ``hourglass_input``
  (its coordinate grid, candidate motions, keypoint Gaussians and the ``compress`` conv), the mask and
  occlusion ``heads`` (by FFT, as in the float32 fast form), ``outputs`` (softmax, deformation), the final
  ``grid_sample``, ``third``/``fourth``; G's first conv ``fc`` (it starts the residual stream that every
  block adds to: as Winograd, as in the float32 fast form) and its last ``conv_img``. Under autocast the
  grid was the main loss: it came out in bf16 and quantised every motion.
* split input (``SPLIT_INPUT``): for the convs on G's residual path the float32 input is passed as two bf16
  parts, hi = bf16(x) and lo = bf16(x - hi), in one batched conv (the weights stay bf16): the input then
  keeps about 16 mantissa bits. G's image error 0.96 -> 0.74/255 for 2x those convs' bf16 time.

No autocast is involved: the loader runs these forms as they are (``loader.LivePortraitModels``), and
their outputs are float32.

The same forms serve CUDA (``bf16_plan``): nothing in them is oneDNN's own. A bf16 conv with bf16 weights
returning bf16 that is widened to float32 is what cuDNN does too (float32 accumulation, the result rounded to
bf16 as on the CPU); the split input, the float32 norms and sums, the channels-last layouts and the disabled
autocast are plain PyTorch on any device. Only the CPU's float32 speed-ups are left out there, as the float32
CUDA path leaves them out: G's ``fc`` is cuDNN's direct conv instead of Winograd and W's heads are the plain
convs instead of the FFT form (both float32; on CUDA float32 convs may use TF32, PyTorch's cuDNN default).
CUDA bf16 needs compute capability 8.0 (Ampere) or newer (``loader.pick_precision``). Unmeasured on a GPU so
far (docs/PERFORMANCE.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from liveportrait_core.models.fast.fft_conv import FFTMotionHeads
from liveportrait_core.models.fast.optimize import WINOGRAD_MIN_OUT_CHANNELS, _SharedConvs, conv3x3, per_block
from liveportrait_core.models.fast.seam import adopt, fast_copy
from liveportrait_core.models.networks.blocks import DownBlock3d, UpBlock3d
from liveportrait_core.models.networks.spade import SPADE, SPADEDecoder, SPADEResnetBlock, SpectralNormConv2d
from liveportrait_core.models.networks.warping import DenseMotionNetwork, WarpingNetwork

BF16 = torch.bfloat16
#: Devices whose bf16 mode runs these forms (elsewhere, e.g. Apple MPS, bf16 is not offered: ``pick_precision``).
BF16_FORM_DEVICES = frozenset({"cpu", "cuda"})
#: G's convs whose float32 input is split into two bf16 parts (see the module docstring)
SPLIT_INPUT = frozenset({"conv_0", "conv_1", "conv_s"})


def _layout(dims: int) -> torch.memory_format:
    return torch.channels_last if dims == 2 else torch.channels_last_3d


class Bf16Conv(nn.Module):
    """A conv (2-D or 3-D, stride 1) with bf16 weights and inputs, accumulated in float32 by oneDNN,
    output float32. ``split_input``: a float32 input is passed as hi + lo (two bf16 parts, one batched conv)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, padding, split_input: bool = False):
        super().__init__()
        self.dims = weight.dim() - 2
        self.padding, self.split_input = padding, split_input
        fmt = _layout(self.dims)
        self.register_buffer("weight", weight.detach().to(BF16).contiguous(memory_format=fmt), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv2d if self.dims == 2 else F.conv3d
        fmt = _layout(self.dims)
        with torch.autocast(x.device.type, enabled=False):
            hi = x.to(BF16, memory_format=fmt)
            if self.split_input and x.dtype == torch.float32:
                n = x.shape[0]
                lo = torch.sub(x, hi).to(BF16, memory_format=fmt)
                y = conv(torch.cat([hi, lo]), self.weight, None, padding=self.padding)
                out = y[:n].float().add_(y[n:])
            else:
                out = conv(hi, self.weight, None, padding=self.padding).float()
            if self.bias is not None:
                out.add_(self.bias.view(1, -1, *(1,) * self.dims))
            return out


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Instance norm in float32; batch 1 through batch-norm statistics (the CPU's channels-last kernel)."""
    x = x.float()
    if x.shape[0] == 1:
        return F.batch_norm(x, None, None, training=True, momentum=0.0, eps=1e-5)
    return F.instance_norm(x, eps=1e-5)


class Bf16Modulation(nn.Module):
    """One SPADE: gamma and beta as one bf16 conv (``1 +`` in the bias), the instance norm and the
    modulation in float32."""

    def __init__(self, spade: SPADE):
        super().__init__()
        g, b = spade.mlp_gamma, spade.mlp_beta
        self.channels = g.out_channels
        self.conv = Bf16Conv(torch.cat([g.weight, b.weight]), torch.cat([g.bias + 1, b.bias]), 1)

    def forward(self, x: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        gamma1, beta = self.conv(actv).split(self.channels, dim=1)
        return torch.addcmul(beta, _instance_norm(x), gamma1)


class _Bf16SharedConvs(_SharedConvs):
    """The float32 form's shared convs (one polyphase ``UpsampledConv3x3`` per resolution) in bf16."""

    def __init__(self, spades: list[SPADE], scale: int):
        super().__init__(spades, scale)
        for name, buf in list(self.conv.named_buffers(recurse=False)):
            if buf is not None:
                fmt = torch.channels_last if buf.dim() == 4 else torch.contiguous_format
                setattr(self.conv, name, buf.to(BF16).contiguous(memory_format=fmt))

    def forward(self, seg: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast(seg.device.type, enabled=False):
            return super().forward(seg.to(BF16, memory_format=torch.channels_last))


def _weight(conv: nn.Module) -> torch.Tensor:
    return conv.effective_weight() if isinstance(conv, SpectralNormConv2d) else conv.weight


def _bf16_conv(conv: nn.Conv2d, name: str) -> Bf16Conv:
    return Bf16Conv(_weight(conv), conv.bias, conv.padding, split_input=name in SPLIT_INPUT)


def _bf16_block(block: SPADEResnetBlock) -> SPADEResnetBlock:
    leaves: dict[str, nn.Module] = {n: _bf16_conv(getattr(block, n), n) for n in ("conv_0", "conv_1")}
    leaves.update({n: Bf16Modulation(getattr(block, n)) for n in ("norm_0", "norm_1")})
    if block.learned_shortcut:
        leaves.update(conv_s=_bf16_conv(block.conv_s, "conv_s"), norm_s=Bf16Modulation(block.norm_s))
    return fast_copy(block, **leaves)


class Bf16SPADEDecoder(SPADEDecoder):
    """The loaded decoder with bf16 convs (split inputs on the residual path) and float32 elsewhere.
    ``winograd_min_out``: G's float32 ``fc`` by Winograd (a CPU) or direct (None: cuDNN's own algorithms)."""

    def __init__(self, dec: SPADEDecoder, winograd_min_out: int | None = WINOGRAD_MIN_OUT_CHANNELS):
        adopt(self, dec)
        self.fc = conv3x3(dec.fc.weight, dec.fc.bias, winograd_min_out)  # float32: the residual stream's start
        self.shared = nn.ModuleDict({str(scale): _Bf16SharedConvs([sp for b in blocks for sp in b.spades()], scale)
                                     for scale, blocks in dec.stages()})
        for name, block in dec.named_children():
            if isinstance(block, SPADEResnetBlock):
                setattr(self, name, _bf16_block(block))

    def segmentation(self, feature: torch.Tensor, scale: int, blocks: list[SPADEResnetBlock]
                     ) -> list[list[torch.Tensor]]:
        return per_block(self.shared[str(scale)](feature), blocks)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().to_image(x.float())


def _bf16_hourglass(hourglass: nn.Module) -> nn.Module:
    """The hourglass with every down/up block's 3-D conv in bf16 (batch norms, pooling in float32)."""
    enc, dec = hourglass.encoder, hourglass.decoder
    down = nn.ModuleList(fast_copy(b, conv=Bf16Conv(b.conv.weight, b.conv.bias, b.conv.padding))
                         for b in enc.down_blocks if isinstance(b, DownBlock3d))
    up = nn.ModuleList(fast_copy(b, conv=Bf16Conv(b.conv.weight, b.conv.bias, b.conv.padding))
                       for b in dec.up_blocks if isinstance(b, UpBlock3d))
    last = dec.conv
    return fast_copy(hourglass, encoder=fast_copy(enc, down_blocks=down),
                     decoder=fast_copy(dec, up_blocks=up, conv=Bf16Conv(last.weight, last.bias, last.padding)))


class Bf16DenseMotionNetwork(DenseMotionNetwork):
    """bf16 hourglass; ``hourglass_input``, ``heads`` and ``outputs`` in float32 (the heads by FFT with
    ``fft_heads``, a CPU's speed-up; else the plain convs)."""

    def __init__(self, dm: DenseMotionNetwork, fft_heads: bool = True):
        adopt(self, dm)
        self.hourglass = _bf16_hourglass(dm.hourglass)
        self.fft_heads = FFTMotionHeads(dm.mask, dm.occlusion, dm.cfg.reshape_depth) if fft_heads else None

    def heads(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fft_heads is None:
            return super().heads(prediction.float())
        return self.fft_heads(prediction.float())


class Bf16WarpingNetwork(WarpingNetwork):
    """The loaded warping module with a ``Bf16DenseMotionNetwork``; the rest float32 as in the plain one."""

    def __init__(self, warp: WarpingNetwork, fft_heads: bool = True):
        adopt(self, warp)
        self.dense_motion_network = Bf16DenseMotionNetwork(warp.dense_motion_network, fft_heads)


@dataclass(frozen=True)
class Bf16Plan:
    """How the bf16 forms are made for a device: the same bf16 and float32 leaves, with or without the CPU's
    float32 speed-ups (Winograd, FFT), as the float32 fast forms of that device."""

    winograd_min_out: int | None  #: G's ``fc``: Winograd from this many outputs (None: direct, cuDNN's choice)
    fft_heads: bool  #: W's mask and occlusion heads by FFT

    def decoder(self, dec: SPADEDecoder) -> Bf16SPADEDecoder:
        return Bf16SPADEDecoder(dec, self.winograd_min_out)

    def warping(self, warp: WarpingNetwork) -> Bf16WarpingNetwork:
        return Bf16WarpingNetwork(warp, self.fft_heads)


def bf16_plan(device: torch.device | str, dtype: torch.dtype) -> Bf16Plan | None:
    """The bf16 forms for W and G on ``device`` at ``dtype`` (None: not bf16, or a device without them). On a CPU
    the loader has checked native bf16 first (``pick_precision``), on CUDA compute capability 8.0."""
    device = torch.device(device)
    if dtype != BF16 or device.type not in BF16_FORM_DEVICES:
        return None
    cpu = device.type == "cpu"
    return Bf16Plan(WINOGRAD_MIN_OUT_CHANNELS if cpu else None, fft_heads=cpu)


def sets_own_precision(module: nn.Module) -> bool:
    """True for a bf16 form (also compiled): it runs without autocast, its precision set leaf by leaf."""
    return isinstance(getattr(module, "_orig_mod", module), (Bf16SPADEDecoder, Bf16WarpingNetwork))
