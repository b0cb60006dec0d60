"""The exact inference rewrites (models/optimize.py) compute the same function as the plain modules."""
import copy

import pytest
import torch
import torch.nn.functional as F

from liveportrait_core.models.optimize import FastSPADEDecoder, fold_spectral_norm, polyphase_conv, polyphase_weights
from liveportrait_core.models.spade import SPADEConfig, SPADEDecoder, SpectralNormConv2d


@pytest.mark.parametrize("s", [2, 4])
def test_polyphase_conv_equals_conv_of_nearest_upsample(s):
    g = torch.Generator().manual_seed(s)
    x, w, b = torch.randn(2, 5, 7, 6, generator=g), torch.randn(4, 5, 3, 3, generator=g), torch.randn(4, generator=g)
    ref = F.conv2d(F.interpolate(x, scale_factor=s), w, b, padding=1)
    w2, b2 = polyphase_weights(w, b, s)
    assert w2.shape == (s * s * 4, 5, 2, 2)
    torch.testing.assert_close(polyphase_conv(x, w2, b2, s), ref, rtol=0, atol=2e-5)


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


def test_fast_spade_decoder_equals_plain_in_float64():
    """In float64 the rewrite agrees to 1e-10: it is the same function, not an approximation."""
    dec = _small_decoder().double()
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
    with torch.inference_mode():
        plain = dec(x)
        state = {k: v.clone() for k, v in dec.state_dict().items()}
        fold_spectral_norm(dec)
        fast = FastSPADEDecoder(dec).eval()(x)
    assert fast.shape == plain.shape == (2, 3, 128, 128)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-10)
    # the rewrite leaves the official state_dict untouched (names and values)
    assert list(dec.state_dict()) == list(state)
    assert all(torch.equal(dec.state_dict()[k], v) for k, v in state.items())


def test_fast_spade_decoder_float32_error_is_rounding():
    """In float32 both paths differ from the float64 result by rounding only, and by similar amounts."""
    dec = _small_decoder()
    x = torch.randn(2, 8, 16, 16)
    with torch.inference_mode():
        truth = copy.deepcopy(dec).double()(x.double())
        plain_err = (dec(x) - truth).abs().max().item()
        fold_spectral_norm(dec)
        fast_err = (FastSPADEDecoder(dec)(x) - truth).abs().max().item()
    assert plain_err < 1e-3 and fast_err < max(3 * plain_err, 1e-5)


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
        conv.fold()
        torch.testing.assert_close(conv(x), plain, rtol=0, atol=1e-6)
