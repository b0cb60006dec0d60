"""Weight-file verification on files written here in the official layout.

Most tests use the two small files (appearance feature extractor, 3.3 MB; stitching/retargeting,
0.9 MB); one test reads the full-size recipe layout from the shared session fixture.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from liveportrait_core.models.checkpoint import layout, weights
from liveportrait_core.models.checkpoint.recipe import recipe_weights
from liveportrait_core.models.checkpoint.weights import WeightsError

AFE = "appearance_feature_extractor"
STITCH_FILE = "stitching_retargeting_module"
STITCH_REL = "liveportrait/retargeting_models/stitching_retargeting_module.pth"
AFE_REL = "liveportrait/base_models/appearance_feature_extractor.pth"


@pytest.fixture(scope="module")
def small_weights() -> dict[str, dict[str, np.ndarray]]:
    return recipe_weights((AFE, *layout.RETARGETING_MODULES))


def _write(root: Path, sds: dict, names=None) -> list[Path]:
    names = names or list(sds)
    return weights.write_checkpoints(root, {n: sds[n] for n in names})


def _afe(root: Path, small_weights) -> Path:
    (path,) = _write(root, small_weights, [AFE])
    return path


def _report(reports, file: str) -> weights.FileReport:
    return next(r for r in reports if r.file == file)


# ------------------------------------------------------------------------------------------------
# layout and paths


def test_official_paths_for_both_variants(tmp_path):
    human = weights.checkpoint_paths(tmp_path, "human")
    animal = weights.checkpoint_paths(tmp_path, "animal")
    assert human[AFE] == tmp_path / AFE_REL
    assert animal["spade_generator"] == tmp_path / "liveportrait_animals/base_models_v1.1/spade_generator.pth"
    # the official animal config uses the human stitching file
    assert animal[STITCH_FILE] == human[STITCH_FILE] == tmp_path / STITCH_REL
    with pytest.raises(KeyError, match="unknown weights variant"):
        weights.checkpoint_paths(tmp_path, "robot")


def test_relative_models_dir_is_relative_to_the_project():
    from liveportrait_core import paths

    assert weights.checkpoint_paths("models")[AFE] == paths.PROJECT_ROOT / "models" / AFE_REL


def test_size_bounds_admit_every_official_file():
    for rel, (size, _) in weights.OFFICIAL_CHECKSUMS.items():
        file = next(k for k, v in layout.checkpoint_files("human").items() if v == rel)
        lo, hi = weights.size_bounds(file)
        assert lo <= size <= hi, rel


# ------------------------------------------------------------------------------------------------
# good files


def test_written_stitching_file_has_official_sub_dicts_and_ddp_prefixes(tmp_path, small_weights):
    (path,) = _write(tmp_path, small_weights, list(layout.RETARGETING_MODULES))
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"retarget_shoulder", "retarget_mouth", "retarget_eye"}
    assert all(k.startswith("module.") for sub in raw.values() for k in sub)
    sds = weights.read_state_dicts(tmp_path, names=layout.RETARGETING_MODULES)
    for name in layout.RETARGETING_MODULES:
        assert set(sds[name]) == set(layout.module_layout(name).shapes())
        for k, v in small_weights[name].items():
            assert torch.equal(sds[name][k], torch.from_numpy(v))


def test_every_module_substring_is_removed_from_stitching_keys(tmp_path, small_weights):
    path = tmp_path / STITCH_REL
    path.parent.mkdir(parents=True)
    obj = {layout.module_layout(n).sub_key: {f"module.module.{k}": torch.from_numpy(v)
                                             for k, v in small_weights[n].items()}
           for n in layout.RETARGETING_MODULES}
    obj["unrelated_extra"] = {"step": torch.tensor(3)}  # extra top-level entries are ignored, as officially
    torch.save(obj, path)
    sds = weights.read_state_dicts(tmp_path, names=("eye",))
    assert set(sds) == {"eye"} and "mlp.0.weight" in sds["eye"]


def test_correct_small_layout_verifies_ok(tmp_path, small_weights):
    _write(tmp_path, small_weights)
    reports = weights.verify_models(tmp_path, check_hash=False)
    assert {r.file: r.status for r in reports} == {
        AFE: "ok", "motion_extractor": "missing", "warping_module": "missing", "spade_generator": "missing",
        STITCH_FILE: "ok"}
    missing = _report(reports, "spade_generator")
    assert "download-models" in missing.fix and missing.size is None


def test_fp16_copy_is_accepted(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in torch.load(path, weights_only=True).items()}
    torch.save(half, path)
    assert _report(weights.verify_models(tmp_path, check_hash=False), AFE).status == "ok"
    sd = weights.read_state_dicts(tmp_path, names=(AFE,))[AFE]
    assert sd["first.conv.weight"].dtype == torch.float16


def test_full_size_recipe_layout_reads_all_seven_modules(recipe_models_dir):
    sds = weights.read_state_dicts(recipe_models_dir)
    assert set(sds) == set(layout.MODULE_NAMES)
    for name in layout.MODULE_NAMES:
        assert {k: tuple(v.shape) for k, v in sds[name].items()} == layout.module_layout(name).shapes()
    reports = weights.verify_models(recipe_models_dir, check_hash=False)
    assert [r.status for r in reports] == ["ok"] * 5


# ------------------------------------------------------------------------------------------------
# broken files: each message names the file, the problem and the fix


def _read_error(root: Path, names=(AFE,)) -> str:
    with pytest.raises(WeightsError) as e:
        weights.read_state_dicts(root, names=names)
    return str(e.value)


def test_missing_file(tmp_path):
    msg = _read_error(tmp_path)
    assert AFE_REL in msg.replace(os.sep, "/") and "missing" in msg
    assert f"liveportrait download-models --models-dir {tmp_path}`" in msg.replace(".exe", "")


def _hinted_command(text: str) -> list[str]:
    """The ``download-models`` command a message tells the user to run, as argv after the program."""
    import re
    import shlex

    (cmd,) = {c for c in re.findall(r"`([^`]*download-models[^`]*)`", text)}
    argv = shlex.split(cmd, posix=os.name != "nt")
    return argv[argv.index("download-models"):]


@pytest.mark.parametrize("how", ["read", "verify"])
def test_fix_hint_downloads_into_the_folder_that_failed(tmp_path, small_weights, how):
    """Bug 10: following the hint fetches the files into the --models-dir that was checked, not models/."""
    from liveportrait_core.cli import main as cli

    root = tmp_path / "my models"  # a space, so the folder must be quoted to survive copy-paste
    path = _afe(root, small_weights)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.9)])  # truncated: "re-download"
    texts = ([_read_error(root, names=(AFE, "spade_generator"))] if how == "read" else
             [r.fix for r in weights.verify_models(root, check_hash=False) if r.file in (AFE, "spade_generator")])
    for text in texts:
        argv = _hinted_command(text)
        args = cli.build_parser().parse_args(argv)
        assert weights.models_root(cli.load_settings(args).model.models_dir) == root, text


def test_fix_hint_for_the_default_folder_has_no_models_dir():
    from liveportrait_core import paths

    for models_dir in ("models", paths.DEFAULT_MODELS_DIR):
        fix = weights.download_fix("animal", again=False, models_dir=models_dir)
        assert _hinted_command(fix) == ["download-models", "--variant", "animal"]


def test_missing_animal_file_names_the_animal_download(tmp_path):
    with pytest.raises(WeightsError, match="--variant animal"):
        weights.read_state_dicts(tmp_path, variant="animal", names=("motion_extractor",))


def test_truncated_file(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])  # still a plausible size: only loading can tell
    msg = _read_error(tmp_path)
    assert str(path) in msg and "truncated or corrupt" in msg and "download-models" in msg
    rep = _report(weights.verify_models(tmp_path), AFE)
    assert rep.status == "bad" and "truncated or corrupt" in rep.message and "download-models" in rep.fix


def test_badly_truncated_file_fails_the_size_check_without_loading(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    path.write_bytes(path.read_bytes()[:100_000])
    rep = _report(weights.verify_models(tmp_path, deep=False), AFE)
    assert rep.status == "bad" and "too small" in rep.message and rep.size == 100_000


def test_oversized_file_fails_the_size_check(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    with open(path, "ab") as f:
        f.write(b"\0" * (weights.size_bounds(AFE)[1] + 1 - path.stat().st_size))
    assert "too large" in _report(weights.verify_models(tmp_path, deep=False), AFE).message


def test_missing_key(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    sd = torch.load(path, weights_only=True)
    del sd["second.weight"]
    torch.save(sd, path)
    msg = _read_error(tmp_path)
    assert str(path) in msg and "1 missing key(s): 'second.weight'" in msg and "download-models" in msg


def test_wrong_shape(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    sd = torch.load(path, weights_only=True)
    sd["first.conv.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(sd, path)
    msg = _read_error(tmp_path)
    assert "'first.conv.weight' has shape (32, 3, 3, 3), expected (64, 3, 3, 3)" in msg


def test_renamed_key(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    sd = torch.load(path, weights_only=True)
    sd["first.convolution.weight"] = sd.pop("first.conv.weight")
    torch.save(sd, path)
    msg = _read_error(tmp_path)
    assert "missing key(s): 'first.conv.weight'" in msg
    assert "unexpected key(s): 'first.convolution.weight'" in msg


def test_integer_tensor_where_floats_belong(tmp_path, small_weights):
    path = _afe(tmp_path, small_weights)
    sd = torch.load(path, weights_only=True)
    sd["first.conv.bias"] = torch.zeros(64, dtype=torch.int32)
    torch.save(sd, path)
    assert "'first.conv.bias' is int32, expected a floating-point tensor" in _read_error(tmp_path)


def test_stitching_file_without_a_sub_dict(tmp_path, small_weights):
    (path,) = _write(tmp_path, small_weights, list(layout.RETARGETING_MODULES))
    raw = torch.load(path, weights_only=True)
    del raw["retarget_eye"]
    torch.save(raw, path)
    msg = _read_error(tmp_path, names=("eye",))
    assert "no 'retarget_eye' sub-dict" in msg and str(path) in msg


def test_stitching_sub_dict_with_a_wrong_shape(tmp_path, small_weights):
    (path,) = _write(tmp_path, small_weights, list(layout.RETARGETING_MODULES))
    raw = torch.load(path, weights_only=True)
    raw["retarget_mouth"]["module.mlp.0.weight"] = torch.zeros(3, 3)
    torch.save(raw, path)
    msg = _read_error(tmp_path, names=layout.RETARGETING_MODULES)
    assert "lip: 1 tensor(s) differ: 'mlp.0.weight' has shape (3, 3)" in msg


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / AFE_REL
    path.parent.mkdir(parents=True)
    path.write_text("<html>404 Not Found</html>\n" * 1000)
    msg = _read_error(tmp_path)
    assert str(path) in msg and "not a PyTorch checkpoint: it is an HTML page" in msg and "could run code" not in msg
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:5279bb86\nsize 3387959\n")
    assert "Git LFS pointer" in _read_error(tmp_path)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / AFE_REL
    path.parent.mkdir(parents=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2_000_000, dtype=np.uint8).tobytes())
    msg = _read_error(tmp_path)
    assert str(path) in msg and "could run code" not in msg and "download-models" in msg
    assert _report(weights.verify_models(tmp_path), AFE).status == "bad"


def test_a_tensor_instead_of_a_state_dict(tmp_path):
    path = tmp_path / AFE_REL
    path.parent.mkdir(parents=True)
    torch.save(torch.zeros(1_000_000), path)
    assert "holds a Tensor, not a state_dict" in _read_error(tmp_path)


def _make_marker(path: str) -> str:
    Path(path).write_text("code ran")
    return path


class _RunsCode:
    """Unpickling this calls ``_make_marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_make_marker, (self.marker,))


def test_pickle_that_would_run_code_is_refused(tmp_path, small_weights):
    marker = tmp_path / "marker.txt"
    path = _afe(tmp_path, small_weights)
    sd = torch.load(path, weights_only=True)
    sd["payload"] = _RunsCode(marker)
    torch.save(sd, path)
    msg = _read_error(tmp_path)
    assert "refused" in msg and "could run code" in msg and str(path) in msg
    assert not marker.exists()
    rep = _report(weights.verify_models(tmp_path), AFE)
    assert rep.status == "bad" and not marker.exists()
    # control: the payload is live, an unsafe load does run it
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_plain_pickle_file_is_refused_too(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / AFE_REL
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"x": _RunsCode(marker)}, protocol=2) + b"\0" * 2_000_000)
    msg = _read_error(tmp_path)
    assert str(path) in msg and "refused" in msg
    assert not marker.exists()


def test_every_problem_of_every_file_is_reported_at_once(tmp_path, small_weights):
    _write(tmp_path, small_weights, list(layout.RETARGETING_MODULES))
    msg = _read_error(tmp_path, names=layout.MODULE_NAMES)
    for rel in layout.checkpoint_files("human").values():
        if rel != STITCH_REL:
            assert rel in msg.replace(os.sep, "/")


# ------------------------------------------------------------------------------------------------
# writing


def test_write_rejects_a_wrong_layout_before_writing_anything(tmp_path, small_weights):
    bad = {AFE: dict(small_weights[AFE])}
    bad[AFE]["second.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(WeightsError, match="second.weight"):
        weights.write_checkpoints(tmp_path, bad)
    assert not any(tmp_path.rglob("*.pth"))


def test_write_needs_all_three_stitching_modules(tmp_path, small_weights):
    with pytest.raises(WeightsError, match="give all of them"):
        weights.write_checkpoints(tmp_path, {"lip": small_weights["lip"]})
    with pytest.raises(WeightsError, match="unknown module"):
        weights.write_checkpoints(tmp_path, {"nose": {}})


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path, small_weights):
    _afe(tmp_path, small_weights)
    path = _afe(tmp_path, small_weights)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_write_animal_variant(tmp_path, small_weights):
    (path,) = weights.write_checkpoints(tmp_path, {AFE: small_weights[AFE]}, variant="animal")
    assert path == tmp_path / "liveportrait_animals/base_models_v1.1/appearance_feature_extractor.pth"
    assert weights.read_state_dicts(tmp_path, variant="animal", names=(AFE,))[AFE]["second.weight"].shape[0] == 512


# ------------------------------------------------------------------------------------------------
# checksums


def test_checksum_match_and_corruption(tmp_path, small_weights, monkeypatch):
    path = _afe(tmp_path, small_weights)
    size, sha = path.stat().st_size, weights.sha256_file(path)
    monkeypatch.setitem(weights.OFFICIAL_CHECKSUMS, AFE_REL, (size, sha))
    rep = _report(weights.verify_models(tmp_path), AFE)
    assert rep.status == "ok" and "SHA-256 matches the official hash" in rep.message and rep.sha256 == sha
    # flip one byte inside a tensor: same size, same keys and shapes, different bytes
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    rep = _report(weights.verify_models(tmp_path), AFE)
    assert rep.status == "bad" and "corrupt" in rep.message and "download-models" in rep.fix
    # the user can skip the hash for speed: keys and shapes still pass
    assert _report(weights.verify_models(tmp_path, check_hash=False), AFE).status == "ok"


def test_a_different_official_layout_file_is_used_but_said_to_differ(tmp_path, small_weights):
    _afe(tmp_path, small_weights)  # the official size is 3,387,959 bytes; ours differs
    rep = _report(weights.verify_models(tmp_path), AFE)
    assert rep.status == "differs" and rep.ok  # usable, never replaced behind the user's back
    assert f"{AFE_REL} is not the official file" in rep.message and "3,387,959" in rep.message
    assert rep.sha256[:12] in rep.message and "5279bb865429" in rep.message
    assert "replace it:" in rep.fix and "download-models --force" in rep.fix  # one step, not "delete it"


def test_download_manifest_detects_later_corruption(tmp_path, small_weights):
    path = weights.write_checkpoints(tmp_path, {AFE: small_weights[AFE]}, variant="animal")[0]
    rel = "liveportrait_animals/base_models_v1.1/appearance_feature_extractor.pth"
    weights.record_verified(tmp_path, rel, path.stat().st_size, weights.sha256_file(path), "hub LFS metadata")
    assert weights.read_manifest(tmp_path)[rel]["source"] == "hub LFS metadata"
    rep = _report(weights.verify_models(tmp_path, "animal"), AFE)
    assert rep.status == "ok" and "download manifest" in rep.message
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x01
    path.write_bytes(bytes(data))
    assert _report(weights.verify_models(tmp_path, "animal"), AFE).status == "bad"


def test_unreadable_manifest_is_ignored(tmp_path):
    (tmp_path / weights.MANIFEST_NAME).write_text("{not json")
    assert weights.read_manifest(tmp_path) == {}


def test_download_fix_names_the_installed_command_by_full_path(tmp_path, monkeypatch):
    """The suggested command works from any folder without activating anything: the venv's ``liveportrait``
    by full path; before install.py has installed it, the venv's Python with ``-m``."""
    import shlex

    from liveportrait_core import paths

    monkeypatch.setattr(paths, "VENV_DIR", tmp_path / "no venv here")
    monkeypatch.setattr(paths.sysconfig, "get_path", lambda name: str(tmp_path / "no scripts here"))
    assert weights.download_fix("human") == "re-download with `python -m liveportrait_core download-models`"
    venv = tmp_path / "my venv"
    py = paths.venv_python(venv)
    py.parent.mkdir(parents=True)
    py.write_text("")
    monkeypatch.setattr(paths, "VENV_DIR", venv)
    quoted_py = f'"{py}"' if os.name == "nt" else shlex.quote(str(py))
    assert weights.download_fix("animal", again=False) == \
        f"download with `{quoted_py} -m liveportrait_core download-models --variant animal`"
    cli = paths.venv_script(venv)
    cli.write_text("")
    quoted_cli = f'"{cli}"' if os.name == "nt" else shlex.quote(str(cli))
    assert weights.download_fix("animal", again=False) == \
        f"download with `{quoted_cli} download-models --variant animal`"
