"""install.py --backend onnx: the ONNX Runtime wheel for each kind of machine, installed in the project's own
resolve (so the project's pins hold), one wheel only, and the networks exported after the weights."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def install(monkeypatch):
    spec = importlib.util.spec_from_file_location("lp_install_onnx_under_test", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("system,nvidia,wheel", [
    ("Linux", True, "onnxruntime-gpu"),
    ("Windows", True, "onnxruntime-gpu"),
    ("Windows", False, "onnxruntime-directml"),  # AMD or Intel graphics: DirectML runs on any DirectX 12 GPU
    ("Linux", False, "onnxruntime"),
    ("Darwin", False, "onnxruntime"),  # the macOS wheel has the CoreML provider
    ("Darwin", True, "onnxruntime"),  # (no CUDA on macOS)
])
def test_the_wheel_for_each_machine(install, system, nvidia, wheel):
    assert install.onnxruntime_wheel(system, nvidia) == wheel


def test_requirements_resolve_with_the_project(install):
    root = Path("/p")
    assert install.project_requirements(root, False, "torch", "onnxruntime-gpu") == ["/p"]
    assert install.project_requirements(root, True, "onnx", "onnxruntime") == ["/p[dev,onnx]"]
    gpu = install.project_requirements(root, True, "onnx", "onnxruntime-gpu")
    assert gpu == ["/p[dev]", install.ONNX_SPEC, "onnxruntime-gpu" + install.ORT_SPEC]


def test_install_py_bounds_are_the_onnx_extra_of_pyproject(install):
    tomllib = pytest.importorskip("tomllib")
    extra = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert sorted(extra["onnx"]) == sorted([install.ONNX_SPEC, "onnxruntime" + install.ORT_SPEC])
    assert "onnxruntime" not in " ".join(extra["dev"])  # optional: only with --backend onnx


def _steps(monkeypatch, install, nvidia: bool, installed: list[str]) -> list[list[str]]:
    ran: list[list[str]] = []
    monkeypatch.setattr(install, "run", lambda cmd, check=True: ran.append([str(c) for c in cmd]) or 0)
    monkeypatch.setattr(install, "check_python", lambda: None)
    monkeypatch.setattr(install, "has_nvidia_gpu", lambda: nvidia)
    monkeypatch.setattr(install, "installed_wheels", lambda py: installed)
    return ran


def test_backend_onnx_on_nvidia_swaps_the_cpu_wheel_and_exports_after_the_weights(install, monkeypatch):
    ran = _steps(monkeypatch, install, nvidia=True, installed=["onnxruntime"])
    monkeypatch.setattr(install.platform, "system", lambda: "Linux")
    monkeypatch.setattr(sys, "argv", ["install.py", "--backend", "onnx", "--tensorrt", "--no-run"])
    assert install.main() == 0
    uninstall = ran.index(next(c for c in ran if "uninstall" in c))
    project = ran.index(next(c for c in ran if "-e" in c))
    assert ran[uninstall][-1] == "onnxruntime" and uninstall < project
    assert ran[project][-2:] == [install.ONNX_SPEC, "onnxruntime-gpu" + install.ORT_SPEC]
    assert [install.TENSORRT_SPEC] == [c[-1] for c in ran if install.TENSORRT_SPEC in c]
    cli = str(install.venv_cli())
    steps = [c[1] for c in ran if c[0] == cli]
    assert steps == ["download-models", "export-onnx", "doctor"]


def test_backend_torch_installs_no_onnxruntime(install, monkeypatch):
    ran = _steps(monkeypatch, install, nvidia=False, installed=[])
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-models", "--no-run"])
    assert install.main() == 0
    assert not any("onnx" in " ".join(c) for c in ran)
