"""ONNX export of the four big networks and ONNX Runtime's CPU outputs against torch.

Most tests export the reduced networks of ``models/small.py`` (same operators, fewer channels: seconds
instead of minutes); the full-size export with the recipe weights, checked against the shared reference
vectors, is marked slow. The caching tests use real weight files and real exports; only the loader that
feeds the export is the reduced one (the file hashing and the tags are what they test).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from liveportrait_core.models.onnx import export as ex  # noqa: E402
from liveportrait_core.models.onnx import runtime  # noqa: E402
from tests.conftest import load_vectors, rel_err  # noqa: E402


def peak_err(ours, ref) -> float:
    """max|ours - ref| / max|ref| (the issue's 'relative to peak')."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def reduced():
    from liveportrait_core.models.small import reduced_models

    return reduced_models()


@pytest.fixture(scope="module")
def reduced_exports(reduced, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_reduced")
    tags = {n: ex.ExportTag(network=n, weights_sha256="ab" * 32, onnx=ex.onnx_version()) for n in ex.EXPORTED}
    messages: list[str] = []
    paths = ex.export_modules(reduced.modules, folder, tags, progress=messages.append)
    return paths, messages


@pytest.mark.parametrize("network", ex.EXPORTED)
def test_reduced_network_on_ort_cpu_equals_torch(reduced, reduced_exports, network):
    paths, _ = reduced_exports
    inputs = ex.example_inputs(reduced.modules)[network]
    session, placement = runtime.open_session(network, paths[network], ["cpu"], paths[network].parent / "cache")
    net = runtime.OrtNetwork(network, session, placement)
    with torch.no_grad():
        ref = reduced.modules[network](*inputs)
    got = net(*inputs)
    if isinstance(ref, dict):
        assert list(got) == list(ex.OUTPUT_NAMES[network]) and set(got) == set(ref)
        for key in ref:
            assert got[key].dtype == torch.float32 and got[key].shape == ref[key].shape
            assert peak_err(got[key], ref[key]) < 1e-4, key
    else:
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert peak_err(got, ref) < 1e-4


def test_export_shows_progress_and_writes_a_tag_beside_each_file(reduced_exports):
    paths, messages = reduced_exports
    assert any("exporting warping_module" in m for m in messages)
    assert any(m.startswith("exported spade_generator") for m in messages)
    for network, path in paths.items():
        assert path.name == f"{network}.{'ab' * 6}.op{ex.OPSET}.onnx"
        tag = json.loads(path.with_suffix(".json").read_text())
        assert tag["weights_sha256"] == "ab" * 32 and tag["opset"] == 20 and tag["torch"] == torch.__version__
        assert tag["onnx"] == ex.onnx_version() and tag["exporter"] == ex.EXPORTER


def test_warping_export_has_a_5d_grid_sample(reduced_exports):
    import onnx

    model = onnx.load(str(reduced_exports[0]["warping_module"]), load_external_data=False)
    assert model.opset_import[0].version == 20
    assert "GridSample" in {n.op_type for n in model.graph.node}


def test_ort_network_keeps_the_run_contract(reduced, reduced_exports):
    """Inside LivePortraitModels: keyword inputs, float32 outputs, the same dict keys as torch."""
    from liveportrait_core.models.loader import LivePortraitModels

    paths, _ = reduced_exports
    modules = dict(reduced.modules)
    for n in ex.EXPORTED:
        s, p = runtime.open_session(n, paths[n], ["cpu"], paths[n].parent / "cache")
        modules[n] = runtime.OrtNetwork(n, s, p, "cd" * 32)
    models = LivePortraitModels(modules=modules, device=torch.device("cpu"), dtype=torch.float32)
    x = ex.example_inputs(reduced.modules)
    f_s, x_d, x_s = x["warping_module"]
    out = models.run("warping_module", f_s, kp_driving=x_d, kp_source=x_s)
    ref = reduced.run("warping_module", f_s, kp_driving=x_d, kp_source=x_s)
    assert set(out) == set(ref) == {"out", "occlusion_map", "deformation"}
    img = models.run("spade_generator", out["out"])
    assert img.dtype == torch.float32 and peak_err(img, reduced.run("spade_generator", ref["out"])) < 1e-4
    # the character cache fingerprints state_dict(): the weights' hash stands in for the weights
    assert models["motion_extractor"].state_dict()["weights_sha256"].tolist() == list(bytes.fromhex("cd" * 32))
    with pytest.raises(TypeError, match="kp_driving"):
        models.run("warping_module", f_s, kp_source=x_s)


# --- caching: export once, again when the weights or the versions change -------------------------------


@pytest.fixture
def models_dir(tmp_path, recipe_models_dir, reduced, monkeypatch):
    """A models folder linking the recipe weights (the small appearance file copied, so it can change), and
    the export fed by the reduced networks instead of loading the full ones (the export itself is real)."""
    from liveportrait_core.models import loader
    from liveportrait_core.models.checkpoint.weights import checkpoint_paths

    for key, src in checkpoint_paths(recipe_models_dir).items():
        dst = checkpoint_paths(tmp_path)[key]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if key == "appearance_feature_extractor":
            shutil.copyfile(src, dst)
        else:
            dst.symlink_to(src)
    monkeypatch.setattr(loader, "load_models", lambda *a, **k: reduced)
    calls: list[str] = []
    real = ex.export_module

    def spy(network, *a, **k):
        calls.append(network)
        return real(network, *a, **k)

    monkeypatch.setattr(ex, "export_module", spy)
    return tmp_path, calls


def test_export_is_reused_until_the_weights_change(models_dir, recipe_state_dicts):
    from liveportrait_core.models.checkpoint import weights

    root, calls = models_dir
    names = ["appearance_feature_extractor", "motion_extractor"]
    first = ex.ensure_exported(root, names=names)
    assert calls == names and all(p.is_file() for p in first.values())
    assert ex.ensure_exported(root, names=names) == first and calls == names  # current: nothing exported

    sd = {k: v.clone() for k, v in recipe_state_dicts["appearance_feature_extractor"].items()}
    next(v for v in sd.values() if v.is_floating_point()).add_(0.5)
    weights.write_checkpoints(root, {"appearance_feature_extractor": sd})  # only that (copied) file
    state = ex.export_state(root, "human", "appearance_feature_extractor")
    assert state.state == "stale" and "weight file changed" in state.reason
    second = ex.ensure_exported(root, names=names)
    assert calls == names + ["appearance_feature_extractor"]
    assert second["motion_extractor"] == first["motion_extractor"]
    assert second["appearance_feature_extractor"] != first["appearance_feature_extractor"]
    assert not first["appearance_feature_extractor"].exists()  # the older export is removed
    assert not first["appearance_feature_extractor"].with_suffix(".json").exists()


def test_export_is_redone_when_the_exporter_versions_change(models_dir):
    root, calls = models_dir
    path = ex.ensure_exported(root, names=["motion_extractor"])["motion_extractor"]
    tag_file = path.with_suffix(".json")
    tag = json.loads(tag_file.read_text())
    tag_file.write_text(json.dumps({**tag, "torch": "2.0.0"}))
    state = ex.export_state(root, "human", "motion_extractor")
    assert state.state == "stale" and "torch 2.0.0" in state.reason
    ex.ensure_exported(root, names=["motion_extractor"])
    assert calls == ["motion_extractor", "motion_extractor"]
    assert json.loads(tag_file.read_text())["torch"] == torch.__version__


def test_weight_files_are_never_written(models_dir):
    from liveportrait_core.models.checkpoint.weights import checkpoint_paths

    root, _ = models_dir
    before = {k: (p.stat().st_mtime_ns, p.stat().st_size) for k, p in checkpoint_paths(root).items()}
    ex.ensure_exported(root, names=["appearance_feature_extractor"])
    assert before == {k: (p.stat().st_mtime_ns, p.stat().st_size) for k, p in checkpoint_paths(root).items()}
    assert (root / "onnx" / "human").is_dir()


def test_missing_weights_say_what_to_do(tmp_path):
    with pytest.raises(ex.ExportError, match="download"):
        ex.ensure_exported(tmp_path, names=["motion_extractor"])


# --- full size, recipe weights, against the official reference vectors ---------------------------------


@pytest.fixture(scope="module")
def full_exports(recipe_models_dir):
    return ex.ensure_exported(recipe_models_dir)


@pytest.fixture(scope="module")
def full_networks(full_exports, recipe_models_dir):
    out = {}
    for n, p in full_exports.items():
        s, pl = runtime.open_session(n, p, ["cpu"], runtime.cache_dir(recipe_models_dir))
        out[n] = runtime.OrtNetwork(n, s, pl)
    return out


@pytest.mark.slow
def test_full_size_networks_on_ort_match_the_reference_vectors(full_networks):
    t = torch.from_numpy
    a, m, w, g = (load_vectors(n) for n in ("appearance_feature_extractor", "motion_extractor", "warping_module",
                                             "spade_generator"))
    assert rel_err(full_networks["appearance_feature_extractor"](t(a["x"])), a["f_s"]) < 1e-4
    x = t(m["images_u8"]).permute(0, 3, 1, 2).float() / 255
    for i in range(2):
        raw = full_networks["motion_extractor"](x[i:i + 1])
        for k, v in raw.items():
            assert rel_err(v, m[f"raw_{k}"][i:i + 1]) < 1e-4, k
    out = full_networks["warping_module"](t(a["f_s"]), kp_driving=t(w["kp_driving"]), kp_source=t(w["kp_source"]))
    for k in ("out", "occlusion_map", "deformation"):
        assert rel_err(out[k], w[k]) < 1e-4, k
    img = full_networks["spade_generator"](t(w["out"]))
    assert rel_err(img, g["out"]) < 1e-4
    u8 = (img[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(int)
    assert np.abs(u8 - g["out_u8"]).max() <= 1


@pytest.mark.parametrize("network", ex.EXPORTED)
def test_fp16_variant_keeps_float32_io_and_fp16_accuracy(reduced, reduced_exports, network):
    """The fp16 copy the CUDA and DirectML providers get: float32 inputs and outputs, weights in fp16, within
    fp16 accuracy of torch (checked here on the CPU provider; its speed is the GPU's, not measured here)."""
    import onnx

    path = ex.ensure_fp16(reduced_exports[0][network])
    assert path.name.endswith(".fp16.onnx") and ex.ensure_fp16(reduced_exports[0][network]) == path
    model = onnx.load(str(path))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    inputs = ex.example_inputs(reduced.modules)[network]
    session, placement = runtime.open_session(network, path, ["cpu"], path.parent / "cache")
    got = runtime.OrtNetwork(network, session, placement)(*inputs)
    with torch.no_grad():
        ref = reduced.modules[network](*inputs)
    pairs = [(got[k], ref[k]) for k in ref] if isinstance(ref, dict) else [(got, ref)]
    for g, r in pairs:
        assert g.dtype == torch.float32 and peak_err(g, r) < 2e-2
