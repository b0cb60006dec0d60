"""Find the project's virtual environment beside the script and put its site-packages on ``sys.path``.

OBS embeds its own Python (Linux: the system libpython; Windows/macOS: the one set in Tools > Scripts >
Python Settings), so the packages ``install.py`` put into ``.venv`` are only usable when that environment
was made with the same Python minor version. Binary wheels (torch, numpy, mediapipe) are built per minor
version; loading a mismatched one crashes or fails with obscure errors, so a mismatch is refused with a
message that says what to do. Standard library only: this runs before anything else is importable.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

VENV_DIR_NAME = ".venv"


@dataclass
class EnvironmentReport:
    """What was found; ``problem`` is a user-facing sentence (empty when all is well)."""

    venv: Path | None = None
    site_packages: Path | None = None
    venv_python: tuple[int, int] | None = None
    obs_python: tuple[int, int] = field(default_factory=lambda: tuple(sys.version_info[:2]))  # type: ignore[arg-type]
    added: bool = False
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def _venv_version(venv: Path) -> tuple[int, int] | None:
    """Python version the venv was made with, from pyvenv.cfg (``version`` / ``version_info``)."""
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() in ("version", "version_info"):
            m = re.match(r"\s*(\d+)\.(\d+)", value)
            if m:
                return int(m.group(1)), int(m.group(2))
    return None


def find_site_packages(venv: Path) -> tuple[Path | None, tuple[int, int] | None]:
    """The venv's site-packages and its Python version (Windows layout or POSIX ``lib/pythonX.Y``)."""
    version = _venv_version(venv)
    win = venv / "Lib" / "site-packages"
    if win.is_dir():
        return win, version
    lib = venv / "lib"
    candidates = sorted(lib.glob("python*/site-packages")) if lib.is_dir() else []
    for sp in candidates:
        m = re.match(r"python(\d+)\.(\d+)", sp.parent.name)
        found = (int(m.group(1)), int(m.group(2))) if m else None
        if version is None:
            version = found
        if found == version or found is None:
            return sp, version
    return (candidates[0] if candidates else None), version


def setup_instructions(project_root: Path, obs_python: tuple[int, int]) -> str:
    """How to (re)create the environment for this OBS's Python."""
    py = f"{obs_python[0]}.{obs_python[1]}"
    runner = f"py -{py}" if os.name == "nt" else f"python{py}"
    return (f"In a terminal, in {project_root}, run: {runner} install.py "
            f"(it creates {VENV_DIR_NAME} with Python {py}, the version OBS uses here), then reload this script "
            f"(Tools > Scripts > reload) or restart OBS.")


def prepare(project_root: Path, obs_python: tuple[int, int] | None = None, path: list[str] | None = None
            ) -> EnvironmentReport:
    """Add ``<project_root>/.venv``'s site-packages to ``path`` (default ``sys.path``) when usable.

    Idempotent (reloading the script does not add it twice). Never raises: problems go into the report.
    """
    path = sys.path if path is None else path
    obs_py = obs_python or (sys.version_info[0], sys.version_info[1])
    report = EnvironmentReport(obs_python=obs_py)
    venv = project_root / VENV_DIR_NAME
    if not venv.is_dir():
        report.problem = (f"No Python environment found at {venv}. " + setup_instructions(project_root, obs_py))
        return report
    report.venv = venv
    site, version = find_site_packages(venv)
    report.site_packages, report.venv_python = site, version
    if site is None:
        report.problem = (f"{venv} has no site-packages folder (incomplete set-up). "
                          + setup_instructions(project_root, obs_py))
        return report
    if version is not None and version != obs_py:
        report.problem = (
            f"{venv} was made with Python {version[0]}.{version[1]}, but OBS runs Python {obs_py[0]}.{obs_py[1]}; "
            f"its compiled packages (torch, numpy, mediapipe) cannot load. Either "
            + ("point OBS at a Python " + f"{version[0]}.{version[1]} (Tools > Scripts > Python Settings, "
               "then restart OBS), or " if sys.platform in ("win32", "darwin") else "")
            + "recreate the environment: " + setup_instructions(project_root, obs_py))
        return report
    if str(site) not in path:
        # ahead of the system's dist-packages, so that an older system numpy cannot shadow the venv's
        path.insert(0, str(site))
        report.added = True
    return report
