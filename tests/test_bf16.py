"""bf16 on a CPU (models/fast/bf16.py and the loader's policy): which network runs in what, and that the
bf16 forms stay close to float32 where autocast did not. Reduced sizes: the numerics are the same on a
CPU without native bf16 (only slower), so these run everywhere in seconds."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from liveportrait_core.models import loader
from liveportrait_core.models.fast.bf16 import (Bf16Conv, Bf16SPADEDecoder, Bf16WarpingNetwork,
                                                sets_own_precision)
from liveportrait_core.models.fast.optimize import FastSPADEDecoder, FastWarpingNetwork, prepare_for_inference
from liveportrait_core.models.fast.seam import plain_network
from liveportrait_core.models.networks.spade import SPADEConfig, SPADEDecoder, SpectralNormConv2d
from liveportrait_core.models.networks.warping import WarpingConfig, WarpingNetwork
from liveportrait_core.models.small import reduced_models


def _image_mae(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean difference of the uint8 images, in 1/255 (as the benchmark reports it)."""
    def u8(x):
        return (x.clamp(0, 1) * 255).to(torch.uint8).short()
    return (u8(a) - u8(b)).abs().float().mean().item()


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_bf16_policy(monkeypatch, native_bf16):
    """bf16 is used only where the CPU has it; then F and M stay float32, W and G run their bf16 forms
    without autocast, and every output is float32."""
    monkeypatch.setattr(loader, "cpu_has_fast_bf16", lambda: native_bf16)
    dtype = loader.pick_precision("bf16", torch.device("cpu"))
    assert dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    models = reduced_models()
    models.dtype = dtype
    prepare_for_inference(models, channels_last=False)
    w, g = models["warping_module"], models["spade_generator"]
    if native_bf16:
        assert isinstance(w, Bf16WarpingNetwork) and isinstance(g, Bf16SPADEDecoder)
        assert [models.network_dtype(n) for n in ("appearance_feature_extractor", "motion_extractor",
                                                  "warping_module", "spade_generator", "stitching")] == \
            [torch.float32, torch.float32, torch.bfloat16, torch.bfloat16, torch.float32]
    else:
        assert isinstance(w, FastWarpingNetwork) and isinstance(g, FastSPADEDecoder)
    for name in models.modules:
        assert isinstance(models.autocast(name), contextlib.nullcontext), name
    f_s = torch.randn(1, 8, 4, 64, 64)
    kp = torch.rand(1, 21, 3) - 0.5
    out = models.run("warping_module", f_s, kp_driving=kp, kp_source=kp)
    img = models.run("spade_generator", out["out"])
    assert out["out"].dtype == img.dtype == torch.float32 and torch.isfinite(img).all()


def test_bf16_form_falls_back_to_its_plain_network(monkeypatch):
    """A bf16 form that produces inf/NaN is replaced by its plain network, run in float32."""
    monkeypatch.setattr(loader, "cpu_has_fast_bf16", lambda: True)
    models = reduced_models()
    models.dtype = torch.bfloat16
    prepare_for_inference(models, channels_last=False)
    form = models["spade_generator"]
    monkeypatch.setattr(Bf16SPADEDecoder, "to_image", lambda self, x: torch.full((1, 3, 512, 512), float("nan")))
    img = models.run("spade_generator", torch.randn(1, 64, 64, 64))
    assert torch.isfinite(img).all() and models["spade_generator"] is plain_network(form)
    assert models.network_dtype("spade_generator") == torch.float32 and not sets_own_precision(models["spade_generator"])


def test_split_input_conv_is_closer_to_float32():
    """hi + lo bf16 parts of the input remove the input's rounding: against the exact conv with the
    (bf16) weights it uses, the error drops by the input's share (the output's rounding stays)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 24, 24, generator=g)
    w, b = torch.randn(32, 64, 3, 3, generator=g) * 0.05, torch.randn(32, generator=g)
    errors = {}
    for weights, exact_w in (("float32", w.double()), ("bf16", w.bfloat16().double())):
        exact = F.conv2d(x.double(), exact_w, b.double(), padding=1)
        with torch.inference_mode():
            errors[weights] = [(Bf16Conv(w, b, 1, split_input=split)(x).double() - exact).abs().mean().item()
                               for split in (False, True)]
    assert errors["bf16"][1] < errors["bf16"][0] / 1.4 and errors["float32"][1] < errors["float32"][0], errors


def _decoder() -> SPADEDecoder:
    torch.manual_seed(0)
    dec = SPADEDecoder(SPADEConfig(input_channels=64, out_channels=16, num_middle_blocks=2, hidden=32))
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, SpectralNormConv2d):
                m.weight_u.copy_(F.normalize(torch.randn(m.weight_u.shape), dim=0))
                m.weight_v.copy_(F.normalize(torch.randn(m.weight_v.shape), dim=0))
                m.weight_orig.mul_(0.5 / m.effective_weight().flatten(1).norm(dim=1).max())
    return dec.eval()


def test_bf16_decoder_image_error_bound():
    """A reduced decoder: the bf16 form's image is within 1/255 of float32 on average, and far closer
    than bf16 autocast of the same decoder."""
    dec = _decoder()
    x = torch.randn(1, 64, 32, 32)
    with torch.inference_mode():
        ref = dec(x)
        form = Bf16SPADEDecoder(dec)
        ours = _image_mae(form(x), ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = _image_mae(FastSPADEDecoder(dec)(x).float(), ref)
    assert ours < 1.0 and ours < autocast / 1.6, (ours, autocast)


def test_bf16_warping_keeps_the_motion_in_float32():
    """The coordinate grid, motions and deformation stay float32 in the bf16 form (under autocast they
    came out quantised to bf16: errors of ~1e-3 of the image's width); the hourglass is bf16."""
    torch.manual_seed(3)
    warp = WarpingNetwork(WarpingConfig(block_expansion=16, max_features=32, reshape_channels=8, reshape_depth=4,
                                        compress=2, dm_block_expansion=4, dm_max_features=32, dm_num_blocks=3)).eval()
    feature = torch.randn(1, 8, 4, 64, 64)
    kp_d, kp_s = torch.rand(1, 21, 3) - 0.5, torch.rand(1, 21, 3) - 0.5
    with torch.inference_mode():
        ref = warp(feature, kp_d, kp_s)
        ours = Bf16WarpingNetwork(warp)(feature, kp_d, kp_s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = warp(feature, kp_d, kp_s)
    assert ours["deformation"].dtype == torch.float32
    ours_err = (ours["deformation"] - ref["deformation"]).abs().max().item()
    auto_err = (auto["deformation"].float() - ref["deformation"]).abs().max().item()
    assert ours_err < 2e-4 and auto_err > 5 * ours_err, (ours_err, auto_err)
    rel = (ours["out"] - ref["out"]).abs().mean() / ref["out"].abs().mean()
    assert rel < 1e-2


@pytest.mark.parametrize("device, dtype, plan", [
    ("cpu", torch.bfloat16, ("winograd", "fft")), ("cuda", torch.bfloat16, ("direct", "convs")),
    ("cuda:1", torch.bfloat16, ("direct", "convs")), ("cuda", torch.float16, None), ("mps", torch.bfloat16, None),
    ("cpu", torch.float32, None)])
def test_bf16_forms_per_device(device, dtype, plan):
    """Which form each device gets: the bf16 forms on a CPU and on CUDA (without the CPU's Winograd fc and FFT
    heads there), none elsewhere; F and M float32 on both. Built and run on the CPU (the CUDA variant computes
    the same function with direct convs: checked against the CPU variant)."""
    from liveportrait_core.models.fast.bf16 import bf16_plan
    from liveportrait_core.models.fast.fft_conv import FFTMotionHeads
    from liveportrait_core.models.fast.optimize import WINOGRAD_MIN_OUT_CHANNELS, conv3x3
    from liveportrait_core.models.fast.winograd import WinogradConv3x3

    got = bf16_plan(device, dtype)
    if plan is None:
        assert got is None
        return
    assert (got.winograd_min_out is not None, got.fft_heads) == (plan[0] == "winograd", plan[1] == "fft")
    models = reduced_models()
    models.device, models.dtype = torch.device(device), dtype
    prepare_for_inference(models, channels_last=False)
    w, g = models["warping_module"], models["spade_generator"]
    assert isinstance(w, Bf16WarpingNetwork) and isinstance(g, Bf16SPADEDecoder)
    # G's fc by Winograd only on the CPU (the reduced fc is below Winograd's width: a full-width one is checked)
    wide = torch.nn.Conv2d(8, WINOGRAD_MIN_OUT_CHANNELS, 3, padding=1)
    assert isinstance(conv3x3(wide.weight, wide.bias, got.winograd_min_out), WinogradConv3x3) == (plan[0] == "winograd")
    assert isinstance(w.dense_motion_network.fft_heads, FFTMotionHeads) == (plan[1] == "fft")
    assert [models.network_dtype(n) for n in ("appearance_feature_extractor", "motion_extractor", "warping_module",
                                              "spade_generator", "stitching")] == \
        [torch.float32, torch.float32, torch.bfloat16, torch.bfloat16, torch.float32]
    assert all(isinstance(models.autocast(n), contextlib.nullcontext) for n in models.modules)
    # the device's variant against the CPU's: the same function (float32 speed-ups differ in rounding only)
    cpu_models = reduced_models()
    cpu_models.dtype = torch.bfloat16
    prepare_for_inference(cpu_models, channels_last=False)
    f_s, kp = torch.randn(1, 8, 4, 64, 64), torch.rand(1, 21, 3) - 0.5
    with torch.inference_mode():
        out, ref = w(f_s, kp, kp), cpu_models["warping_module"](f_s, kp, kp)
        assert (out["deformation"] - ref["deformation"]).abs().max() < 1e-5
        img, ref_img = g(out["out"]), cpu_models["spade_generator"](out["out"])
    assert _image_mae(img, ref_img) < 0.05


@pytest.mark.parametrize("capability, want", [((7, 5), torch.float32), ((8, 0), torch.bfloat16),
                                              ((9, 0), torch.bfloat16)])
def test_cuda_bf16_needs_ampere(monkeypatch, caplog, capability, want):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    with caplog.at_level("WARNING"):
        assert loader.pick_precision("bf16", torch.device("cuda")) == want
    assert ("compute capability 8.0" in caplog.text) == (want == torch.float32)
