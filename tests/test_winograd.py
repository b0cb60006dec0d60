"""Winograd F(4x4, 3x3) (models/fast/winograd.py) is the same convolution as F.conv2d(padding=1)."""
import pytest
import torch
import torch.nn.functional as F

from liveportrait_core.models.fast import winograd
from liveportrait_core.models.fast.winograd import WinogradConv3x3


@pytest.mark.parametrize("shape", [(1, 5, 16, 16), (2, 3, 7, 10), (1, 4, 1, 5), (1, 6, 12, 40)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_equals_conv2d_in_float64(shape, with_bias):
    """Exact in float64 (any size: maps that are not a multiple of the tile are padded and cropped)."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, dtype=torch.float64, generator=g)
    w = torch.randn(7, shape[1], 3, 3, dtype=torch.float64, generator=g)
    b = torch.randn(7, dtype=torch.float64, generator=g) if with_bias else None
    with torch.inference_mode():
        y = WinogradConv3x3(w, b)(x)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), rtol=0, atol=1e-12)


def test_bands_cover_the_map(monkeypatch):
    """Several bands of tile rows (a small work size forces one tile row per band) give the same result."""
    g = torch.Generator().manual_seed(1)
    x, w, b = (torch.randn(1, 3, 20, 8, dtype=torch.float64, generator=g),
               torch.randn(5, 3, 3, 3, dtype=torch.float64, generator=g), torch.randn(5, dtype=torch.float64))
    monkeypatch.setattr(winograd, "BAND_WORK", 1)
    torch.testing.assert_close(WinogradConv3x3(w, b)(x), F.conv2d(x, w, b, padding=1), rtol=0, atol=1e-12)


def test_float32_error_is_of_the_order_of_the_direct_conv():
    """F(4x4, 3x3) amplifies rounding a little; it stays within a few times the direct conv's error."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 64, 32, 32, generator=g)
    w = torch.randn(32, 64, 3, 3, generator=g) / 24
    truth = F.conv2d(x.double(), w.double(), padding=1)
    scale = truth.abs().max()
    direct = ((F.conv2d(x, w, padding=1).double() - truth).abs().max() / scale).item()
    wino = ((WinogradConv3x3(w, None)(x).double() - truth).abs().max() / scale).item()
    assert wino < max(5 * direct, 2e-5), (wino, direct)


def test_state_is_not_persistent_and_follows_to():
    conv = WinogradConv3x3(torch.randn(4, 2, 3, 3), torch.randn(4))
    assert conv.state_dict() == {}
    assert conv.double().filter.dtype == torch.float64


def test_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match="3x3"):
        WinogradConv3x3(torch.randn(4, 2, 5, 5), None)


def test_runs_in_the_filter_dtype_under_autocast():
    w = torch.randn(4, 3, 3, 3)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = WinogradConv3x3(w, None)(x.bfloat16())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.conv2d(x.bfloat16().float(), w, padding=1), rtol=0, atol=1e-4)
