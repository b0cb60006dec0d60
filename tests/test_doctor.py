"""doctor tells the truth about this machine, gives a fix for every problem, and exits 0 only when ready."""
from __future__ import annotations

import json
import sys
import types

import pytest

from liveportrait_core.cli import main as cli
from liveportrait_core import machine
from liveportrait_core.tools import doctor
from liveportrait_core.settings import Settings


def _doctor_json(capsys, *args: str) -> tuple[int, dict]:
    rc = cli.main(["doctor", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_doctor_on_this_machine(tmp_path, capsys):
    import torch

    rc, report = _doctor_json(capsys, "--models-dir", str(tmp_path / "no_weights"))
    checks = _by_name(report)
    assert rc == 1 and report["ready"] is False
    for c in report["checks"]:
        assert c["status"] in ("OK", "WARN", "FAIL")
        if c["status"] != "OK":
            assert c["fix"], f"{c['name']} has no fix"
    weights = checks["weights"]
    assert weights["status"] == "FAIL" and "no LivePortrait weights" in weights["detail"]
    # the fix fetches into the folder that was checked (bug 10), with the installed command
    assert f"liveportrait download-models --models-dir {tmp_path / 'no_weights'}`" in weights["fix"].replace(".exe", "")
    if not torch.cuda.is_available():  # e.g. the CPU-only CI machine: said, and what it means
        assert checks["torch"]["status"] == "WARN" and "run on the CPU" in checks["torch"]["detail"]
        # a CUDA build is suggested only where an NVIDIA driver could use it
        suggested = "--index-url https://download.pytorch.org/whl/cu" in checks["torch"]["fix"]
        assert suggested == (torch.version.cuda is None and doctor._nvidia_driver_present())
    assert "output:virtualcam" not in checks  # nothing offers a virtual camera
    assert checks["python"]["status"] in ("OK", "WARN") and "-bit)" in checks["python"]["detail"]
    assert checks["characters"]["status"] == "OK"  # the sample character ships with the project


def test_gpu_check_matches_nvml_on_this_machine():
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        check = doctor.check_gpu()
        assert check.status == "WARN" and "no NVIDIA driver" in check.detail and check.fix
        assert doctor._nvidia_driver_present() is False
        return
    try:
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                 for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    check = doctor.check_gpu()
    if names:
        assert check.status == "OK" and all(n in check.detail for n in names), check.detail
    else:
        assert check.status == "WARN" and "no GPU found" in check.detail and check.fix


def test_no_nvidia_driver_is_a_warning_with_a_fix(monkeypatch):
    class LibraryNotFound(Exception):
        pass

    def init():
        raise LibraryNotFound()

    fake = types.SimpleNamespace(nvmlInit=init, NVMLError_LibraryNotFound=LibraryNotFound, NVMLError=Exception)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    check = doctor.check_gpu()
    assert check.status == "WARN" and "no NVIDIA driver" in check.detail and "the CPU runs" in check.detail
    assert check.fix.startswith("only if this PC has an NVIDIA GPU") and "nvidia.com" in check.fix
    assert doctor._nvidia_driver_present() is False


def test_gpu_found(monkeypatch):
    mem = types.SimpleNamespace(total=10 * 2**30, free=8 * 2**30)
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, NVMLError_LibraryNotFound=OSError, NVMLError=OSError,
        nvmlSystemGetDriverVersion=lambda: "555.42", nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: b"NVIDIA GeForce RTX 3080",
        nvmlDeviceGetMemoryInfo=lambda h: mem)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    check = doctor.check_gpu()
    assert check.status == "OK" and "RTX 3080 (10 GiB" in check.detail and "555.42" in check.detail


def test_wrong_mediapipe_version_fails_with_the_pin(monkeypatch):
    monkeypatch.setattr(doctor, "_version", lambda dist: "0.10.30")
    check = doctor.check_mediapipe()
    assert check.status == "FAIL" and "0.10.21 is required" in check.detail
    assert "mediapipe==0.10.21" in check.fix


def test_installed_mediapipe_has_facemesh():
    check = doctor.check_mediapipe()
    assert check.status == "OK", check.detail


def test_cuda_requested_without_cuda_fails(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    s = Settings()
    s.model.device = "cuda"
    check = doctor.check_torch(s)
    assert check.status == "FAIL" and "model.device is cuda" in check.detail


def test_bad_weight_file_is_named(tmp_path):
    from liveportrait_core.models.checkpoint import weights

    path = weights.checkpoint_paths(tmp_path)["stitching_retargeting_module"]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x02garbage" * 100_000)
    s = Settings()
    s.model.models_dir = str(tmp_path)
    checks = {c.name: c for c in doctor.check_weights(s)}
    bad = checks["weights:stitching_retargeting_module"]
    assert bad.status == "FAIL" and "stitching_retargeting_module.pth" in bad.detail and "download-models" in bad.fix
    assert checks["weights:spade_generator"].status == "FAIL"


def test_spout_enabled_off_windows_fails(monkeypatch):
    monkeypatch.setattr(doctor.sys, "platform", "linux")
    s = Settings()
    s.outputs.spout = True
    spout = next(c for c in doctor.check_outputs(s) if c.name == "output:spout")
    assert spout.status == "FAIL" and "outputs.spout=false" in spout.fix


def test_missing_characters_folder(tmp_path):
    s = Settings()
    s.characters.folder = str(tmp_path / "nope")
    assert doctor.check_character_folder(s).status == "FAIL"
    s.characters.folder = str(tmp_path)
    (tmp_path / "me.png").write_bytes(b"")
    assert doctor.check_character_folder(s).status == "OK"


def test_a_crashing_check_is_reported_and_the_rest_still_runs(monkeypatch):
    def boom():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(doctor, "check_gpu", boom)
    checks = doctor.run_checks(Settings())
    gpu = next(c for c in checks if c.name == "gpu")
    assert gpu.status == "FAIL" and "driver exploded" in gpu.detail
    assert any(c.name == "mediapipe" for c in checks)


def test_exit_status_zero_only_when_ready(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "run_checks", lambda s: [doctor.Check("a", "OK", "fine"),
                                                         doctor.Check("b", "WARN", "slow", "buy a GPU")])
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ready to run (1 warning(s))" in out and "fix: buy a GPU" in out
    monkeypatch.setattr(doctor, "run_checks", lambda s: [doctor.Check("a", "FAIL", "broken", "mend it")])
    assert cli.main(["doctor"]) == 1
    assert "not ready: 1 problem(s) to fix" in capsys.readouterr().out


def test_quick_skips_the_hashes(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(doctor, "run_checks", lambda s: seen.setdefault("s", s) and [])
    cli.main(["doctor", "--quick", "--json"])
    assert seen["s"].model.verify_checksums is False


def _install_py() -> str:
    from liveportrait_core import paths

    return paths.quote_arg(str(paths.PROJECT_ROOT / "install.py"))


@pytest.mark.parametrize("platform,version,expected", [
    ("linux", (3, 12), "python3 {} --torch cuda"),
    ("darwin", (3, 11), "python3 {} --torch cuda"),
    ("win32", (3, 12), "py -3.12 {} --torch cuda"),
    ("win32", (3, 10), "py -3.10 {} --torch cuda"),
    ("win32", (3, 13), "py -3.12 {} --torch cuda"),  # OBS cannot load 3.13: README's 3.12
])
def test_install_fixes_use_the_commands_readme_shows(monkeypatch, platform, version, expected):
    """As README.md runs install.py, with the script by its full path so that the fix works from any folder."""
    monkeypatch.setattr(doctor.sys, "platform", platform)
    monkeypatch.setattr(doctor.sys, "version_info", types.SimpleNamespace(major=version[0], minor=version[1]))
    expected = expected.format(_install_py())
    assert doctor._install("--torch cuda") == expected
    assert doctor._install() == expected.removesuffix(" --torch cuda")


@pytest.mark.parametrize("platform,command", [("linux", "python3"), ("win32", "py -3.12")])
def test_fixes_never_say_a_bare_python_install(monkeypatch, platform, command):
    """Every fix that runs install.py names it as README.md does, never `python install.py`."""
    command = f"{command} {_install_py()}"
    monkeypatch.setattr(doctor.sys, "platform", platform)
    v = types.SimpleNamespace(major=3, minor=9, micro=0)
    monkeypatch.setattr(doctor.sys, "version_info", v)
    py = doctor.check_python()
    assert py.status == "WARN" and f"run `{command}` with it" in py.fix
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    torch_missing = doctor.check_torch(Settings())
    assert torch_missing.status == "FAIL" and torch_missing.fix == f"run `{command}`"
    for check in (py, torch_missing):
        assert "python install.py" not in check.fix


@pytest.fixture
def no_usable_gpu(monkeypatch):
    """torch sees no CUDA and no MPS device, whatever this machine has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)
    monkeypatch.setattr(doctor.sys, "platform", "linux")
    return torch


def test_cpu_torch_with_an_nvidia_gpu_offers_the_cuda_build(monkeypatch, no_usable_gpu):
    monkeypatch.setattr(no_usable_gpu.version, "cuda", None)
    monkeypatch.setattr(doctor, "_nvidia_driver_present", lambda: True)
    check = doctor.check_torch(Settings())
    assert check.status == "WARN" and "NVIDIA GPU, which this build of torch cannot use" in check.detail
    assert "--index-url https://download.pytorch.org/whl/cu" in check.fix
    assert check.fix.endswith(f" (or `python3 {_install_py()} --torch cuda`)")


@pytest.mark.parametrize("cuda_build", [None, "12.8"])
def test_no_nvidia_gpu_says_cpu_and_suggests_no_cuda_reinstall(monkeypatch, no_usable_gpu, cuda_build):
    """A machine without an NVIDIA GPU is told what the CPU path means, never to install a CUDA build."""
    monkeypatch.setattr(no_usable_gpu.version, "cuda", cuda_build)
    monkeypatch.setattr(doctor, "_nvidia_driver_present", lambda: False)
    check = doctor.check_torch(Settings())
    assert check.status == "WARN"
    assert "no NVIDIA GPU or driver on this machine" in check.detail and doctor.CPU_PATH in check.detail
    assert "seconds per frame" in check.detail and "too slow for live animation" in check.detail
    for cuda_advice in ("--index-url", "--torch cuda", "force-reinstall", "driver"):
        assert cuda_advice not in check.fix
    assert check.fix.startswith("nothing to install here")
    s = Settings()
    s.model.device = "cuda"
    check = doctor.check_torch(s)
    assert check.status == "FAIL" and "model.device is cuda" in check.detail
    assert check.fix.startswith("--set model.device=auto") and "--index-url" not in check.fix


def test_cuda_torch_with_a_driver_but_no_usable_gpu_asks_for_a_driver_update(monkeypatch, no_usable_gpu):
    monkeypatch.setattr(no_usable_gpu.version, "cuda", "12.8")
    monkeypatch.setattr(doctor, "_nvidia_driver_present", lambda: True)
    check = doctor.check_torch(Settings())
    assert check.status == "WARN" and "torch cannot use the GPU" in check.detail
    assert check.fix.startswith("update the NVIDIA driver")


def test_nvidia_driver_presence_falls_back_to_nvidia_smi(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: nvidia-ml-py missing
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    assert doctor._nvidia_driver_present() is False
    monkeypatch.setattr(machine.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(machine.subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=0))
    assert doctor._nvidia_driver_present() is True


def test_weight_file_that_differs_from_the_official_one_is_a_warning(tmp_path):
    from liveportrait_core.models.checkpoint import layout, weights
    from liveportrait_core.models.checkpoint.recipe import recipe_weights

    name = "appearance_feature_extractor"
    weights.write_checkpoints(tmp_path, {name: recipe_weights((name,))[name]})  # right layout, other bytes
    s = Settings()
    s.model.models_dir = str(tmp_path)
    check = {c.name: c for c in doctor.check_weights(s)}[f"weights:{name}"]
    rel = layout.checkpoint_files("human")[name]
    assert check.status == "WARN" and f"{rel} is not the official file" in check.detail
    assert "SHA-256" in check.detail and "download-models" in check.fix and str(tmp_path) in check.fix
    assert "[WARN] weights:appearance_feature_extractor" in doctor.format_report([check])


def test_no_virtual_camera_check():
    """Nothing in the project offers a virtual camera, so doctor does not list one."""
    assert [c.name for c in doctor.check_outputs(Settings())] == ["output:spout", "output:ndi"]


def test_pip_fixes_inside_obs_name_the_venv_python(monkeypatch, tmp_path):
    """Inside OBS ``sys.executable`` is OBS itself: pip fixes name the project's venv Python instead."""
    from liveportrait_core import paths

    venv = tmp_path / ".venv"
    py = paths.venv_python(venv)
    py.parent.mkdir(parents=True)
    py.write_text("")
    monkeypatch.setattr(paths, "VENV_DIR", venv)
    monkeypatch.setattr(paths.sys, "executable", "/usr/bin/obs")
    assert doctor._pip("x").startswith(f"{py} -m pip install")
    monkeypatch.setattr(paths.sys, "executable", "/somewhere/python3.11")
    assert doctor._pip("x").startswith("/somewhere/python3.11 -m pip install")


def test_command_check_says_whether_the_liveportrait_command_is_installed(monkeypatch, tmp_path):
    from liveportrait_core import paths

    monkeypatch.setattr(paths, "VENV_DIR", tmp_path / ".venv")
    monkeypatch.setattr(paths.sysconfig, "get_path", lambda name: str(tmp_path / "no scripts"))
    check = doctor.check_command()
    assert check.status == "WARN" and "not installed" in check.detail
    assert "install.py --no-models --no-run" in check.fix
    exe = paths.venv_script(tmp_path / ".venv")
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    check = doctor.check_command()
    assert check.status == "OK" and str(exe) in check.detail
