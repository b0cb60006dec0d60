"""The dense-motion heads by FFT (models/fast/fft_conv.py) are the same convolutions as Conv3d/Conv2d."""
import pytest
import torch
from torch import nn

from liveportrait_core.models.fast.fft_conv import FFTMotionHeads


def _heads(c: int, o: int, d: int, dtype=torch.float64, k: int = 7):
    torch.manual_seed(c * 100 + o)
    mask, occlusion = nn.Conv3d(c, o, k, padding=k // 2).to(dtype), nn.Conv2d(c * d, 1, k, padding=k // 2).to(dtype)
    return mask, occlusion


@pytest.mark.parametrize("shape", [(2, 3, 4, 20, 70), (1, 2, 1, 32, 32), (1, 4, 3, 5, 9)])
def test_equals_direct_convs_in_float64(shape):
    """Exact in float64, for batch 2, maps that are not a multiple of the block, and depths 1-4."""
    b, c, d, h, w = shape
    mask, occlusion = _heads(c, 3, d)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.inference_mode():
        m, o = FFTMotionHeads(mask, occlusion, d)(x)
        torch.testing.assert_close(m, mask(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(o, occlusion(x.reshape(b, c * d, h, w)), rtol=0, atol=1e-12)


def test_float32_is_as_close_to_float64_as_the_direct_conv():
    mask, occlusion = _heads(16, 5, 4, torch.float32)
    x = torch.relu(torch.randn(1, 16, 4, 40, 40))
    with torch.inference_mode():
        truth = mask.double()(x.double())
        m, _ = FFTMotionHeads(mask.float(), occlusion, 4)(x)
        direct = mask.float()(x)
    scale = truth.abs().max()
    assert (m.double() - truth).abs().max() / scale <= max(2 * (direct.double() - truth).abs().max() / scale, 1e-6)


def test_runs_in_float32_under_autocast():
    """Under bf16 autocast the heads still compute in float32 (no half-precision FFTs on the CPU)."""
    mask, occlusion = _heads(3, 2, 2, torch.float32)
    x = torch.randn(1, 3, 2, 16, 16)
    heads = FFTMotionHeads(mask, occlusion, 2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        m, o = heads(x.bfloat16())
    assert m.dtype == o.dtype == torch.float32
    with torch.inference_mode():
        torch.testing.assert_close(m, mask(x.bfloat16().float()), rtol=0, atol=1e-5)


def test_state_is_not_persistent():
    mask, occlusion = _heads(2, 2, 2, torch.float32)
    assert FFTMotionHeads(mask, occlusion, 2).state_dict() == {}


def test_refuses_mismatched_kernels():
    with pytest.raises(ValueError, match="kernels"):
        FFTMotionHeads(nn.Conv3d(2, 2, 7, padding=3), nn.Conv2d(4, 1, 5, padding=2), 2)
