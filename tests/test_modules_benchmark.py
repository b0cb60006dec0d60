"""``benchmark --modules`` runs end to end and reports what it measured (no speed assertions).

The full-size networks take seconds per frame on a CPU, so the loader is pointed at the reduced test
networks; everything else (mode choice, per-precision preparation, timing, the error figures, the
report) is the real code.
"""
import json

import pytest

pytest.importorskip("torch")

from liveportrait_core.cli import main as cli
from liveportrait_core.models.small import reduced_models  # noqa: E402


def _use_reduced_networks(monkeypatch) -> list[int]:
    """The benchmark's loader builds the reduced networks (the MLPs keep their recipe weights)."""
    import liveportrait_core.models.loader as loader
    import liveportrait_core.models.checkpoint.recipe as recipe

    built: list[int] = []
    full_recipe = recipe.recipe_state_dicts

    def load_reduced(state_dicts, device, names=None):
        built.append(1)
        return dict(reduced_models(str(device)).modules)

    monkeypatch.setattr(recipe, "recipe_state_dicts", lambda names=None: {} if names is None else full_recipe(names))
    monkeypatch.setattr(loader, "load_state_dicts_into", load_reduced)
    return built


@pytest.mark.parametrize("native_bf16", [False, True], ids=["avx2-cpu", "bf16-cpu"])
def test_modules_benchmark_reports_each_mode_against_plain(tmp_path, capsys, monkeypatch, native_bf16):
    """The default modes follow the CPU: bf16 is added exactly when the CPU runs it natively (AMX /
    avx512_bf16), so the test forces the capability check both ways and passes on either kind of CPU."""
    import liveportrait_core.models.loader as loader

    monkeypatch.setattr(loader, "cpu_has_fast_bf16", lambda: native_bf16)
    built = _use_reduced_networks(monkeypatch)
    out = tmp_path / "modules.json"
    assert cli.main(["benchmark", "--modules", "--random-weights", "--device", "cpu", "--repeats", "1",
                     "--json", str(out)]) == 0
    report = capsys.readouterr().out
    result = json.loads(out.read_text())
    expected = ["plain-fp32", "fp32"] + (["bf16"] if native_bf16 else [])
    assert list(result["modes"]) == expected
    assert len(built) == len(expected)  # the plain modules and one prepared set per precision
    fp32 = result["modes"]["fp32"]
    assert fp32["err_vs_plain_fp32"] < 1e-3 and fp32["image_max_255"] <= 1
    assert fp32["median_s"]["frame"] > 0 and fp32["vs_plain"] > 0
    assert "RECIPE WEIGHTS" in report and "frame vs plain fp32" in report and "conservative" in report


def test_unknown_mode_is_named(monkeypatch):
    _use_reduced_networks(monkeypatch)
    with pytest.raises(SystemExit, match="int8"):
        cli.main(["benchmark", "--modules", "--random-weights", "--device", "cpu", "--modes", "fp32,int8"])
