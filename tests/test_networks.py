"""The seven networks against the official reference vectors (recipe weights, float32, CPU).

The full-size warping and decoder passes take seconds here, so each runs once per session
(module-scoped fixtures) and every test reads from them.
"""
import numpy as np
import pytest
import torch

from liveportrait_core.models.networks import build
from liveportrait_core.models.networks.keypoints import MotionInfo
from liveportrait_core.models.checkpoint.layout import MODULE_NAMES, module_layout, total_parameters
from liveportrait_core.models.networks.stitching import retarget, stitch
from tests.conftest import load_vectors, rel_err


def t(a):
    return torch.from_numpy(np.asarray(a))


@pytest.fixture(scope="module")
def modules(recipe_state_dicts):
    out = {}
    for name in MODULE_NAMES:
        m = build(name)
        m.load_state_dict(recipe_state_dicts[name], strict=True)
        out[name] = m.eval()
    return out


@pytest.fixture(scope="module")
def warp_out(modules):
    a, w = load_vectors("appearance_feature_extractor"), load_vectors("warping_module")
    with torch.inference_mode():
        return modules["warping_module"](t(a["f_s"]), kp_driving=t(w["kp_driving"]), kp_source=t(w["kp_source"]))


@pytest.fixture(scope="module")
def spade_out(modules):
    w = load_vectors("warping_module")
    with torch.inference_mode():
        return modules["spade_generator"](t(w["out"]))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_state_dict_names_and_shapes_are_official(name):
    m = build(name)
    sd = m.state_dict()
    lay = module_layout(name)
    assert list(sd) == [s.key for s in lay.tensors]
    assert {k: tuple(v.shape) for k, v in sd.items()} == lay.shapes()
    assert sum(p.numel() for p in m.parameters()) == lay.num_parameters


def test_parameter_count_is_official():
    assert sum(p.numel() for n in MODULE_NAMES for p in build(n).parameters()) == total_parameters() == 130_077_432


def test_unknown_name_is_named():
    with pytest.raises(KeyError, match="spade"):
        build("spade")


def test_appearance_feature_extractor(modules):
    v = load_vectors("appearance_feature_extractor")
    x = (t(v["image_u8"]).permute(2, 0, 1)[None].float() / 255).clamp(0, 1)
    assert rel_err(x, v["x"]) == 0
    with torch.inference_mode():
        f_s = modules["appearance_feature_extractor"](x)
    assert f_s.shape == (1, 32, 16, 64, 64)
    assert rel_err(f_s, v["f_s"]) < 1e-4


def test_motion_extractor_raw_and_derived(modules):
    v = load_vectors("motion_extractor")
    x = t(v["images_u8"]).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        raw = [modules["motion_extractor"](x[i:i + 1]) for i in range(2)]  # each its own batch, as recorded
    assert set(raw[0]) == {"pitch", "yaw", "roll", "t", "exp", "scale", "kp"}
    for k in raw[0]:
        assert rel_err(torch.cat([r[k] for r in raw]), v[f"raw_{k}"]) < 1e-4, k
    info = MotionInfo.from_raw({k: t(v[f"raw_{k}"]) for k in raw[0]})  # derived values from the stored raw
    for k in ("pitch", "yaw", "roll"):
        assert rel_err(getattr(info, k), v[f"{k}_deg"]) < 1e-5
    assert rel_err(info.R, v["R"]) < 1e-5
    assert rel_err(info.kp, v["kp_canonical"]) < 1e-5 and rel_err(info.exp, v["exp_21x3"]) < 1e-5
    assert rel_err(info.keypoints(), v["x"]) < 1e-5


@pytest.mark.parametrize("name", ["stitching", "lip", "eye"])
def test_retargeting_mlps(modules, name):
    v = load_vectors("stitching_retargeting")
    with torch.inference_mode():
        assert rel_err(modules[name](t(v[f"{name}_in"])), v[f"{name}_out"]) < 1e-5


def test_stitching_and_retargeting_at_keypoint_level(modules):
    """The one copy of the wrapper maths, used by the driving maths (driving/animation.py) and the benchmark."""
    v = load_vectors("stitching_retargeting")
    x_s, x_d = t(v["x_s"]), t(v["x_d"])
    with torch.inference_mode():
        assert rel_err(stitch(modules["stitching"], x_s, x_d), v["stitched_x_d"]) < 1e-5
        assert rel_err(retarget(modules["eye"], x_s, t(v["eye_ratio"])), v["eye_delta"]) < 1e-5
        assert rel_err(retarget(modules["lip"], x_s, t(v["lip_ratio"])), v["lip_delta"]) < 1e-5


@pytest.mark.parametrize("key", ["out", "occlusion_map", "deformation"])
def test_warping_module(warp_out, key):
    assert rel_err(warp_out[key], load_vectors("warping_module")[key]) < 1e-4


def test_spade_generator(spade_out):
    v = load_vectors("spade_generator")
    assert spade_out.shape == (1, 3, 512, 512)
    assert rel_err(spade_out, v["out"]) < 1e-4
    u8 = (spade_out[0].permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8).numpy()
    assert np.abs(u8.astype(int) - v["out_u8"]).max() <= 1


def test_warp_then_decode_chained(modules, warp_out):
    with torch.inference_mode():
        out = modules["spade_generator"](warp_out["out"])
    assert rel_err(out, load_vectors("spade_generator")["out"]) < 1e-3


def test_loaded_and_optimized_decoder_matches_reference(recipe_models, spade_out):
    """The loader's decoder (exact rewrites applied) against the official output and the plain path."""
    v = load_vectors("spade_generator")
    fast = recipe_models.run("spade_generator", t(load_vectors("warping_module")["out"]))
    assert rel_err(fast, v["out"]) < 1e-4
    assert rel_err(fast, spade_out) < 1e-4


@pytest.mark.parametrize("key", ["out", "occlusion_map", "deformation"])
def test_loaded_and_optimized_warping_matches_reference(recipe_models, warp_out, key):
    """The loader's W (dense-motion heads by FFT on the CPU) against the official output and the plain path."""
    a, w = load_vectors("appearance_feature_extractor"), load_vectors("warping_module")
    fast = recipe_models.run("warping_module", t(a["f_s"]), kp_driving=t(w["kp_driving"]), kp_source=t(w["kp_source"]))
    assert type(recipe_models["warping_module"]).__name__ == "FastWarpingNetwork"
    assert rel_err(fast[key], w[key]) < 1e-4
    assert rel_err(fast[key], warp_out[key]) < 1e-4
