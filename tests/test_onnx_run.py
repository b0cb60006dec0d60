"""``run --set model.backend=onnxruntime`` animates the same frames as the torch backend (CPU, recipe weights,
full size: slow). Only how the networks are called differs, so the images must agree to float32 rounding. The
smoothing filters are off: they run on the capture clock (``time.perf_counter`` at each frame), so with them on two
runs of the same backend already differ after the first frame."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from liveportrait_core import paths  # noqa: E402
from liveportrait_core.cli import main as cli  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

ASTRONAUT = paths.DEFAULT_CHARACTERS_DIR / "astronaut.png"


def _frames(folder) -> list[np.ndarray]:
    import cv2

    files = sorted(folder.glob("*.png"))
    return [cv2.imread(str(f), cv2.IMREAD_UNCHANGED).astype(np.float32) for f in files]


@pytest.mark.slow
def test_run_with_the_onnxruntime_backend_matches_torch(recipe_models_dir, tmp_path, capsys, caplog):
    video = shared_path("testdata", "driving", "d0.mp4")
    out = {}
    for backend in ("torch", "onnxruntime"):
        folder = tmp_path / backend
        rc = cli.main(["run", "--character", str(ASTRONAUT), "--input", str(video), "--record", str(folder),
                       "--models-dir", str(recipe_models_dir), "--max-frames", "2", "--set", "model.device=cpu",
                       "--set", f"model.backend={backend}", "--set", f"characters.cache_dir={tmp_path / 'cache'}",
                       # the One Euro filters read the capture clock: with them on, two runs of one backend differ
                       "--set", "tracking.smoothing=false", "--set", "animation.smoothing=false"])
        assert rc == 0, capsys.readouterr().out
        out[backend] = _frames(folder)
    assert "ONNX Runtime: warping_module: CPUExecutionProvider" in caplog.text
    assert len(out["torch"]) == len(out["onnxruntime"]) == 2
    for a, b in zip(out["torch"], out["onnxruntime"]):
        assert a.shape == b.shape
        assert np.abs(a - b).mean() <= 1.0  # mean within 1/255 (measured: see docs/PERFORMANCE.md)
