"""Where the project's folders are: the checkout, the default models and characters folders, caches."""
from __future__ import annotations

import os
from pathlib import Path

#: The checkout (or unpacked release) that holds ``liveportrait_core/`` and ``obs_liveportrait.py``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_CHARACTERS_DIR = PROJECT_ROOT / "characters"


VENV_DIR = PROJECT_ROOT / ".venv"  #: where install.py makes the virtual environment


def venv_python(venv: Path) -> Path:
    """The Python of a virtual environment (``Scripts/python.exe`` on Windows, ``bin/python`` elsewhere)."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def python_command(python: str | os.PathLike[str], *args: str) -> str:
    """A command line for the user to copy: ``python`` quoted when its path has spaces, then ``args``."""
    py = os.fspath(python)
    return " ".join((f'"{py}"' if " " in py else py, *args))


def cli_command(*args: str) -> str:
    """A ``python -m liveportrait_core ...`` command for the user to copy.

    With the project's virtual environment present, its own Python by full path, so the command works
    from any folder without activating anything; else plain ``python``.
    """
    exe = venv_python(VENV_DIR)
    return python_command(exe if exe.exists() else "python", "-m", "liveportrait_core", *args)


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
