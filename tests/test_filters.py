"""The One Euro filter: steady when still, follows when moving, robust to odd timestamps."""
import numpy as np
import torch

from liveportrait_core.driving.filters import OneEuroFilter, OneEuroParams


def test_reduces_jitter_of_a_still_signal():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0, d_cutoff=1.0))
    raw = 5.0 + rng.normal(0, 1.0, size=300)
    out = np.array([f(x, i / 30) for i, x in enumerate(raw)])
    assert np.std(np.diff(out[30:])) < 0.25 * np.std(np.diff(raw[30:]))
    assert abs(out[30:].mean() - 5.0) < 0.3


def test_beta_reduces_lag_on_fast_motion():
    ramp = np.arange(120, dtype=float) * 2.0  # 60 units/s at 30 fps
    lags = []
    for beta in (0.0, 1.0):
        f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=beta, d_cutoff=1.0))
        out = [f(x, i / 30) for i, x in enumerate(ramp)]
        lags.append(ramp[-1] - out[-1])
    assert lags[1] < 0.5 * lags[0]


def test_first_sample_passes_through_and_repeated_timestamp_is_ignored():
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.05, d_cutoff=1.0))
    x0 = np.array([1.0, 2.0])
    assert np.array_equal(f(x0, 0.0), x0)
    assert np.array_equal(f(np.array([9.0, 9.0]), 0.0), x0)
    f.reset()
    assert f.value is None


def test_filters_torch_tensors_elementwise():
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.05, d_cutoff=1.0))
    a = f(torch.zeros(2, 3), 0.0)
    b = f(torch.ones(2, 3), 0.1)
    assert a.shape == b.shape == (2, 3)
    assert bool(((b > 0) & (b < 1)).all())
