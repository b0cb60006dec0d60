"""Exact inference rewrites, applied once after the official weights are loaded.

Each rewrite is a fast form made through the seam of ``models/fast/__init__.py``: a shallow copy of
the loaded plain network in which leaves (submodules, or leaf steps overridden by a subclass) are
replaced by ones computing the same function, equal to the plain path within float32 rounding
(tests/test_optimize.py); the plain network's ``forward`` runs unchanged and its state_dict (the
official names the files load into) is untouched:

* spectral norm folded once: weight_orig / (u . W v) computed at load, not every frame (``FoldedConv2d``);
* SPADE decoder (``FastSPADEDecoder``): its ``segmentation`` step runs the shared convs of every SPADE
  at one resolution as one conv (they all read the same map), each SPADE's gamma and beta convs run as
  one conv with the ``1 +`` folded into the bias, and the shared convs at 128^2 and 256^2 run at
  64^2 with the polyphase split (a 3x3 conv of a nearest-upsampled map is, per output phase, a 1- or
  2-tap filter per axis on the small map, and phases that read the same rows share it: 2.25x fewer
  multiply-adds at 128^2, 5.8x at 256^2; ``UpsampledConv3x3``);
* on CPUs, the big 3x3 convs (at least ``WINOGRAD_MIN_OUT_CHANNELS`` outputs) run as Winograd
  F(4x4, 3x3) (``models/fast/winograd.py``: 2.25x fewer multiply-adds, measured 1.3-2.1x faster per conv on an
  AVX2 CPU; the smaller ones are faster direct). CUDA keeps cuDNN's own choice;
* warping module on CPUs (``FastWarpingNetwork``): the dense-motion network's ``heads`` step (the 7x7x7
  mask head and 7x7 occlusion head, which read the same volume) by block FFT from one set of spectra
  (``models/fast/fft_conv.py``: 12x fewer multiply-adds; measured 3x faster for the two heads), and the
  hourglass's last 3x3x3 conv (142 -> 142 at 16x64x64) by Winograd in (h, w) (measured 1.45x);
* on Linux CPUs, glibc's allocator is told to keep freed memory (``mallopt``) so that the large
  activations are not page-faulted and zeroed again every frame.

Optional and behind settings: ``torch.compile`` and CUDA-graph capture (``compile_models``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import TYPE_CHECKING, Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from liveportrait_core.models.fast.fft_conv import FFTMotionHeads
from liveportrait_core.models.fast.seam import adopt, fast_copy
from liveportrait_core.models.networks.spade import SPADE, SPADEDecoder, SPADEResnetBlock, SpectralNormConv2d
from liveportrait_core.models.networks.warping import DenseMotionNetwork, WarpingNetwork
from liveportrait_core.models.fast.winograd import WinogradConv3x3

if TYPE_CHECKING:
    from liveportrait_core.models.loader import LivePortraitModels

_log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)

#: a 3x3 conv with at least this many output channels runs as Winograd on the CPU (measured: from
#: 256 outputs Winograd wins at every size in the decoder, below it the direct conv does)
WINOGRAD_MIN_OUT_CHANNELS = 256


# ------------------------------------------------------------------------------------------------
# spectral norm


class FoldedConv2d(nn.Module):
    """A ``SpectralNormConv2d`` with its effective weight computed once (eval mode never updates u, v)."""

    def __init__(self, conv: SpectralNormConv2d):
        super().__init__()
        self.padding = conv.padding
        self.register_buffer("weight", conv.effective_weight().detach().contiguous(), persistent=False)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


def fold_spectral_norm(module: M) -> M:
    """``module`` with every ``SpectralNormConv2d`` below it replaced by its ``FoldedConv2d`` (a fast
    copy: ``module`` itself is unchanged). The ONNX export uses it: one constant weight per conv."""
    leaves = {}
    for name, child in module.named_children():
        if isinstance(child, SpectralNormConv2d):
            leaves[name] = FoldedConv2d(child)
        elif any(isinstance(m, SpectralNormConv2d) for m in child.modules()):
            leaves[name] = fold_spectral_norm(child)
    return fast_copy(module, **leaves) if leaves else module


# ------------------------------------------------------------------------------------------------
# polyphase conv of a nearest-upsampled map


def _phase_window(a: int, s: int) -> tuple[int, int]:
    """Low-resolution rows (first, last, relative to i) that output row s*i + a of the 3x3 conv reads."""
    return (a - 1) // s, (a + 1) // s


class UpsampledConv3x3(nn.Module):
    """``conv3x3(nearest_upsample(x, s), padding=1)`` computed on the small map (s >= 1).

    Output row s*i + a reads upsampled rows s*i + a + dy (dy = -1, 0, 1), i.e. low-resolution rows
    i + floor((a + dy) / s): one or two distinct rows, so each output phase (a, p) is a 1- or 2-tap
    filter per axis on the small map (taps that land on the same row are summed). Phases that read
    the same window compute the same values: for s = 4 the two middle phases of each axis read row i
    only, so 9 distinct filters with 25 taps in all replace 16 x 9 taps of the upsampled conv (5.8x
    fewer multiply-adds); s = 2 needs 16 taps (2.25x fewer); s = 1 is the plain 3x3 conv. Filters of
    one shape run as one conv over the padded small map; each window then reads its own offset.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: int):
        super().__init__()
        self.scale, self.out_channels = scale, weight.shape[0]
        windows = sorted({_phase_window(a, scale) for a in range(scale)})
        self.phase_window = [windows.index(_phase_window(a, scale)) for a in range(scale)]
        # taps[wi][t, k] = 1 where tap k of window wi's phases lands on the window's row t
        taps = []
        for lo, hi in windows:
            a = next(a for a in range(scale) if _phase_window(a, scale) == (lo, hi))
            m = torch.zeros(hi - lo + 1, 3, dtype=torch.float64)
            for k in range(3):
                m[(a + k - 1) // scale - lo, k] = 1.0
            taps.append(m)
        self.windows = windows
        self.groups: list[tuple[tuple[int, int], list[tuple[int, int]]]] = []  # (kernel shape, [(row w, col w)])
        for wr in range(len(windows)):
            for wc in range(len(windows)):
                shape = (taps[wr].shape[0], taps[wc].shape[0])
                group = next((g for g in self.groups if g[0] == shape), None)
                if group is None:
                    self.groups.append((shape, []))
                    group = self.groups[-1]
                group[1].append((wr, wc))
        w64 = weight.detach().to("cpu", torch.float64)  # derived in float64 on the CPU (MPS has no float64)
        for gi, (shape, members) in enumerate(self.groups):
            w2 = torch.cat([torch.einsum("tk,uj,oikj->oitu", taps[wr], taps[wc], w64) for wr, wc in members])
            self.register_buffer(f"weight_{gi}", w2.to(weight.device, weight.dtype).contiguous(), persistent=False)
            b2 = None if bias is None else bias.detach().repeat(len(members)).contiguous()
            self.register_buffer(f"bias_{gi}", b2, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, c = self.scale, self.out_channels
        if s == 1:  # one 3x3 filter: the plain conv (no padded copy)
            return F.conv2d(x, self.weight_0, self.bias_0, padding=1)
        b, _, h, w = x.shape
        xp = F.pad(x, (1, 1, 1, 1))
        by_window: dict[tuple[int, int], torch.Tensor] = {}
        for gi, (_, members) in enumerate(self.groups):
            z = F.conv2d(xp, getattr(self, f"weight_{gi}"), getattr(self, f"bias_{gi}"))
            for j, (wr, wc) in enumerate(members):
                r0, c0 = self.windows[wr][0] + 1, self.windows[wc][0] + 1
                by_window[wr, wc] = z[:, j * c:(j + 1) * c, r0:r0 + h, c0:c0 + w]
        out = x.new_empty(b, c, h, s, w, s)
        for a in range(s):
            for p in range(s):
                out[:, :, :, a, :, p] = by_window[self.phase_window[a], self.phase_window[p]]
        return out.view(b, c, h * s, w * s)


# ------------------------------------------------------------------------------------------------
# SPADE decoder


class _SharedConvs(nn.Module):
    """The mlp_shared convs of several SPADEs that read the segmentation map at one resolution."""

    def __init__(self, spades: list[SPADE], scale: int):
        super().__init__()
        convs = [sp.mlp_shared[0] for sp in spades]
        self.hidden = convs[0].out_channels
        self.conv = UpsampledConv3x3(torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]), scale)

    def forward(self, seg: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.relu_(self.conv(seg)).split(self.hidden, dim=1))


class _Conv3x3(nn.Module):
    """A 3x3, padding-1 conv from given (derived) weights, computed directly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight.detach().contiguous(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)


def conv3x3(weight: torch.Tensor, bias: torch.Tensor | None, winograd_min_out: int | None) -> nn.Module:
    """The faster exact form of a 3x3 conv: Winograd from ``winograd_min_out`` outputs, else direct."""
    if winograd_min_out is not None and weight.shape[0] >= winograd_min_out:
        return WinogradConv3x3(weight, bias)
    return _Conv3x3(weight, bias)


class _FusedModulation(nn.Module):
    """One SPADE's gamma and beta convs as a single conv; returns (1 + gamma, beta)."""

    def __init__(self, spade: SPADE, winograd_min_out: int | None):
        super().__init__()
        g, b = spade.mlp_gamma, spade.mlp_beta
        self.channels = g.out_channels
        self.conv = conv3x3(torch.cat([g.weight, b.weight]), torch.cat([g.bias + 1, b.bias]), winograd_min_out)

    def forward(self, x: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        gamma1, beta = self.conv(actv).split(self.channels, dim=1)
        return torch.addcmul(beta, F.instance_norm(x, eps=1e-5), gamma1)


def _spectral_conv3x3(conv: SpectralNormConv2d, winograd_min_out: int | None) -> nn.Module:
    """A spectral-norm conv with its weight folded: Winograd where that is faster, else direct."""
    if winograd_min_out is None or conv.kernel_size != (3, 3) or conv.out_channels < winograd_min_out:
        return FoldedConv2d(conv)
    return WinogradConv3x3(conv.effective_weight(), conv.bias)


def _fast_block(block: SPADEResnetBlock, winograd_min_out: int | None) -> SPADEResnetBlock:
    """The block with its leaves replaced: folded (or Winograd) convs, fused SPADE modulations."""
    leaves = {name: _spectral_conv3x3(getattr(block, name), winograd_min_out) for name in ("conv_0", "conv_1")}
    leaves.update({name: _FusedModulation(getattr(block, name), winograd_min_out) for name in ("norm_0", "norm_1")})
    if block.learned_shortcut:
        leaves.update(conv_s=FoldedConv2d(block.conv_s), norm_s=_FusedModulation(block.norm_s, winograd_min_out))
    return fast_copy(block, **leaves)


def per_block(actvs: list[torch.Tensor], blocks: list[SPADEResnetBlock]) -> list[list[torch.Tensor]]:
    """One resolution's shared SPADE activations, in block order, handed to each block (two SPADEs, three
    with a learned shortcut): the fast forms' ``segmentation`` step."""
    out = []
    for block in blocks:
        n = 3 if block.learned_shortcut else 2
        out.append(actvs[:n])
        actvs = actvs[n:]
    return out


class FastSPADEDecoder(SPADEDecoder):
    """The loaded ``SPADEDecoder`` with the rewrites listed above; its ``forward`` is the plain one.

    Replaced leaves: ``fc`` and every block's convs and SPADE modulations (``_fast_block``), and the
    ``segmentation`` step (one batched, polyphase conv per resolution). ``winograd_min_out``: 3x3
    convs with at least this many outputs run as Winograd F(4x4, 3x3) (None: none do, as on CUDA).
    ``between()`` is called before each block's filters are made (seconds in all: the loader's cancellation point).
    """

    def __init__(self, dec: SPADEDecoder, winograd_min_out: int | None = None,
                 between: Callable[[], None] = lambda: None):
        adopt(self, dec)
        self.fc = conv3x3(dec.fc.weight, dec.fc.bias, winograd_min_out)
        self.shared = nn.ModuleDict({str(scale): _SharedConvs([sp for b in blocks for sp in b.spades()], scale)
                                     for scale, blocks in dec.stages()})
        for name, block in dec.named_children():
            if isinstance(block, SPADEResnetBlock):
                between()
                setattr(self, name, _fast_block(block, winograd_min_out))

    def segmentation(self, feature: torch.Tensor, scale: int, blocks: list[SPADEResnetBlock]
                     ) -> list[list[torch.Tensor]]:
        return per_block(self.shared[str(scale)](feature), blocks)


# ------------------------------------------------------------------------------------------------
# warping module


class FastDenseMotionNetwork(DenseMotionNetwork):
    """The dense-motion network with its ``heads`` step by FFT and the hourglass's last conv by Winograd."""

    def __init__(self, dm: DenseMotionNetwork):
        adopt(self, dm)
        self.fft_heads = FFTMotionHeads(dm.mask, dm.occlusion, dm.cfg.reshape_depth)
        last = dm.hourglass.decoder.conv
        self.hourglass = fast_copy(dm.hourglass, decoder=fast_copy(
            dm.hourglass.decoder, conv=WinogradConv3x3(last.weight, last.bias)))

    def heads(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fft_heads(prediction)


class FastWarpingNetwork(WarpingNetwork):
    """The loaded ``WarpingNetwork`` with a ``FastDenseMotionNetwork``; its ``forward`` is the plain one."""

    def __init__(self, warp: WarpingNetwork):
        adopt(self, warp)
        self.dense_motion_network = FastDenseMotionNetwork(warp.dense_motion_network)


# ------------------------------------------------------------------------------------------------
# allocator, compile, CUDA graphs


def keep_freed_memory() -> bool:
    """glibc only: never give large blocks back to the OS, so per-frame activations reuse warm pages.

    Same effect as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`` in the environment; a
    process-wide setting, so it is applied only when the networks run on the CPU.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        return False
    return bool(ok)


def prepare_for_inference(models: "LivePortraitModels", channels_last: bool = True,
                          between: Callable[[], None] = lambda: None) -> None:
    """Apply the exact rewrites in place (once, after loading). Idempotent. ``between()`` is called
    between the networks (the loader's cancellation point)."""
    if models.optimized:
        return
    # Winograd and FFT trade arithmetic for memory and only pay against float32 direct convs on a CPU
    # (CUDA has cuDNN's own algorithms). bf16 on a CPU or CUDA: the bf16 forms (models/fast/bf16.py).
    cpu_fp32 = models.device.type == "cpu" and models.dtype == torch.float32
    from liveportrait_core.models.fast.bf16 import bf16_plan  # noqa: PLC0415 (imports us)

    bf16 = bf16_plan(models.device, models.dtype)
    gen = models.modules.get("spade_generator")
    if gen is not None:
        if bf16 is not None:
            fast = bf16.decoder(gen)
        else:
            fast = FastSPADEDecoder(gen, WINOGRAD_MIN_OUT_CHANNELS if cpu_fp32 else None, between)
            if channels_last and models.device.type == "cuda":
                fast = fast.to(memory_format=torch.channels_last)
        models.modules["spade_generator"] = fast.eval()
        between()
    warp = models.modules.get("warping_module")
    if warp is not None and (cpu_fp32 or bf16 is not None):
        models.modules["warping_module"] = (bf16.warping(warp) if bf16 is not None else FastWarpingNetwork(warp)).eval()
    if models.device.type == "cpu" and keep_freed_memory():
        _log.debug("glibc allocator set to keep freed memory (CPU inference)")
    models.optimized = True


def compile_models(models: "LivePortraitModels", use_compile: bool = True, cuda_graphs: bool = False) -> None:
    """``torch.compile`` the per-frame networks (M, W, G; on CPU only M and G); warm up after this.

    CUDA graphs use inductor's "reduce-overhead" mode (CUDA only, fixed input shapes: batch 1).
    If compilation is not available (no C++ compiler, unsupported platform) the plain modules stay.
    """
    mode = None
    if cuda_graphs and models.device.type == "cuda":
        mode = "reduce-overhead"
    elif cuda_graphs:
        _log.warning("performance.cuda_graphs needs a CUDA device; ignored on %s", models.device)
    if not use_compile and mode is None:
        return
    if models.device.type == "cpu":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # weights become constants: conv prepacking, folded ops (CPU)
    names = ["motion_extractor", "spade_generator"]
    if models.device.type != "cpu":
        # On CPU inductor lowers the 5-D grid_sample of W to gathers: measured 3x slower (PERFORMANCE.md).
        names.insert(1, "warping_module")
    for name in names:
        if name in models.modules:
            try:
                models.modules[name] = torch.compile(models.modules[name], mode=mode, dynamic=False)
            except Exception as e:  # noqa: BLE001 - compile support varies by platform; plain modules still work
                _log.warning("torch.compile of %s is not available (%s); running it uncompiled", name, e)


def warm_up(models: "LivePortraitModels", frames: int = 1) -> None:
    """Run the per-frame networks on a neutral input so the first live frame is not slow.

    With ``torch.compile`` this is when compilation happens; a module whose compilation fails is
    put back uncompiled (with a warning) instead of failing later on the live thread.
    """
    from liveportrait_core.models.networks.keypoints import MotionInfo

    dev = models.device
    image = torch.full((1, 3, 256, 256), 0.5, device=dev)
    for name in ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator"):
        if name not in models.modules:
            return
    f_s = models.run("appearance_feature_extractor", image)
    for _ in range(max(1, frames)):
        x = _guarded(models, "motion_extractor", lambda: MotionInfo.from_raw(
            models.run("motion_extractor", image)).keypoints())
        w = _guarded(models, "warping_module", lambda: models.run("warping_module", f_s, kp_driving=x, kp_source=x))
        _guarded(models, "spade_generator", lambda: models.run("spade_generator", w["out"]))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _guarded(models: "LivePortraitModels", name: str, call):
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - a compile back-end failure must not take the engine down
        orig = getattr(models.modules[name], "_orig_mod", None)
        if orig is None:
            raise
        _log.warning("compiled %s failed on its first run (%s); running it uncompiled", name, str(e)[:200])
        models.modules[name] = orig
        return call()
