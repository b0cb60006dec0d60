"""Shared test fixtures. Reference data lives in ../shared beside the checkout; tests that need it skip
cleanly when it is absent (a user's checkout has none) — unless ``LIVEPORTRAIT_REQUIRE_SHARED=1`` is set
(``.ci/run`` sets it), in which case a missing ``../shared`` fails the run instead of skipping its tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VECTORS = SHARED / "reference" / "vectors"
TESTDATA = SHARED / "testdata"
#: Set by CI: reference data is required, so its absence is a failure rather than a skip.
REQUIRE_SHARED = os.environ.get("LIVEPORTRAIT_REQUIRE_SHARED", "") not in ("", "0")


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SHARED and not SHARED.is_dir():
        pytest.exit(f"LIVEPORTRAIT_REQUIRE_SHARED is set but the reference data folder {SHARED} is missing",
                    returncode=3)


@pytest.fixture(autouse=True)
def _cpu_choice_ignores_the_load(monkeypatch):
    """The CPU choice measures again when a decision made on a busy CPU meets a quiet one (``models.onnx.choice``);
    the test machine's own load (its tests) would make that happen at random between two loads in one test, so
    in-process tests see no load average unless they set one (tests/test_onnx_backend.py does)."""
    monkeypatch.setattr("liveportrait_core.machine.load_per_cpu", lambda: None)


def shared_path(*parts: str) -> Path:
    """A path under ../shared; skips the test when it is not there (fails under ``REQUIRE_SHARED``)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        if REQUIRE_SHARED:
            pytest.fail(f"reference data missing (LIVEPORTRAIT_REQUIRE_SHARED is set): {p}", pytrace=False)
        pytest.skip(f"reference data not available: {p}")
    return p


def load_vectors(name: str) -> dict[str, np.ndarray]:
    """One of the official reference vector archives (skips when absent)."""
    with np.load(shared_path("reference", "vectors", f"{name}.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def rel_err(ours, ref) -> float:
    """The vectors' metric: max|ours - ref| / max|ref|, NaNs in the reference ignored."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    mask = ~np.isnan(ref)
    return float(np.abs(ours[mask] - ref[mask]).max() / np.abs(ref[mask]).max())


@pytest.fixture
def stop_started_engines(monkeypatch):
    """Every engine a test starts is stopped afterwards, even when the test failed half-way, and no engine
    thread may be left: one failure must not leave threads behind that fail every later test."""
    import time

    from liveportrait_core.engine.core import Engine, engine_threads

    started: list = []
    real_start = Engine.start

    def start(self, *a, **k):
        started.append(self)
        return real_start(self, *a, **k)

    monkeypatch.setattr(Engine, "start", start)
    yield
    stopped = all(e.stop(5.0) for e in started)
    deadline = time.monotonic() + 30.0  # a stage may finish a CPU step first: a deadline, not a speed check
    while engine_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopped and not engine_threads(), [t.name for t in engine_threads()]


# --- recipe weights (deterministic synthetic weights: for tests only, never a model) -------------------------


@pytest.fixture(scope="session")
def recipe_state_dicts():
    """``{official module name: {key: torch.Tensor}}`` of the recipe weights (all seven modules)."""
    from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts as make

    return make()


@pytest.fixture(scope="session")
def recipe_models_dir(tmp_path_factory, recipe_state_dicts):
    """A models folder holding the recipe weights in the official file layout (human variant)."""
    from liveportrait_core.models.checkpoint import weights

    root = tmp_path_factory.mktemp("recipe_models")
    weights.write_checkpoints(root, recipe_state_dicts)
    return root


@pytest.fixture(scope="session")
def recipe_models(recipe_models_dir):
    """``loader.LivePortraitModels`` with the recipe weights, on CPU in float32 (eval mode)."""
    from liveportrait_core.models.loader import load_models

    return load_models(recipe_models_dir, device="cpu", precision="fp32")
