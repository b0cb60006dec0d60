"""``benchmark --tracking`` runs end to end and reports what it measured (no speed assertions)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("mediapipe")

from liveportrait_core.cli import main as cli
from liveportrait_core.tools.benchmarks import tracking


def test_tracking_benchmark_reports_passes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tracking, "_SHARED_VIDEO", tmp_path / "missing.mp4")  # the bundled-photo fallback
    out = tmp_path / "trk.json"
    rc = cli.main(["benchmark", "--tracking", "--tracking-frames", "12", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["kind"] == "tracking" and r["frame_size"] == [640, 480] and r["frames"] == 12
    assert {"mesh only (max_faces=1)", "tracker (max_faces=1)"} <= set(r["passes"])
    for p in r["passes"].values():
        assert p["faces_found"] == 12 and p["min_ms"] <= p["median_ms"] <= p["p95_ms"]
    assert "load_average" in r["system"] and "goal" in text and "median" in text


def test_frames_are_640x480_from_any_aspect(tmp_path):
    import cv2
    import numpy as np

    video = tmp_path / "wide.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 100))
    for _ in range(3):
        w.write(np.zeros((100, 320, 3), np.uint8))
    w.release()
    frames, desc = tracking.load_frames(str(video), 5)
    assert len(frames) == 5 and all(f.shape == (480, 640, 3) for f in frames)
    assert "wide.avi" in desc
