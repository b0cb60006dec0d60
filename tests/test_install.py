"""install.py's hints name the venv's own Python by its full path, so that they work when copied."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def install(monkeypatch):
    spec = importlib.util.spec_from_file_location("lp_install_under_test", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def _fake_steps(monkeypatch, install, failing: tuple[str, ...] = ()) -> list[list[str]]:
    """install.py's steps recorded, not run; a step whose last word is in ``failing`` exits 1."""
    ran: list[list[str]] = []

    def run(cmd, check=True):
        cmd = [str(c) for c in cmd]
        ran.append(cmd)
        return 1 if cmd[-1] in failing else 0

    monkeypatch.setattr(install, "run", run)
    monkeypatch.setattr(install, "check_python", lambda: None)
    monkeypatch.setattr(install, "has_nvidia_gpu", lambda: False)
    return ran


def test_venv_command_is_the_full_path_of_the_venv_python(install, monkeypatch, tmp_path):
    exe = install.venv_python()
    assert exe.is_absolute() and exe.parent.parent == REPO / ".venv"
    assert exe.as_posix().endswith(".venv/Scripts/python.exe" if install.os.name == "nt" else ".venv/bin/python")
    assert install.venv_command("-m", "liveportrait_core", "doctor") == f"{exe} -m liveportrait_core doctor"
    monkeypatch.setattr(install, "VENV", tmp_path / "with space" / ".venv")
    assert install.venv_command("-m", "x") == f'"{install.venv_python()}" -m x'


def test_offline_hints_name_the_venv_python(install, monkeypatch, capsys):
    ran = _fake_steps(monkeypatch, install, failing=("download-models", "doctor"))
    monkeypatch.setattr(sys, "argv", ["install.py"])
    assert install.main() == 3
    out = capsys.readouterr().out
    py = str(install.venv_python())
    assert f"Run `{py} -m liveportrait_core download-models` when you are online" in out
    assert f"check again with `{py} -m liveportrait_core doctor`" in out
    assert f"start the demo with `{py} -m liveportrait_core demo`" in out
    assert "`python -m" not in out
    assert not any(c[-1] == "demo" for c in ran)  # not started while something is missing


def test_no_run_says_how_to_start_the_demo(install, monkeypatch, capsys):
    _fake_steps(monkeypatch, install)
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-run"])
    assert install.main() == 0
    out = capsys.readouterr().out
    assert f"set up and ready; start the demo with `{install.venv_python()} -m liveportrait_core demo`." in out


def test_no_run_when_not_ready_still_exits_0_with_the_doctor_hint(install, monkeypatch, capsys):
    _fake_steps(monkeypatch, install, failing=("doctor",))
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-models", "--no-run"])
    assert install.main() == 0  # README's test set-up: dependencies only, no weights yet
    out = capsys.readouterr().out
    assert f"set up: `doctor` above lists what is missing and how to fix it; check again with " \
           f"`{install.venv_python()} -m liveportrait_core doctor`" in out


@pytest.mark.parametrize("flag,cuda_index", [([], False), (["--torch", "cuda"], True), (["--torch", "default"], False)])
def test_torch_choices(install, monkeypatch, flag, cuda_index):
    ran = _fake_steps(monkeypatch, install)
    monkeypatch.setattr(install, "has_nvidia_gpu", lambda: True)
    monkeypatch.setattr(install.os, "name", "nt")  # the index is only used on Windows
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-models", "--no-run", *flag])
    assert install.main() == 0
    torch_cmd = next(c for c in ran if any(a.startswith("torch==") for a in c))
    cuda_index = cuda_index or not flag  # auto with a driver = CUDA
    assert ("--index-url" in torch_cmd) == cuda_index
    if cuda_index:
        assert torch_cmd[torch_cmd.index("--index-url") + 1] == install.TORCH_CUDA_INDEX
