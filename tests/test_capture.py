"""Capture: source kinds, real video files and image folders (pacing, looping, end), camera errors."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveportrait_core.capture import sources as capture
from liveportrait_core.capture.sources import CameraInfo, CaptureError, ImageFolderSource, VideoFileSource, backend_for, describe_source, open_source, resolve_camera
from liveportrait_core.settings import CaptureSettings


def _write_video(path: Path, n: int, fps: float = 25.0) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), i * 10, np.uint8))
    w.release()


def _write_folder(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):  # names that sort wrongly as text: 2 < 10 only with natural order
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((8, 8, 3), i, np.uint8))


def test_source_kinds(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    assert describe_source("0") == "camera" and describe_source("/dev/video2") == "camera"
    assert describe_source(str(tmp_path)) == "folder"
    assert describe_source(str(tmp_path / "v.mp4")) == "video"
    assert describe_source("Logitech BRIO") == "camera-name"


def test_backend_per_os():
    assert backend_for("auto", "win32") == "dshow"
    assert backend_for("auto", "linux") == "v4l2"
    assert backend_for("auto", "darwin") == "avfoundation"
    assert backend_for("msmf", "win32") == "msmf"


def test_video_file_reads_all_frames_then_ends(tmp_path):
    _write_video(tmp_path / "v.avi", 5)
    src = open_source(CaptureSettings(source=str(tmp_path / "v.avi"), loop=False, realtime=False))
    assert isinstance(src, VideoFileSource) and src.finite and src.fps == 25.0
    frames = []
    while (f := src.read()) is not None:
        frames.append(int(f.mean().round()))
    src.close()
    assert frames == [0, 10, 20, 30, 40]


def test_video_file_loops(tmp_path):
    _write_video(tmp_path / "v.avi", 3)
    src = VideoFileSource(tmp_path / "v.avi", CaptureSettings(loop=True, realtime=False))
    values = [int(src.read().mean().round()) for _ in range(7)]
    src.close()
    assert values == [0, 10, 20, 0, 10, 20, 0]


def test_realtime_pacing_follows_the_file_rate(tmp_path):
    _write_video(tmp_path / "v.avi", 4, fps=20.0)
    src = VideoFileSource(tmp_path / "v.avi", CaptureSettings(loop=False, realtime=True))
    t0 = time.perf_counter()
    while src.read() is not None:
        pass
    elapsed = time.perf_counter() - t0
    src.close()
    assert elapsed >= 3 * 0.05 * 0.9  # 4 frames at 20 fps: at least 3 periods (a lower bound, not a speed goal)


def test_image_folder_natural_order_and_end(tmp_path):
    _write_folder(tmp_path / "seq", 12)
    src = open_source(CaptureSettings(source=str(tmp_path / "seq"), loop=False, realtime=False))
    assert isinstance(src, ImageFolderSource)
    values = []
    while (f := src.read()) is not None:
        values.append(int(f[0, 0, 0]))
    assert values == list(range(12))


def test_empty_folder_and_missing_file_say_what_is_wrong(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="holds no images"):
        open_source(CaptureSettings(source=str(tmp_path / "empty")))
    with pytest.raises(CaptureError, match="no such file"):
        open_source(CaptureSettings(source=str(tmp_path / "missing.mp4")))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(CaptureError, match="could not be opened as a video"):
        open_source(CaptureSettings(source=str(tmp_path / "bad.mp4")))


def test_real_driving_video():
    from tests.conftest import shared_path

    path = shared_path("testdata", "driving", "d0.mp4")
    src = open_source(CaptureSettings(source=str(path), loop=False, realtime=False))
    n = 0
    while (f := src.read()) is not None:
        assert f.shape == (512, 512, 3) and f.dtype == np.uint8
        n += 1
    assert n == 78 and src.fps == 25.0


def test_camera_names_resolve_to_indices():
    cams = [CameraInfo(0, "Integrated Camera"), CameraInfo(2, "Logitech BRIO")]
    assert resolve_camera("logitech brio", cams) == 2
    assert resolve_camera("BRIO", cams) == 2
    with pytest.raises(CaptureError, match="0: Integrated Camera"):
        resolve_camera("Elgato", cams)


def test_missing_camera_gives_an_actionable_error(monkeypatch):
    monkeypatch.setattr(capture, "list_cameras", lambda platform=None: [])
    with pytest.raises(CaptureError, match="no camera found"):
        open_source(CaptureSettings(source="Some Cam"))
    with pytest.raises(CaptureError, match="could not be opened"):
        open_source(CaptureSettings(source="57"))  # no such device here


def test_linux_camera_listing_skips_metadata_nodes(tmp_path):
    for node, index, name in (("video0", "0", "Integrated Camera"), ("video1", "1", "Integrated Camera"),
                              ("video10", "0", "Logitech BRIO"), ("video2", "0", "OBS Virtual Camera")):
        (tmp_path / node).mkdir()
        (tmp_path / node / "index").write_text(index + "\n")
        (tmp_path / node / "name").write_text(name + "\n")
    cams = capture._linux_cameras(tmp_path)
    assert [(c.index, c.name) for c in cams] == [(0, "Integrated Camera"), (2, "OBS Virtual Camera"),
                                                 (10, "Logitech BRIO")]
    assert capture._linux_cameras(tmp_path / "none") == []


def test_empty_source_is_not_the_working_folder():
    from liveportrait_core.capture.sources import describe_source
    assert describe_source("") == "camera-name"
    assert describe_source("   ") == "camera-name"
