"""model.backend and model.providers: provider order and fallback, the placement report, the backend
decision, and the per-network CPU choice with its cache.

The choice logic is tested with recorded timings and recorded node placements (no GPU here); whatever
runs a network is always real (reduced networks from ``models/small.py``, real ONNX Runtime sessions).
"""
from __future__ import annotations

import json

import pytest
import torch

from liveportrait_core import settings as settings_mod
from liveportrait_core.models.onnx import backend, choice, runtime
from liveportrait_core.models.onnx.runtime import Placement, placement_from_nodes

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_settings_list_the_same_providers_and_backends():
    assert settings_mod.ORT_PROVIDERS == tuple(runtime.PROVIDERS)
    assert settings_mod.BACKENDS == backend.BACKENDS
    s = settings_mod.Settings()
    assert s.model.backend == "auto" and s.model.providers == list(runtime.PROVIDERS)
    with pytest.raises(settings_mod.SettingsError, match="rocm"):
        settings_mod.apply_overrides(s, ["model.providers=cuda,rocm"])


# --- providers ---------------------------------------------------------------------------------------


def test_providers_keep_the_user_order_skip_missing_ones_and_end_on_the_cpu():
    assert runtime.resolve_providers(["tensorrt", "cuda", "cpu"], ["cuda", "cpu"]) == ["cuda", "cpu"]
    assert runtime.resolve_providers(["cpu", "directml"], ["directml", "cpu"]) == ["directml", "cpu"]
    assert runtime.resolve_providers(["openvino"], ["cpu"]) == ["cpu"]
    with pytest.raises(ValueError, match="known: tensorrt"):
        runtime.resolve_providers(["rocm"], ["cpu"])


def test_tensorrt_options_are_fp16_with_engine_and_timing_caches_in_the_models_folder(tmp_path):
    opts = runtime.provider_options("tensorrt", tmp_path / "cache", "warping_module.abc.op20", fp16=True)
    assert opts["trt_fp16_enable"] is True
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"]
    assert opts["trt_engine_cache_path"] == opts["trt_timing_cache_path"] == str(tmp_path / "cache" / "tensorrt")
    assert not runtime.tensorrt_engine_cached(tmp_path / "cache", "warping_module.abc.op20")
    (tmp_path / "cache" / "tensorrt").mkdir(parents=True)
    (tmp_path / "cache" / "tensorrt" / "warping_module_abc_op20_123.engine").write_bytes(b"x")
    assert runtime.tensorrt_engine_cached(tmp_path / "cache", "warping_module.abc.op20")
    assert runtime.cache_dir(tmp_path) == tmp_path / "onnx" / "cache"


def test_a_grid_sample_left_on_the_cpu_is_reported():
    nodes = [("Conv", "CUDAExecutionProvider")] * 40 + [("GridSample", "CPUExecutionProvider"),
                                                        ("MemcpyToHost", "CUDAExecutionProvider"),
                                                        ("MemcpyFromHost", "CUDAExecutionProvider")]
    p = placement_from_nodes("warping_module", ["cuda", "cpu"], nodes)
    assert p.main == "cuda" and p.nodes == {"cuda": 40, "cpu": 1} and p.copies == 2
    assert not p.whole and p.elsewhere == (("GridSample", "cpu"),)
    text = p.summary()
    assert "CUDAExecutionProvider (40/41 nodes)" in text
    assert "GridSample on CPUExecutionProvider x1" in text and "copies" in text
    whole = placement_from_nodes("spade_generator", ["cuda", "cpu"], [("Conv", "CUDAExecutionProvider")] * 3)
    assert whole.whole and "elsewhere" not in whole.summary()


def test_a_network_goes_to_the_first_provider_that_runs_it_whole():
    tried = []
    placements = {
        ("tensorrt", "cuda", "cpu"): {"tensorrt": 30, "cpu": 1},  # GridSample on the CPU
        ("cuda", "cpu"): {"cuda": 31},
    }

    def open_with(provs):
        tried.append(tuple(provs))
        nodes = placements[tuple(provs)]
        return f"session{len(tried)}", Placement("warping_module", tuple(provs), nodes)

    session, placement = runtime.choose_providers("warping_module", ["tensorrt", "cuda", "cpu"], open_with)
    assert tried == [("tensorrt", "cuda", "cpu"), ("cuda", "cpu")]
    assert session == "session2" and placement.main == "cuda"


def test_when_no_gpu_provider_runs_it_whole_the_first_is_kept_and_said(caplog):
    def open_with(provs):
        return tuple(provs), Placement("warping_module", tuple(provs), {provs[0]: 30, "cpu": 1})

    session, placement = runtime.choose_providers("warping_module", ["directml", "cpu"], open_with)
    assert session == ("directml", "cpu") and placement.main == "directml"
    assert "no listed GPU provider runs it whole" in caplog.text


@pytest.fixture(scope="module")
def reduced_warp_export(tmp_path_factory):
    pytest.importorskip("onnx")
    from liveportrait_core.models.onnx import export as ex
    from liveportrait_core.models.small import reduced_models

    models = reduced_models()
    folder = tmp_path_factory.mktemp("onnx_w")
    tags = {"warping_module": ex.ExportTag(network="warping_module", weights_sha256="ef" * 32, onnx=ex.onnx_version())}
    return ex.export_modules(models.modules, folder, tags, progress=lambda m: None)["warping_module"]


def test_placement_of_a_real_session_names_the_grid_sample(reduced_warp_export):
    pytest.importorskip("onnxruntime")
    session, placement = runtime.open_session("warping_module", reduced_warp_export, ["cpu"],
                                              reduced_warp_export.parent / "cache")
    assert placement.main == "cpu" and placement.whole and placement.nodes["cpu"] > 10
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_placement_from_a_profiled_run_when_the_assignment_api_is_missing(reduced_warp_export):
    """Older ONNX Runtime builds have no get_provider_graph_assignment_info: the profile says the same."""
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(reduced_warp_export.parent / "prof")
    session = ort.InferenceSession(str(reduced_warp_export), so, providers=["CPUExecutionProvider"])

    class Old:  # the same session without the newer API
        run = session.run
        end_profiling = session.end_profiling

    p = runtime.session_placement("warping_module", Old(), ["cpu"], runtime.zero_feeds(session))
    assert p.main == "cpu" and p.nodes["cpu"] > 10
    assert not list(reduced_warp_export.parent.glob("prof*.json"))  # the profile file is removed


# --- the backend decision -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend_setting,device,precision,available,kind,providers", [
    ("torch", CPU, "auto", ["cpu"], "cpu-choice", ()),  # torch forms only, the faster of plain and fast
    ("torch", CUDA, "auto", ["cuda", "cpu"], "torch", ()),
    ("torch", CPU, "bf16", ["cpu"], "torch", ()),
    ("onnxruntime", CPU, "auto", ["cpu"], "onnxruntime", ("cpu",)),
    ("onnxruntime", CUDA, "auto", ["tensorrt", "cuda", "cpu"], "onnxruntime", ("tensorrt", "cuda", "cpu")),
    ("auto", CUDA, "auto", ["tensorrt", "cuda", "cpu"], "torch", ()),
    ("auto", CPU, "auto", ["directml", "cpu"], "onnxruntime", ("directml", "cpu")),
    ("auto", CPU, "auto", ["cpu"], "cpu-choice", ("cpu",)),
    ("auto", CPU, "auto", [], "cpu-choice", ("cpu",)),
    ("auto", CPU, "bf16", ["cpu"], "torch", ()),
])
def test_backend_decision(backend_setting, device, precision, available, kind, providers):
    plan = backend.resolve_backend(backend_setting, device, precision, list(runtime.PROVIDERS), available)
    assert plan.kind == kind and plan.reason
    assert plan.providers == providers or (kind == "torch" and not plan.providers)


def test_an_explicit_onnxruntime_choice_without_onnxruntime_says_how_to_install_it():
    with pytest.raises(runtime.OrtUnavailable, match="install.py --backend onnx"):
        backend.resolve_backend("onnxruntime", CPU, "auto", ["cpu"], [])
    with pytest.raises(ValueError, match="unknown model.backend"):
        backend.resolve_backend("tensorflow", CPU, "auto", ["cpu"], ["cpu"])


# --- the per-network CPU choice -------------------------------------------------------------------------


def test_the_fastest_form_is_kept_per_network_and_never_slower_than_plain():
    timings = {"motion_extractor": {"torch": 0.10, "onnxruntime": 0.07},
               "warping_module": {"torch": 1.0, "torch-fast": 0.6, "onnxruntime": 2.0},
               "spade_generator": {"torch": 1.5, "torch-fast": 1.5, "onnxruntime": 1.6}}
    picked = choice.pick_fastest(timings)
    assert picked == {"motion_extractor": "onnxruntime", "warping_module": "torch-fast", "spade_generator": "torch"}
    assert all(timings[n][f] <= timings[n]["torch"] for n, f in picked.items())


def _fake_clock(monkeypatch, durations):
    """time.perf_counter advanced by the called form's recorded duration (the choice logic on recorded timings)."""
    now = [0.0]
    monkeypatch.setattr(choice.time, "perf_counter", lambda: now[0])
    return {f: (lambda f=f: now.__setitem__(0, now[0] + durations[f].pop(0))) for f in durations}


def test_a_clear_first_round_decides_and_between_runs_before_every_call(monkeypatch):
    calls = _fake_clock(monkeypatch, {"torch": [1.0, 1.0, 1.0], "torch-fast": [0.5, 0.5, 0.5]})
    stops = []
    t = choice.measure({"net": calls}, runs=3, between=lambda: stops.append(1))
    assert t["net"] == pytest.approx({"torch": 1.0, "torch-fast": 0.5}) and len(stops) == 2  # one call each


def test_a_close_first_round_is_measured_again_without_its_set_up_costs(monkeypatch):
    calls = _fake_clock(monkeypatch, {"torch": [1.0, 0.95, 0.97], "onnxruntime": [1.1, 0.90, 0.92]})
    t = choice.measure({"net": calls}, runs=3)
    assert t["net"] == pytest.approx({"torch": 0.95, "onnxruntime": 0.90})
    assert choice.pick_fastest(t) == {"net": "onnxruntime"}


def test_a_network_with_one_form_is_not_timed():
    ran = []
    assert choice.measure({"appearance_feature_extractor": {"torch": lambda: ran.append(1)}}) == \
        {"appearance_feature_extractor": {"torch": 0.0}}
    assert not ran


def test_the_decision_is_cached_per_machine_key(tmp_path):
    path = tmp_path / "cpu_choice.json"
    key = choice.machine_key("1.32.0", threads=2)
    assert key["cpu"] and key["torch"] == torch.__version__ and key["threads"] == 2
    timings = {"warping_module": {"torch": 1.0, "torch-fast": 0.5}}
    made = choice.CpuChoice({"warping_module": "torch-fast"}, timings, key)
    choice.write_cached(path, made)
    other = {**key, "onnxruntime": "1.33.0"}
    choice.write_cached(path, choice.CpuChoice({"warping_module": "onnxruntime"}, {}, other))
    got = choice.read_cached(path, key, {"warping_module"})
    assert got is not None and got.cached and got.forms == {"warping_module": "torch-fast"}
    assert choice.read_cached(path, other, {"warping_module"}).forms == {"warping_module": "onnxruntime"}
    assert choice.read_cached(path, {**key, "threads": 16}, {"warping_module"}) is None
    assert choice.read_cached(path, key, {"warping_module", "spade_generator"}) is None  # not all measured
    assert len(json.loads(path.read_text())["entries"]) == 2


def test_cpu_choice_measures_once_then_reads_the_cache(tmp_path, monkeypatch):
    """The whole auto path on the CPU with the reduced networks: measured at the first load, cached, read at
    the second; the networks it returns compute what the plain ones do."""
    from liveportrait_core.models import loader
    from liveportrait_core.models.onnx.export import example_inputs
    from liveportrait_core.models.small import reduced_models

    monkeypatch.setattr(loader, "load_models", lambda *a, **k: reduced_models())
    monkeypatch.setattr(backend, "_ort_exports_ready", lambda *a: False)
    measured = []
    real = choice.measure
    monkeypatch.setattr(choice, "measure",
                        lambda calls, **k: measured.append(sorted(calls)) or real(calls, runs=1, **k))
    say: list[str] = []
    first = backend._load_cpu_choice(tmp_path, "human", tuple(loader.MODULE_NAMES), 0, lambda: None, say.append)
    assert len(measured) == 1 and (tmp_path / "onnx" / "cache" / "cpu_choice.json").is_file()
    second = backend._load_cpu_choice(tmp_path, "human", tuple(loader.MODULE_NAMES), 0, lambda: None, say.append)
    assert len(measured) == 1 and "(cached)" in say[-1]
    assert backend.describe(first) == backend.describe(second)
    assert set(backend.describe(first).values()) <= {"torch", "torch-fast"}
    plain = reduced_models()
    x = example_inputs(plain.modules)
    ref = plain.run("spade_generator", *x["spade_generator"])
    assert torch.allclose(second.run("spade_generator", *x["spade_generator"]), ref, rtol=0, atol=1e-4)


def test_a_choice_measured_on_a_busy_cpu_is_measured_again_once_it_is_quiet(tmp_path, monkeypatch):
    """A first start under load (other programs on the cores) measured the fast forms 2x slower than plain torch,
    0.76x when quiet, and the decision was kept for good. Now the load is kept with it: a later start on a quiet
    CPU measures again (once: the new decision records the quiet load); a CPU that stays busy does not."""
    from liveportrait_core.models import loader
    from liveportrait_core.models.small import reduced_models

    monkeypatch.setattr(loader, "load_models", lambda *a, **k: reduced_models())
    monkeypatch.setattr(backend, "_ort_exports_ready", lambda *a: False)
    measured = []
    real = choice.measure
    monkeypatch.setattr(choice, "measure", lambda calls, **k: measured.append(1) or real(calls, runs=1, **k))
    load = {"now": 3.2}
    monkeypatch.setattr("liveportrait_core.machine.load_per_cpu", lambda: load["now"])
    say: list[str] = []

    def start():
        return backend._load_cpu_choice(tmp_path, "human", tuple(loader.MODULE_NAMES), 0, lambda: None, say.append)

    start()
    entry = json.loads((tmp_path / "onnx" / "cache" / "cpu_choice.json").read_text())["entries"][0]
    assert len(measured) == 1 and entry["load_per_cpu"] == 3.2
    start()  # still busy: the busy decision is used (measuring again would be as unreliable)
    assert len(measured) == 1 and "(cached)" in say[-1]
    load["now"] = 0.4
    start()  # quiet now: measured again, and said why
    assert len(measured) == 2 and any("measured while the CPU was busy (load 3.2 per core; now 0.4)" in m for m in say)
    start()  # the quiet decision is kept
    assert len(measured) == 2 and "(cached)" in say[-1]
    assert not choice.measured_busy(choice.CpuChoice({}, {}, {}, load_per_cpu=None), 0.1)  # old caches: kept
    assert not choice.measured_busy(choice.CpuChoice({}, {}, {}, load_per_cpu=3.0), None)  # Windows: no load


def test_modules_benchmark_has_onnxruntime_modes(tmp_path, capsys, monkeypatch):
    """``benchmark --modules --modes ort-cpu``: the networks on ONNX Runtime, interleaved with the torch modes,
    with the same error columns against plain float32 (reduced networks, real export and sessions)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from liveportrait_core.cli import main as cli
    from tests.test_modules_benchmark import _use_reduced_networks

    _use_reduced_networks(monkeypatch)
    out = tmp_path / "modules.json"
    assert cli.main(["benchmark", "--modules", "--random-weights", "--device", "cpu", "--repeats", "1",
                     "--modes", "fp32,ort-cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["modes"]) == ["plain-fp32", "fp32", "ort-cpu"]
    ort = result["modes"]["ort-cpu"]
    assert ort["err_vs_plain_fp32"] < 1e-3 and ort["image_max_255"] <= 1 and ort["median_s"]["frame"] > 0
    assert "ort-cpu" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no tensorrt"):
        cli.main(["benchmark", "--modules", "--random-weights", "--device", "cpu", "--modes", "ort-trt"])


def test_a_provider_that_fails_to_open_the_network_hands_it_to_the_next(caplog):
    def open_with(provs):
        if provs[0] == "tensorrt":
            raise RuntimeError("libnvinfer.so.10: cannot open shared object file")
        return "s", Placement("spade_generator", tuple(provs), {provs[0]: 10})

    session, placement = runtime.choose_providers("spade_generator", ["tensorrt", "cuda", "cpu"], open_with)
    assert placement.main == "cuda" and "libnvinfer" in caplog.text and "CUDAExecutionProvider" in caplog.text
    with pytest.raises(RuntimeError):
        runtime.choose_providers("spade_generator", ["cpu"], lambda provs: (_ for _ in ()).throw(RuntimeError("x")))


def test_cpu_choice_weighs_onnxruntime_when_exported_and_mixes_forms(tmp_path, monkeypatch):
    """With exports present, ONNX Runtime is a third candidate; whatever is kept per network, the models compute
    what the plain ones do (reduced networks, real export and real sessions; the decision is the measured one)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from liveportrait_core.models import loader
    from liveportrait_core.models.onnx import export as ex
    from liveportrait_core.models.small import reduced_models

    monkeypatch.setattr(loader, "load_models", lambda *a, **k: reduced_models())
    monkeypatch.setattr(backend, "_ort_exports_ready", lambda *a: True)

    def load_ort(load, names, progress=None, between=None):
        src = reduced_models()
        tags = {n: ex.ExportTag(network=n, weights_sha256="12" * 32, onnx=ex.onnx_version()) for n in names}
        files = ex.export_modules(src.modules, tmp_path / "onnx", tags, progress=lambda m: None)
        out = {}
        for n, p in files.items():
            s, pl = runtime.open_session(n, p, ["cpu"], tmp_path / "cache")
            out[n] = runtime.OrtNetwork(n, s, pl)
        return out

    monkeypatch.setattr(runtime, "load_ort_networks", load_ort)
    say: list[str] = []
    models = backend._load_cpu_choice(tmp_path, "human", tuple(loader.MODULE_NAMES), 0, lambda: None, say.append)
    cached = json.loads((tmp_path / "onnx" / "cache" / "cpu_choice.json").read_text())["entries"][0]
    assert cached["key"]["candidates"] == ["torch", "torch-fast", "onnxruntime"]
    assert set(cached["timings"]["warping_module"]) == {"torch", "torch-fast", "onnxruntime"}
    assert set(cached["timings"]["motion_extractor"]) == {"torch", "onnxruntime"}
    kept = backend.describe(models)
    for n in ("motion_extractor", "warping_module"):
        assert kept[n] == {"torch": "torch", "torch-fast": "torch-fast",
                           "onnxruntime": "onnxruntime CPUExecutionProvider"}[cached["forms"][n]]
    plain = reduced_models()
    x = ex.example_inputs(plain.modules)
    f_s, x_d, x_s = x["warping_module"]
    ref = plain.run("warping_module", f_s, kp_driving=x_d, kp_source=x_s)["out"]
    got = models.run("warping_module", f_s, kp_driving=x_d, kp_source=x_s)["out"]
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4


def test_doctor_reports_onnxruntime_its_providers_and_the_exports(recipe_models_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    from liveportrait_core.tools import doctor

    s = settings_mod.Settings()
    s.model.models_dir = str(recipe_models_dir)
    monkeypatch.setattr(doctor, "_nvidia_driver_present", lambda: False)
    checks = {c.name: c for c in doctor.check_onnxruntime(s)}
    assert checks["onnxruntime"].status == doctor.OK and "providers here: cpu" in checks["onnxruntime"].detail
    w = checks["onnx:warping_module"]
    if "current" in w.detail:  # another test of this session exported the recipe weights already
        assert w.status == doctor.OK
    else:
        assert w.status == doctor.OK and "not exported" in w.detail and "export-onnx" in w.fix
        s.model.backend = "onnxruntime"  # then the first start exports: said as a warning
        assert {c.name: c for c in doctor.check_onnxruntime(s)}["onnx:warping_module"].status == doctor.WARN
    monkeypatch.setattr(runtime, "available_providers", lambda: [])
    s.model.backend = "onnxruntime"
    (only,) = doctor.check_onnxruntime(s)
    assert only.status == doctor.FAIL and "--backend onnx" in only.fix
    s.model.backend = "auto"
    assert doctor.check_onnxruntime(s)[0].status == doctor.OK


def test_cpu_choice_keeps_the_variant_it_loaded(tmp_path, monkeypatch):
    """The networks say which weights they hold (``models.variant``), whatever backend runs them."""
    from liveportrait_core.models import loader
    from liveportrait_core.models.onnx.export import EXPORTED
    from liveportrait_core.models.small import reduced_models

    monkeypatch.setattr(loader, "load_models", lambda *a, **k: reduced_models())
    monkeypatch.setattr(backend, "_ort_exports_ready", lambda *a: False)
    monkeypatch.setattr(choice, "read_cached", lambda path, key, nets: choice.CpuChoice(
        {n: "torch" for n in nets}, {}, key, cached=True))
    models = backend._load_cpu_choice(tmp_path, "animal", tuple(loader.MODULE_NAMES), 0, lambda: None, lambda s: None)
    assert models.variant == "animal" and set(EXPORTED) <= set(models.modules)


def test_bf16_on_a_cpu_without_it_is_decided_as_the_float32_it_runs_in(monkeypatch, tmp_path):
    """The loader runs float32 there, so the forms are measured as for float32: no network is left slower than
    its plain form because bf16 was asked for on a CPU that cannot do it."""
    from liveportrait_core.models import loader
    from liveportrait_core.models.onnx import backend as backend_mod

    monkeypatch.setattr(loader, "cpu_has_fast_bf16", lambda: False)
    chosen = []
    monkeypatch.setattr(backend_mod, "_load_cpu_choice", lambda *a, **k: chosen.append(a) or "measured")
    for setting in ("torch", "auto"):
        out = backend_mod.load_with_backend(tmp_path, backend=setting, device="cpu", precision="bf16", providers=[])
        assert out == "measured"
    assert len(chosen) == 2
