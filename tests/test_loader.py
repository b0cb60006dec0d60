"""Loading the official file layout strictly: recipe checkpoints load; a renamed key or a wrong shape is
named in the error; device and precision choices; the non-finite fallback of reduced precision."""
import logging

import pytest
import torch

from liveportrait_core.models import loader as loader_module
from liveportrait_core.models.checkpoint import weights
from liveportrait_core.models.checkpoint.layout import MODULE_NAMES, RETARGETING_MODULES
from liveportrait_core.models.fast.seam import plain_network
from liveportrait_core.models.loader import (LivePortraitModels, ModelLoadError, _strict_load, cpu_has_fast_bf16,
                                             load_models, pick_device, pick_precision)
from liveportrait_core.models.networks.stitching import CONFIGS, RetargetingMLP
from liveportrait_core.settings import Settings


def test_recipe_checkpoints_load_strictly(recipe_models, recipe_state_dicts):
    assert set(recipe_models.modules) == set(MODULE_NAMES)
    assert recipe_models.device == torch.device("cpu") and recipe_models.dtype == torch.float32
    assert recipe_models.num_parameters() == 130_077_432
    for name in ("appearance_feature_extractor", "motion_extractor", "warping_module", *RETARGETING_MODULES):
        m = recipe_models[name]
        m = plain_network(m)  # W's CPU fast form is a copy with replaced leaves; the plain module holds the weights
        assert not m.training
        for k, v in recipe_state_dicts[name].items():
            assert torch.equal(m.state_dict()[k], v), (name, k)
    # the decoder's fast form replaced leaves in a copy; its plain module still holds the official weights
    dec = plain_network(recipe_models["spade_generator"])
    assert dec is not recipe_models["spade_generator"]
    assert torch.equal(dec.state_dict()["up_1.conv_0.weight_orig"],
                       recipe_state_dicts["spade_generator"]["up_1.conv_0.weight_orig"])
    assert "folded_weight" not in " ".join(dec.state_dict())


def test_stitching_file_sub_dicts_and_module_prefix(recipe_models_dir, recipe_state_dicts):
    path = weights.checkpoint_paths(recipe_models_dir)["stitching_retargeting_module"]
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"retarget_shoulder", "retarget_mouth", "retarget_eye"}
    assert all(k.startswith("module.") for k in raw["retarget_eye"])
    models = load_models(recipe_models_dir, device="cpu", names=RETARGETING_MODULES)
    assert torch.equal(models.eye.mlp[10].bias, recipe_state_dicts["eye"]["mlp.10.bias"])
    assert torch.equal(models.stitching.mlp[0].weight, recipe_state_dicts["stitching"]["mlp.0.weight"])


def _write_stitching(tmp_path, recipe_state_dicts, edit):
    sds = {n: dict(recipe_state_dicts[n]) for n in RETARGETING_MODULES}
    edit(sds)
    path = weights.checkpoint_paths(tmp_path)["stitching_retargeting_module"]
    path.parent.mkdir(parents=True)
    obj = {sub: {f"module.{k}": v for k, v in sds[n].items()}
           for n, sub in (("stitching", "retarget_shoulder"), ("lip", "retarget_mouth"), ("eye", "retarget_eye"))}
    torch.save(obj, path)


def test_renamed_key_is_named(tmp_path, recipe_state_dicts):
    def rename(sds):
        sds["lip"]["mlp.4.wieght"] = sds["lip"].pop("mlp.4.weight")
    _write_stitching(tmp_path, recipe_state_dicts, rename)
    with pytest.raises(weights.WeightsError) as e:
        load_models(tmp_path, device="cpu", names=RETARGETING_MODULES)
    assert "mlp.4.weight" in str(e.value) and "mlp.4.wieght" in str(e.value) and "lip" in str(e.value)


def test_wrong_shape_is_named(tmp_path, recipe_state_dicts):
    def reshape(sds):
        sds["eye"]["mlp.2.bias"] = torch.zeros(255)
    _write_stitching(tmp_path, recipe_state_dicts, reshape)
    with pytest.raises(weights.WeightsError, match=r"mlp\.2\.bias.*255"):
        load_models(tmp_path, device="cpu", names=RETARGETING_MODULES)


def test_strict_load_reports_first_missing_unexpected_and_shape(recipe_state_dicts):
    sd = dict(recipe_state_dicts["lip"])
    sd.pop("mlp.0.bias")
    sd["mlp.9.weight"] = torch.zeros(1)
    sd["mlp.6.bias"] = torch.zeros(5)
    msg = _strict_load("lip", RetargetingMLP(CONFIGS["lip"]), sd)
    assert "missing 1 key(s), first: mlp.0.bias" in msg
    assert "unexpected 1 key(s), first: mlp.9.weight" in msg
    assert "mlp.6.bias (5,) (expected (63,))" in msg


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(weights.WeightsError, match="download-models"):
        load_models(tmp_path / "nowhere", device="cpu")


def test_device_and_precision_choices(caplog):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(ModelLoadError, match="unknown model.device"):
        pick_device("tpu")
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu) == torch.float32
    assert pick_precision("auto", torch.device("cuda")) == torch.float16
    assert pick_precision("bf16", cpu) == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    for native_bf16 in (True, False):  # both kinds of CPU, whichever this one is
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(loader_module, "cpu_has_fast_bf16", lambda v=native_bf16: v)
            assert pick_precision("bf16", cpu) == (torch.bfloat16 if native_bf16 else torch.float32)
    with caplog.at_level(logging.WARNING):
        assert pick_precision("fp16", cpu) == torch.float32
    assert "fp16" in caplog.text


def test_settings_fields_exist():
    s = Settings()
    assert s.model.device == "auto" and s.model.precision == "auto"
    assert hasattr(s.performance, "compile") and hasattr(s.performance, "cuda_graphs")


class _Overflows(torch.nn.Module):
    """Stands in for a network that overflows in reduced precision (bf16 has float32's range, so a real
    network rarely does on CPU): infinite under autocast, finite without."""

    def forward(self, x):
        return x * float("inf") if torch.is_autocast_enabled("cpu") else x * 2


def test_non_finite_reduced_precision_falls_back_to_float32_once(caplog):
    models = LivePortraitModels(modules={"warping_module": _Overflows()}, device=torch.device("cpu"),
                                dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING):
        out = models.run("warping_module", torch.ones(3))
        out2 = models.run("warping_module", torch.ones(3))
    assert torch.equal(out, torch.full((3,), 2.0)) and torch.equal(out2, out)
    assert models.network_dtype("warping_module") == torch.float32
    assert caplog.text.count("non-finite") == 1


def test_a_deferred_check_switches_to_float32_at_the_next_call_without_a_rerun(caplog, monkeypatch):
    """On CUDA the check is read once it has reached the host (no wait for the GPU): the checked output goes out
    as it was, and the next call runs in float32. Forced here on the CPU (the flag is then on the host at once)."""
    monkeypatch.setattr(LivePortraitModels, "defers_checks", property(lambda self: True))
    models = LivePortraitModels(modules={"warping_module": _Overflows()}, device=torch.device("cpu"),
                                dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING):
        first = models.run("warping_module", torch.ones(3))
        assert torch.isinf(first).all() and "non-finite" not in caplog.text  # not re-run, not yet read
        second = models.run("warping_module", torch.ones(3))
        third = models.run("warping_module", torch.ones(3))
    assert torch.equal(second, torch.full((3,), 2.0)) and torch.equal(third, second)
    assert models.network_dtype("warping_module") == torch.float32
    assert caplog.text.count("non-finite") == 1 and not models._pending  # noqa: SLF001


def test_every_official_module_has_a_builder_and_no_other():
    from liveportrait_core.models.networks import BUILDERS

    assert tuple(BUILDERS) == tuple(MODULE_NAMES)
