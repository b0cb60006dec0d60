"""install.py installs the project editable after the right torch, and its hints name the venv's
``liveportrait`` command by its full path, so that they work when copied into any folder."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

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


def test_cli_command_is_the_full_path_of_the_venv_console_script(install, monkeypatch, tmp_path):
    exe = install.venv_cli()
    assert exe.is_absolute() and exe.parent.parent == REPO / ".venv"
    assert exe.as_posix().endswith(".venv/Scripts/liveportrait.exe" if install.os.name == "nt"
                                   else ".venv/bin/liveportrait")
    assert install.cli_command("doctor") == f"{exe} doctor"
    monkeypatch.setattr(install, "VENV", tmp_path / "with space" / ".venv")
    quoted = f'"{install.venv_cli()}"' if install.os.name == "nt" else f"'{install.venv_cli()}'"
    assert install.cli_command("doctor") == f"{quoted} doctor"


def test_offline_hints_name_the_venv_command(install, monkeypatch, capsys):
    ran = _fake_steps(monkeypatch, install, failing=("download-models", "doctor"))
    monkeypatch.setattr(sys, "argv", ["install.py"])
    assert install.main() == 3
    out = capsys.readouterr().out
    cli = str(install.venv_cli())
    assert f"Run `{cli} download-models` when you are online" in out
    assert f"check again with `{cli} doctor`" in out
    assert f"start the demo with `{cli} demo`" in out
    assert "`python -m" not in out and "-m liveportrait_core" not in out
    assert not any(c[-1] == "demo" for c in ran)  # not started while something is missing


def test_no_run_says_how_to_start_the_demo(install, monkeypatch, capsys):
    _fake_steps(monkeypatch, install)
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-run"])
    assert install.main() == 0
    out = capsys.readouterr().out
    assert f"set up and ready; start the demo with `{install.venv_cli()} demo`." in out


def test_no_run_when_not_ready_still_exits_0_with_the_doctor_hint(install, monkeypatch, capsys):
    _fake_steps(monkeypatch, install, failing=("doctor",))
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-models", "--no-run"])
    assert install.main() == 0  # README's test set-up: dependencies only, no weights yet
    out = capsys.readouterr().out
    assert f"set up: `doctor` above lists what is missing and how to fix it; check again with " \
           f"`{install.venv_cli()} doctor`" in out


@pytest.mark.parametrize("dev", [False, True])
def test_torch_first_then_the_project_editable(install, monkeypatch, dev):
    """torch (the right build) is installed before the project, whose dependencies then keep it; the project
    is installed editable, so the CLI and the OBS script run this checkout's files."""
    ran = _fake_steps(monkeypatch, install)
    monkeypatch.setattr(sys, "argv", ["install.py", "--no-models", "--no-run", *(["--dev"] if dev else [])])
    assert install.main() == 0
    pip = [c for c in ran if c[1:4] == ["-m", "pip", "install"]]
    torch_at = next(i for i, c in enumerate(pip) if any(a.startswith("torch==") for a in c))
    project_at = next(i for i, c in enumerate(pip) if "-e" in c)
    assert torch_at < project_at
    assert pip[project_at][-1] == (f"{REPO}[dev]" if dev else str(REPO))
    assert not any("-r" in c for c in pip)  # pyproject.toml is the one list of dependencies
    assert ran[-1] == [str(install.venv_cli()), "doctor"]  # checked with the installed command


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


# ------------------------------------------------------------------------------------------------
# the package as pyproject.toml declares it, and as install.py installed it into .venv


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_pyproject_declares_the_command_the_dependencies_and_the_markers():
    meta = _pyproject()
    project = meta["project"]
    assert project["scripts"] == {"liveportrait": "liveportrait_core.cli.main:main"}
    deps = " ".join(project["dependencies"])
    for dist in ("torch", "mediapipe==0.10.21", "opencv-contrib-python", "huggingface_hub", "cyndilib"):
        assert dist in deps
    assert {"pytest>=8", "pytest-timeout>=2.3", "scikit-image>=0.21"} <= set(project["optional-dependencies"]["dev"])
    # one list of dependencies: the requirements files only point at the project
    for req in ("requirements.txt", "requirements-dev.txt"):
        lines = [ln.strip() for ln in (REPO / req).read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        assert lines == (["-e ."] if req == "requirements.txt" else ["-e .[dev]"]), req
    # every marker the suite uses is registered
    ini = meta["tool"]["pytest"]["ini_options"]
    registered = {m.split(":")[0] for m in ini["markers"]}
    builtin = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings", "timeout"}
    used = set()
    for f in (REPO / "tests").rglob("*.py"):
        used |= set(re.findall(r"pytest\.mark\.([a-z_]+)", f.read_text(encoding="utf-8")))
    assert used - builtin <= registered, f"register these markers in pyproject.toml: {used - builtin - registered}"


def test_package_data_covers_every_data_file_of_the_package():
    """A non-editable install (a wheel) must carry e.g. models/checkpoint/checkpoint_layout.json."""
    import fnmatch

    data = _pyproject()["tool"]["setuptools"]["package-data"]
    tracked = subprocess.run(["git", "ls-files", "liveportrait_core"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    files = [Path(p) for p in tracked.stdout.split() if not p.endswith(".py")]
    assert Path("liveportrait_core/models/checkpoint/checkpoint_layout.json") in files
    for f in files:
        pkg = ".".join(f.parent.parts)
        assert any(fnmatch.fnmatch(f.name, pat) for pat in data.get(pkg, [])), f"{f} is not package data"


def _installed_editable(elsewhere: Path) -> Path:
    """The venv's ``liveportrait`` command, or skip when install.py has not installed this checkout editable."""
    from liveportrait_core import paths

    venv = REPO / ".venv"
    cli, py = paths.venv_script(venv), paths.venv_python(venv)
    if not (cli.is_file() and py.is_file()):
        pytest.skip("the project is not installed into .venv (run install.py)")
    probe = subprocess.run([str(py), "-c", "import importlib.metadata as m; "
                            "print(m.distribution('liveportrait-obs').read_text('direct_url.json'))"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=60)  # not the checkout's egg-info
    try:
        url = json.loads(probe.stdout)
    except ValueError:
        pytest.skip("liveportrait-obs is not installed into .venv")
    if not url.get("dir_info", {}).get("editable") or Path(url2pathname(urlparse(url["url"]).path)) != REPO:
        pytest.skip(f"liveportrait-obs in .venv is not this checkout installed editable: {url}")
    return cli


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PYTHONIOENCODING": "utf-8"}


def test_installed_command_works_from_any_folder(tmp_path):
    """Bug 3: what install.py and the fix hints print runs from another folder, and runs this checkout."""
    from liveportrait_core import paths

    cli = _installed_editable(tmp_path)
    p = subprocess.run([str(cli), "--help"], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("usage: liveportrait ") and "download-models" in p.stdout
    py = paths.venv_python(REPO / ".venv")
    p = subprocess.run([str(py), "-m", "liveportrait_core", "--version"], cwd=tmp_path, env=_clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("liveportrait "), p.stdout + p.stderr
    p = subprocess.run([str(py), "-c", "import liveportrait_core; print(liveportrait_core.__file__)"],
                       cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert Path(p.stdout.strip()) == REPO / "liveportrait_core" / "__init__.py"  # the OBS script's files
    # and the hints the code prints name exactly this command
    p = subprocess.run([str(py), "-c", "from liveportrait_core import paths; print(paths.cli_command('doctor'))"],
                       cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == paths.python_command(cli, "doctor")
