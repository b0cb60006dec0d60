"""The layers keep their direction: only the OBS glue touches OBS, and the networks depend on nothing above them.

Read from the source with ``ast`` (nothing is imported), so a forbidden import inside a function counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "liveportrait_core"
OBS_GLUE = PACKAGE / "obs"
NETWORKS = PACKAGE / "models" / "networks"
#: What the plain networks may import from the project: each other only.
NETWORKS_MAY_IMPORT = ("liveportrait_core.models.networks",)
#: What the whole models/ folder (networks, checkpoint I/O, fast forms, loader) may import from the project.
MODELS_MAY_IMPORT = ("liveportrait_core.models", "liveportrait_core.paths", "liveportrait_core.machine")
#: The only modules at the package root: everything else lives in a folder named for its part of the product.
ROOT_MODULES = {"__init__.py", "__main__.py", "settings.py", "paths.py", "log.py", "images.py", "machine.py"}
#: The folders, each named for one part of the product (docs/ARCHITECTURE.md has the map).
FOLDERS = {"capture", "voice", "tracking", "models", "driving", "characters", "outputs", "engine", "obs", "cli", "tools"}

def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (``from x import y`` gives ``x`` and ``x.y``)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    return imported_by_source(path.read_text(encoding="utf-8"), package)


def imported_by_source(source: str, package: str) -> set[str]:
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _package_files(exclude: Path | None = None) -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if exclude is None or exclude not in p.parents]


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_imports_are_found_anywhere_and_relative_ones_resolved():
    source = "import os\ndef f():\n    from ..engine import Engine\n    from . import loader\n    import obspython\n"
    names = imported_by_source(source, "liveportrait_core.models")
    assert {"os", "liveportrait_core.engine.Engine", "liveportrait_core.models.loader", "obspython"} <= names


def offenders(paths, forbidden) -> dict[str, list[str]]:
    """{file: the names it imports that ``forbidden(name)`` refuses}, for files with any."""
    found = {str(p.relative_to(REPO)): sorted(n for n in imported_modules(p) if forbidden(n)) for p in paths}
    return {f: names for f, names in found.items() if names}


def _project_but_not(allowed: tuple[str, ...]):
    return lambda n: _is_under(n, "liveportrait_core") and n != "liveportrait_core" and \
        not any(_is_under(n, ok) for ok in allowed)


def _under_any(prefixes: tuple[str, ...]):
    return lambda n: any(_is_under(n, a) for a in prefixes)


def test_nothing_outside_the_obs_glue_imports_obs():
    bad = offenders(_package_files(exclude=OBS_GLUE),
                    lambda n: n in ("obspython", "obs_liveportrait") or _is_under(n, "liveportrait_core.obs"))
    assert not bad, f"only liveportrait_core/obs and obs_liveportrait.py may touch OBS: {bad}"


def test_the_networks_import_nothing_from_the_layers_above():
    bad = offenders(NETWORKS.rglob("*.py"), _project_but_not(NETWORKS_MAY_IMPORT))
    assert not bad, f"the networks may import only {NETWORKS_MAY_IMPORT}: {bad}"


def test_the_models_folder_imports_nothing_from_the_engine_or_the_product_around_it():
    bad = offenders((PACKAGE / "models").rglob("*.py"), _project_but_not(MODELS_MAY_IMPORT))
    assert not bad, f"models/ may import only {MODELS_MAY_IMPORT}: {bad}"


def test_the_package_root_is_grouped_by_part_of_the_product():
    root = {p.name for p in PACKAGE.glob("*.py")}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert root == ROOT_MODULES, f"modules at the package root beyond the shared ones: {sorted(root - ROOT_MODULES)}"
    assert folders == FOLDERS, f"folders differ from the documented map: {sorted(folders ^ FOLDERS)}"


def test_the_driving_maths_imports_nothing_from_the_stages_that_run_it():
    above = ("liveportrait_core.engine", "liveportrait_core.outputs", "liveportrait_core.cli", "liveportrait_core.obs",
             "liveportrait_core.characters", "liveportrait_core.capture")
    bad = offenders((PACKAGE / "driving").rglob("*.py"), _under_any(above))
    assert not bad, f"driving/ imports from the layers that run it: {bad}"


def test_the_pipeline_imports_nothing_from_the_stages_that_run_it():
    """The engine runs the backend, the backend runs the pipeline: never the other way (``FrameCancelled``,
    which the pipeline raises and the engine catches, lives below all three in ``cancel``)."""
    above = ("liveportrait_core.engine.backend", "liveportrait_core.engine.core", "liveportrait_core.outputs",
             "liveportrait_core.cli")
    bad = offenders([PACKAGE / "engine" / "pipeline.py"], _under_any(above))
    assert not bad, f"the pipeline imports from the layers that run it: {bad}"


def test_the_webcam_tracker_imports_nothing_from_the_characters():
    """Character images are handled in ``characters/`` only (its face finder uses the tracker's mesh and landmark
    maths, never the other way), so ``tracking/`` stays the webcam tracker."""
    bad = offenders((PACKAGE / "tracking").rglob("*.py"), _under_any(("liveportrait_core.characters",)))
    assert not bad, f"tracking/ imports from characters/: {bad}"


def test_an_upward_import_is_caught():
    """The checks above can fail: an import from a layer above, absolute or relative, is refused."""
    for source in ("from liveportrait_core.engine.core import Engine\n", "def f():\n    from ..engine import core\n"):
        names = imported_by_source(source, "liveportrait_core.driving")
        assert [n for n in names if _under_any(("liveportrait_core.engine",))(n)], source
