"""Where the project's folders are: the checkout, the default models and characters folders, caches."""
from __future__ import annotations

import os
import shlex
import sys
import sysconfig
from pathlib import Path

#: The checkout (or unpacked release) that holds ``liveportrait_core/`` and ``obs_liveportrait.py``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_CHARACTERS_DIR = PROJECT_ROOT / "characters"


VENV_DIR = PROJECT_ROOT / ".venv"  #: where install.py makes the virtual environment
#: The console command that ``pyproject.toml`` declares (``liveportrait = liveportrait_core.cli.main:main``).
CLI_NAME = "liveportrait"


def venv_python(venv: Path) -> Path:
    """The Python of a virtual environment (``Scripts/python.exe`` on Windows, ``bin/python`` elsewhere)."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_script(venv: Path, name: str = CLI_NAME) -> Path:
    """A console script that pip installed into a virtual environment (``Scripts/NAME.exe`` on Windows)."""
    return venv / ("Scripts" if os.name == "nt" else "bin") / (f"{name}.exe" if os.name == "nt" else name)


def quote_arg(arg: str) -> str:
    """``arg`` as the user's shell needs it in a copied command: as is when plain, else quoted
    (POSIX shell quoting; double quotes on Windows, whose shells take those)."""
    if os.name == "nt":
        return f'"{arg}"' if any(c.isspace() for c in arg) or "&" in arg else arg
    return shlex.quote(arg)


def python_command(python: str | os.PathLike[str], *args: str) -> str:
    """A command line for the user to copy: ``python`` (or any program) quoted when its path needs it,
    then ``args`` (already quoted by the caller where needed)."""
    return " ".join((quote_arg(os.fspath(python)), *args))


def this_python() -> str:
    """The Python running this code, for ``pip install`` hints: ``sys.executable``, unless it is not a Python
    at all (inside OBS it is OBS itself), then the project's venv Python, whose packages OBS loads."""
    venv = venv_python(VENV_DIR)
    if not Path(sys.executable).name.lower().startswith("python") and venv.exists():
        return str(venv)
    return sys.executable


def cli_executable() -> Path | None:
    """The installed ``liveportrait`` command by full path: the project's ``.venv`` first, then the
    environment of the running Python (a user's own venv); None when the package is not installed."""
    candidates = [venv_script(VENV_DIR)]
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(Path(scripts) / venv_script(Path(), CLI_NAME).name)
    return next((p for p in candidates if p.is_file()), None)


def cli_command(*args: str) -> str:
    """A ``liveportrait ...`` command for the user to copy, that works from any folder.

    The installed console script by full path (no activation needed, never another ``python`` on PATH).
    Not installed (install.py not run yet): ``python -m liveportrait_core ...`` with the project's venv
    Python when there is one, which works only from the project folder until install.py has run.
    """
    exe = cli_executable()
    if exe is not None:
        return python_command(exe, *args)
    py = venv_python(VENV_DIR)
    return python_command(py if py.exists() else "python", "-m", "liveportrait_core", *args)


def user_cache_dir() -> Path:
    """Per-user cache for prepared characters (never inside the user's characters folder)."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "liveportrait_obs"


def resolve(path: str | os.PathLike[str], base: Path = PROJECT_ROOT) -> Path:
    """Expand ``~`` and make a relative settings path relative to the project, not the CWD."""
    p = Path(os.path.expanduser(os.fspath(path)))
    return p if p.is_absolute() else (base / p)
