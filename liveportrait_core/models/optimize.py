"""Exact inference rewrites, applied once after the official weights are loaded.

The modules keep their official structure and state_dict names (that is what the files load into);
this step only adds derived, non-persistent tensors and swaps in faster forward paths that compute
the same function, equal to the plain path within float32 rounding (tests/test_optimize.py):

* spectral norm folded once: weight_orig / (u . W v) computed at load, not every frame;
* SPADE decoder (``FastSPADEDecoder``): the segmentation map's shared convs of every SPADE at one
  resolution run as one conv (they all read the same map), each SPADE's gamma and beta convs run as
  one conv with the ``1 +`` folded into the bias, and the shared convs at 128^2 and 256^2 run at
  64^2 with the polyphase split (a 3x3 conv of a nearest-upsampled map is, per output phase, a 2x2
  conv of the small map: 2.25x fewer multiply-adds);
* on Linux CPUs, glibc's allocator is told to keep freed memory (``mallopt``) so that the large
  activations are not page-faulted and zeroed again every frame.

Optional and behind settings: ``torch.compile`` and CUDA-graph capture (``compile_models``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .spade import SPADE, SPADEDecoder, SPADEResnetBlock, SpectralNormConv2d

if TYPE_CHECKING:
    from .loader import LivePortraitModels

_log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# spectral norm


def fold_spectral_norm(module: nn.Module) -> int:
    """Precompute every SpectralNormConv2d's effective weight (eval mode never updates u, v)."""
    n = 0
    for m in module.modules():
        if isinstance(m, SpectralNormConv2d):
            m.fold()
            n += 1
    return n


# ------------------------------------------------------------------------------------------------
# polyphase conv of a nearest-upsampled map


def _phase_windows(s: int) -> list[int]:
    """Low-resolution row offset where each output phase's 2-tap window starts (-1 or 0)."""
    return [-1 if a < s / 2 else 0 for a in range(s)]


def polyphase_weights(weight: torch.Tensor, bias: torch.Tensor | None, s: int
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """3x3 conv weights (C, Cin, 3, 3) on a map upsampled by ``s`` (nearest) -> (s*s*C, Cin, 2, 2).

    Output row s*i + a of the 3x3 conv reads upsampled rows s*i + a + dy (dy = -1, 0, 1), which are
    low-resolution rows i + floor((a + dy) / s): at most two distinct rows per phase, so each phase is
    a 2-tap filter on the small map (taps that land on the same row are summed).
    """
    w64 = weight.double()
    win = _phase_windows(s)
    # m[a, t, k]: 1 where tap k (dy = k - 1) of phase a lands on window row t.
    m = torch.zeros(s, 2, 3, dtype=torch.float64, device=weight.device)
    for a in range(s):
        for k in range(3):
            m[a, (a + k - 1) // s - win[a], k] = 1.0
    w2 = torch.einsum("atk,buj,oikj->aboitu", m, m, w64)  # (s, s, C, Cin, 2, 2)
    c = weight.shape[0]
    w2 = w2.reshape(s * s * c, *w2.shape[3:]).to(weight.dtype).contiguous()
    b2 = None if bias is None else bias.repeat(s * s).contiguous()
    return w2, b2


def polyphase_conv(x: torch.Tensor, weight2: torch.Tensor, bias2: torch.Tensor | None, s: int) -> torch.Tensor:
    """``conv3x3(nearest_upsample(x, s), padding=1)`` from the weights of ``polyphase_weights``."""
    b, _, h, w = x.shape
    z = F.conv2d(F.pad(x, (1, 1, 1, 1)), weight2, bias2)  # (b, s*s*c, h+1, w+1)
    c = weight2.shape[0] // (s * s)
    out = z.new_empty(b, c, h, s, w, s)
    starts = [o + 1 for o in _phase_windows(s)]
    for a in range(s):
        for p in range(s):
            ph = a * s + p
            out[:, :, :, a, :, p] = z[:, ph * c:(ph + 1) * c, starts[a]:starts[a] + h, starts[p]:starts[p] + w]
    return out.view(b, c, h * s, w * s)


# ------------------------------------------------------------------------------------------------
# SPADE decoder


class _SharedConvs(nn.Module):
    """The mlp_shared convs of several SPADEs that read the segmentation map at one resolution."""

    def __init__(self, spades: list[SPADE], scale: int):
        super().__init__()
        convs = [sp.mlp_shared[0] for sp in spades]
        w = torch.cat([c.weight for c in convs]).detach()
        b = torch.cat([c.bias for c in convs]).detach()
        self.scale = scale
        self.hidden = convs[0].out_channels
        if scale == 1:
            self.register_buffer("weight", w.contiguous(), persistent=False)
            self.register_buffer("bias", b.contiguous(), persistent=False)
        else:
            w2, b2 = polyphase_weights(w, b, scale)
            self.register_buffer("weight", w2, persistent=False)
            self.register_buffer("bias", b2, persistent=False)

    def forward(self, seg: torch.Tensor) -> list[torch.Tensor]:
        if self.scale == 1:
            a = F.conv2d(seg, self.weight, self.bias, padding=1)
        else:
            a = polyphase_conv(seg, self.weight, self.bias, self.scale)
        return list(torch.relu_(a).split(self.hidden, dim=1))


class _FusedModulation(nn.Module):
    """One SPADE's gamma and beta convs as a single conv; returns (1 + gamma, beta)."""

    def __init__(self, spade: SPADE):
        super().__init__()
        g, b = spade.mlp_gamma, spade.mlp_beta
        self.channels = g.out_channels
        self.register_buffer("weight", torch.cat([g.weight, b.weight]).detach().contiguous(), persistent=False)
        self.register_buffer("bias", torch.cat([g.bias + 1, b.bias]).detach().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        gb = F.conv2d(actv, self.weight, self.bias, padding=1)
        gamma1, beta = gb.split(self.channels, dim=1)
        return torch.addcmul(beta, F.instance_norm(x, eps=1e-5), gamma1)


class _FastBlock(nn.Module):
    def __init__(self, block: SPADEResnetBlock):
        super().__init__()
        self.block = block  # shares the (folded) convs
        self.mod_0 = _FusedModulation(block.norm_0)
        self.mod_1 = _FusedModulation(block.norm_1)
        self.mod_s = _FusedModulation(block.norm_s) if block.learned_shortcut else None

    def spades(self) -> list[SPADE]:
        b = self.block
        return [b.norm_0, b.norm_1] + ([b.norm_s] if b.learned_shortcut else [])

    def forward(self, x: torch.Tensor, actvs: list[torch.Tensor]) -> torch.Tensor:
        b = self.block
        shortcut = b.conv_s(self.mod_s(x, actvs[2])) if self.mod_s is not None else x
        dx = b.conv_0(F.leaky_relu_(self.mod_0(x, actvs[0]), 0.2))
        dx = b.conv_1(F.leaky_relu_(self.mod_1(dx, actvs[1]), 0.2))
        return dx.add_(shortcut)


class FastSPADEDecoder(nn.Module):
    """The same function as a loaded ``SPADEDecoder``, computed with the rewrites listed above."""

    def __init__(self, dec: SPADEDecoder):
        super().__init__()
        self.dec = dec
        n = dec.cfg.num_middle_blocks
        self.middle = nn.ModuleList(_FastBlock(getattr(dec, f"G_middle_{i}")) for i in range(n))
        self.up_0 = _FastBlock(dec.up_0)
        self.up_1 = _FastBlock(dec.up_1)
        self.shared_64 = _SharedConvs([sp for blk in self.middle for sp in blk.spades()], 1)
        self.shared_128 = _SharedConvs(self.up_0.spades(), 2)
        self.shared_256 = _SharedConvs(self.up_1.spades(), 4)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        dec = self.dec
        x = dec.fc(feature)
        actv = self.shared_64(feature)
        for i, blk in enumerate(self.middle):
            x = blk(x, actv[2 * i:2 * i + 2])
        del actv
        x = self.up_0(F.interpolate(x, scale_factor=2), self.shared_128(feature))
        x = self.up_1(F.interpolate(x, scale_factor=2), self.shared_256(feature))
        return torch.sigmoid(dec.conv_img(F.leaky_relu_(x, 0.2)))


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


def prepare_for_inference(models: "LivePortraitModels", channels_last: bool = True) -> None:
    """Apply the exact rewrites in place (once, after loading). Idempotent."""
    if models.optimized:
        return
    gen = models.modules.get("spade_generator")
    if gen is not None:
        fold_spectral_norm(gen)
        fast = FastSPADEDecoder(gen)
        if channels_last and models.device.type == "cuda":
            fast = fast.to(memory_format=torch.channels_last)
        models.modules["spade_generator"] = fast.eval()
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
    from .keypoints import MotionInfo

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
