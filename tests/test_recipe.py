"""The recipe weights (models/checkpoint/recipe.py) against the reference checksums: every tensor, exactly."""
import numpy as np

from liveportrait_core.models.checkpoint.layout import MODULE_NAMES, module_layout
from liveportrait_core.models.checkpoint.recipe import module_weights
from tests.conftest import load_vectors


def test_recipe_matches_reference_checksums(recipe_state_dicts):
    c = load_vectors("recipe_checksums")
    assert int(c["recipe_seed"]) == 2024
    ours = {f"{m}/{k}": v.numpy() for m, sd in recipe_state_dicts.items() for k, v in sd.items()}
    assert sorted(ours) == sorted(c["key"].tolist())
    for i, key in enumerate(c["key"]):
        a = ours[key]
        assert str(a.dtype) == c["dtype"][i], key
        flat = a.astype(np.float64).ravel()
        first8 = np.zeros(8)
        first8[:min(8, flat.size)] = flat[:8]
        assert np.array_equal(first8, c["first8"][i]), key
        assert abs(flat.sum() - c["sum"][i]) <= 1e-9 * max(1.0, abs(c["sum"][i])), key
        assert abs((flat * flat).sum() - c["sum_sq"][i]) <= 1e-9 * max(1.0, c["sum_sq"][i]), key


def test_recipe_covers_the_layout_and_is_deterministic():
    lay = module_layout("eye")
    a, b = module_weights(lay), module_weights(lay)
    assert list(a) == [t.key for t in lay.tensors]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(MODULE_NAMES) == 7


def test_spectral_norm_vectors_are_unit_and_positive(recipe_state_dicts):
    sd = recipe_state_dicts["spade_generator"]
    w = sd["up_1.conv_0.weight_orig"].double().reshape(64, -1)
    u, v = sd["up_1.conv_0.weight_u"].double(), sd["up_1.conv_0.weight_v"].double()
    assert abs(u.norm().item() - 1) < 1e-6 and abs(v.norm().item() - 1) < 1e-6
    assert (u @ w @ v).item() > 0
