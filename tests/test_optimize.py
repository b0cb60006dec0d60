"""The exact inference rewrites (models/fast/optimize.py) compute the same function as the plain modules."""
import copy

import pytest
import torch
import torch.nn.functional as F

from liveportrait_core.models.fast.optimize import FastSPADEDecoder, FastWarpingNetwork, FoldedConv2d, UpsampledConv3x3
from liveportrait_core.models.fast.seam import plain_network
from liveportrait_core.models.networks.spade import SPADEConfig, SPADEDecoder, SpectralNormConv2d
from liveportrait_core.models.networks.warping import WarpingConfig, WarpingNetwork
from liveportrait_core.models.fast.winograd import WinogradConv3x3


@pytest.mark.parametrize("s, taps", [(1, 9), (2, 16), (3, 25), (4, 25)])
def test_upsampled_conv_equals_conv_of_nearest_upsample(s, taps):
    """Exact (float64) for any scale, with the phase filters' taps counted: 25 instead of 144 at s = 4."""
    g = torch.Generator().manual_seed(s)
    x = torch.randn(2, 5, 7, 6, generator=g, dtype=torch.float64)
    w, b = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    ref = F.conv2d(F.interpolate(x, scale_factor=s), w, b, padding=1)
    conv = UpsampledConv3x3(w, b, s)
    torch.testing.assert_close(conv(x), ref, rtol=0, atol=1e-12)
    weights = [v for k, v in conv.named_buffers() if k.startswith("weight_")]
    assert sum(v.shape[0] // 4 * v.shape[2] * v.shape[3] for v in weights) == taps


def _small_decoder() -> SPADEDecoder:
    torch.manual_seed(0)
    dec = SPADEDecoder(SPADEConfig(input_channels=8, out_channels=4, num_middle_blocks=2, hidden=6))
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, SpectralNormConv2d):
                m.weight_orig.normal_(0, 0.3)
                m.weight_u.copy_(F.normalize(torch.randn(m.weight_u.shape), dim=0))
                m.weight_v.copy_(F.normalize(torch.randn(m.weight_v.shape), dim=0))
    return dec.eval()


def _count_calls(module: torch.nn.Module, kinds: tuple[type, ...]) -> dict[str, int]:
    """Forward hooks counting the calls of every submodule of the given kinds (by qualified name)."""
    calls: dict[str, int] = {}
    for name, m in module.named_modules():
        if isinstance(m, kinds):
            calls[name] = 0
            m.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    return calls


def test_fast_forms_replace_leaves_only():
    """The seam: a fast form's forward is the plain network's (the one statement of the structure);
    it replaces leaves in a shallow copy, so the plain module keeps its own leaves and the weights."""
    from liveportrait_core.models.fast.optimize import FastDenseMotionNetwork
    from liveportrait_core.models.networks.spade import SPADEDecoder as Plain

    for fast_cls in (FastSPADEDecoder, FastWarpingNetwork, FastDenseMotionNetwork):
        assert "forward" not in vars(fast_cls), fast_cls
    dec = _small_decoder()
    fast = FastSPADEDecoder(dec, 1)
    assert type(fast).forward is Plain.forward and plain_network(fast) is dec
    assert isinstance(fast.fc, WinogradConv3x3) and isinstance(dec.fc, torch.nn.Conv2d)
    assert isinstance(dec.up_0.conv_0, SpectralNormConv2d) and fast.up_0.conv_0 is not dec.up_0.conv_0
    assert fast.up_0.norm_0.conv.filter.data_ptr() != dec.up_0.norm_0.mlp_gamma.weight.data_ptr()
    assert fast.conv_img is dec.conv_img  # untouched leaves are shared, not copied


@pytest.mark.parametrize("winograd_min_out", [None, 1, 8])
def test_fast_spade_decoder_equals_plain_in_float64(winograd_min_out):
    """In float64 the rewrite agrees to 1e-10: it is the same function, not an approximation
    (with every 3x3 conv, some, or none as Winograd F(4x4, 3x3))."""
    dec = _small_decoder().double()
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
    with torch.inference_mode():
        plain = dec(x)
        state = {k: v.clone() for k, v in dec.state_dict().items()}
        fast_dec = FastSPADEDecoder(dec, winograd_min_out).eval()
        winograd = _count_calls(fast_dec, (WinogradConv3x3,))
        shared = _count_calls(fast_dec, (UpsampledConv3x3,))
        fast = fast_dec(x)
    # the fast leaves are the ones that ran: every Winograd conv once, one shared conv per resolution
    assert (len(winograd) > 0) == (winograd_min_out is not None) and set(winograd.values()) <= {1}
    assert sorted(shared) == ["shared.1.conv", "shared.2.conv", "shared.4.conv"] and set(shared.values()) == {1}
    assert fast.shape == plain.shape == (2, 3, 128, 128)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-10)
    # the rewrite leaves the official state_dict untouched (names and values)
    assert list(dec.state_dict()) == list(state)
    assert all(torch.equal(dec.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("winograd_min_out, factor", [(None, 3), (1, 6)])
def test_fast_spade_decoder_float32_error_is_rounding(winograd_min_out, factor):
    """In float32 both paths differ from the float64 result by rounding only, and by similar amounts.

    Winograd F(4x4, 3x3) on every conv of this tiny decoder (6-16 channels, so few terms to average
    rounding over) measured 2-4x the plain path's error over seeds and sizes; on the full-size decoder
    with the recipe weights its worst error is 1.6x the plain path's (docs/PERFORMANCE.md).
    """
    dec = _small_decoder()
    x = torch.randn(2, 8, 16, 16)
    with torch.inference_mode():
        truth = copy.deepcopy(dec).double()(x.double())
        plain_err = (dec(x) - truth).abs().max().item()
        fast_err = (FastSPADEDecoder(dec, winograd_min_out)(x) - truth).abs().max().item()
    assert plain_err < 1e-3 and fast_err < max(factor * plain_err, 1e-5)


def test_folded_spectral_norm_equals_hook_formula():
    conv = SpectralNormConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.weight_u.copy_(F.normalize(torch.randn(5), dim=0))
        conv.weight_v.copy_(F.normalize(torch.randn(27), dim=0))
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        plain = conv(x)
        sigma = conv.weight_u @ conv.weight_orig.reshape(5, -1) @ conv.weight_v
        torch.testing.assert_close(plain, F.conv2d(x, conv.weight_orig / sigma, conv.bias, padding=1))
        torch.testing.assert_close(FoldedConv2d(conv)(x), plain, rtol=0, atol=1e-6)


def test_fold_spectral_norm_copies():
    """The folded copy (the ONNX export's input) computes the same image; the plain decoder keeps its
    spectral-norm convs and state_dict."""
    from liveportrait_core.models.fast.optimize import fold_spectral_norm

    dec = _small_decoder().double()
    keys = list(dec.state_dict())
    folded = fold_spectral_norm(dec)
    assert not any(isinstance(m, SpectralNormConv2d) for m in folded.modules())
    assert list(dec.state_dict()) == keys and isinstance(dec.up_1.conv_s, SpectralNormConv2d)
    x = torch.randn(1, 8, 16, 16, dtype=torch.float64)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), dec(x), rtol=0, atol=1e-10)


def test_fast_warping_network_equals_plain_in_float64():
    """FFT heads + Winograd last hourglass conv: the same function as the plain W (1e-10 in float64)."""
    torch.manual_seed(3)
    warp = WarpingNetwork(WarpingConfig(block_expansion=16, max_features=32, reshape_channels=8, reshape_depth=4,
                                        compress=2, dm_block_expansion=4, dm_max_features=32, dm_num_blocks=3))
    with torch.no_grad():
        for m in warp.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    warp = warp.double().eval()
    feature = torch.randn(2, 8, 4, 32, 32, dtype=torch.float64)
    kp_d, kp_s = torch.rand(2, 21, 3, dtype=torch.float64) - 0.5, torch.rand(2, 21, 3, dtype=torch.float64) - 0.5
    from liveportrait_core.models.fast.fft_conv import FFTMotionHeads

    with torch.inference_mode():
        plain = warp(feature, kp_d, kp_s)
        fast_warp = FastWarpingNetwork(warp).eval()
        calls = _count_calls(fast_warp, (WinogradConv3x3, FFTMotionHeads, torch.nn.Conv3d))
        fast = fast_warp(feature, kp_d, kp_s)
    # the FFT heads and the Winograd last conv ran; the direct mask head and last conv did not
    dm = "dense_motion_network."
    assert calls[dm + "fft_heads"] == 1 and calls[dm + "hourglass.decoder.conv"] == 1
    assert calls[dm + "mask"] == 0 and isinstance(warp.dense_motion_network.hourglass.decoder.conv, torch.nn.Conv3d)
    assert set(fast) == set(plain)
    for key in plain:
        torch.testing.assert_close(fast[key], plain[key], rtol=0, atol=1e-10)


@pytest.mark.parametrize("device, dtype, cpu_paths", [("cpu", torch.float32, True), ("cpu", torch.bfloat16, False),
                                                      ("cuda", torch.float16, False)])
def test_winograd_and_fft_only_for_cpu_float32(device, dtype, cpu_paths):
    """CUDA keeps cuDNN's algorithms and a bf16 CPU mode runs the bf16 forms (oneDNN's bf16 kernels, no
    Winograd): the Winograd rewrites are made for CPU float32 only (checked with the modules on the CPU)."""
    from liveportrait_core.models.fast.bf16 import Bf16SPADEDecoder, Bf16WarpingNetwork
    from liveportrait_core.models.fast.optimize import prepare_for_inference
    from liveportrait_core.models.small import reduced_models

    models = reduced_models()
    models.device, models.dtype = torch.device(device), dtype
    prepare_for_inference(models, channels_last=False)
    assert (type(models["warping_module"]).__name__ == "FastWarpingNetwork") == cpu_paths
    cpu_bf16 = device == "cpu" and dtype == torch.bfloat16
    assert isinstance(models["spade_generator"], Bf16SPADEDecoder if cpu_bf16 else FastSPADEDecoder)
    assert isinstance(models["warping_module"], Bf16WarpingNetwork) == cpu_bf16
    assert any(isinstance(m, WinogradConv3x3) for n in ("warping_module", "spade_generator")
               for m in models[n].modules()) == cpu_paths
    x = torch.randn(1, 64, 64, 64)
    with torch.inference_mode():
        assert torch.isfinite(models["spade_generator"](x)).all()
