"""Real-OBS tests: Debian's obs-studio under Xvfb through the shared obs-harness; skipped cleanly without them."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import SHARED

HARNESS = SHARED / "tools" / "obs-harness" / "run_obs_script.sh"


def pytest_configure(config):
    config.addinivalue_line("markers", "obs_real: runs real OBS Studio headless (needs obs-studio, Xvfb, the harness)")


@pytest.fixture(scope="session")
def harness():
    missing = [n for n in ("obs", "Xvfb") if shutil.which(n) is None]
    if missing:
        pytest.skip(f"real-OBS tests need {', '.join(missing)} (apt-get install obs-studio xvfb ...; "
                    "see docs/OBS.md)")
    if not HARNESS.is_file():
        pytest.skip(f"obs-harness not available at {HARNESS}")
    return HARNESS
