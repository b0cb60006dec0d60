"""Real-OBS tests: Debian's obs-studio under Xvfb through the shared obs-harness; skipped cleanly without them."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import SHARED

HARNESS = SHARED / "tools" / "obs-harness" / "run_obs_script.sh"


@pytest.fixture(scope="session")
def harness():
    missing = [n for n in ("obs", "Xvfb") if shutil.which(n) is None]
    if missing:
        pytest.skip(f"real-OBS tests need {', '.join(missing)} (apt-get install obs-studio xvfb ...; "
                    "see docs/OBS.md)")
    if not HARNESS.is_file():
        pytest.skip(f"obs-harness not available at {HARNESS}")
    return HARNESS
