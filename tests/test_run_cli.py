"""``run``/``record``/``preview``/``demo`` commands: argument mapping, clear failures, and one end-to-end run
with full-size networks (recipe weights written by the test: test-only synthetic numbers) on a real
driving video into an MP4."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveportrait_core.cli import main as cli
from liveportrait_core import paths
from liveportrait_core.cli.commands import run as run_cmd
from liveportrait_core.engine.core import engine_threads
from liveportrait_core.settings import Settings
from tests.conftest import shared_path

ASTRONAUT = paths.DEFAULT_CHARACTERS_DIR / "astronaut.png"


def _args(argv: list[str], command: str = "run") -> argparse.Namespace:
    return cli.build_parser().parse_args([command, *argv])


def test_arguments_map_onto_settings(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    args = _args(["--character", str(ASTRONAUT), "--input", str(video), "--record", str(tmp_path / "o.mp4"),
                  "--ndi", "Studio A", "--spout", "--models-dir", str(tmp_path), "--max-frames", "3"])
    s = run_cmd.apply_arguments(args, cli.load_settings(args))
    assert s.characters.folder == str(ASTRONAUT.parent) and s.characters.active == "astronaut.png"
    assert s.capture.source == str(video) and s.capture.realtime is False and s.capture.loop is False
    assert s.outputs.record == str((tmp_path / "o.mp4").resolve())
    assert s.outputs.ndi and s.outputs.ndi_name == "Studio A" and s.outputs.spout and s.outputs.spout_name == "LivePortrait"
    assert s.model.models_dir == str(tmp_path.resolve()) and args.max_frames == 3
    live = run_cmd.apply_arguments(_args(["--input", "0", "--realtime"]), Settings())
    assert live.capture.realtime is True  # a webcam keeps its own settings


def test_record_command_takes_the_output_as_positional(tmp_path):
    args = _args([str(tmp_path / "frames"), "--input", "0"], "record")
    assert run_cmd.apply_arguments(args, Settings()).outputs.record == str((tmp_path / "frames").resolve())


def test_missing_character_file_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["run", "--character", str(tmp_path / "nope.png"), "--input", "0"])
    assert rc == 2 and "no such image file" in capsys.readouterr().err


def test_missing_models_exit_with_the_fix(tmp_path, capsys):
    video = shared_path("testdata", "driving", "d0.mp4")
    rc = cli.main(["run", "--character", str(ASTRONAUT), "--input", str(video), "--models-dir", str(tmp_path),
                   "--record", str(tmp_path / "o.mp4"), "--max-frames", "2"])
    out = capsys.readouterr()
    assert rc == 1 and "error:" in out.err and "download-models" in out.err + out.out
    assert not engine_threads()


def test_no_input_at_all_ends_the_command_with_the_reason(capsys, monkeypatch):
    from liveportrait_core.engine import core as engine_mod
    from tests.test_engine import FakeBackend

    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    monkeypatch.setattr(engine_mod, "LivePortraitBackend", FakeBackend)  # the camera is what fails here
    monkeypatch.setattr(run_cmd, "NO_INPUT_S", 0.3)
    rc = cli.main(["run", "--character", str(ASTRONAUT), "--input", "57"])
    err = capsys.readouterr().err
    assert rc == 1 and "no input: camera 57" in err and "could not be opened" in err


def test_demo_without_webcam_drives_with_a_clip_of_the_bundled_photo(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("liveportrait_core.capture.sources.list_cameras", lambda platform=None: [])
    monkeypatch.setattr("liveportrait_core.paths.user_cache_dir", lambda: tmp_path / "cache")
    rc = cli.main(["demo", "--record", str(tmp_path / "o.mp4"), "--models-dir", str(tmp_path / "none"),
                   "--max-frames", "1"])
    out = capsys.readouterr()
    clip = tmp_path / "cache" / "demo-driving-v1.avi"
    assert "driving with a clip of the bundled photo" in out.out and str(clip) in out.out
    assert clip.is_file() and rc == 1 and "download-models" in out.err + out.out  # no weights in that folder
    assert not engine_threads()


def test_demo_clip_shows_a_real_face_that_moves(tmp_path):
    import cv2

    from liveportrait_core.capture import demo_clip
    from liveportrait_core.settings import Settings
    from liveportrait_core.tracking.tracker import FaceTracker

    path = demo_clip.demo_clip(folder=tmp_path)
    assert demo_clip.demo_clip(folder=tmp_path) == path and not list(tmp_path.glob("*.part*"))
    cap = cv2.VideoCapture(str(path))
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    assert len(frames) == demo_clip.FPS * demo_clip.SECONDS and frames[0].shape == (480, 640, 3)
    rolls, centres = [], []
    with FaceTracker(Settings().tracking) as tracker:
        for i, frame in enumerate(frames):  # every frame, as a live run plays it
            obs = tracker.process(frame, i / demo_clip.FPS)
            assert obs.found, f"no face in demo frame {i}"
            rolls.append(abs(obs.roll))
            centres.append(obs.crop.rect.centre)
    assert max(rolls) > 8.0  # the head tilts (about 12 degrees at most)
    assert np.ptp(np.array(centres)[:, 0]) > 40  # and moves sideways


def test_end_to_end_real_video_full_size_networks(recipe_models_dir, tmp_path, monkeypatch, capsys):
    """2 frames of a real driving video through the real tracker and full-size networks into an MP4:
    every frame arrives, in order; stats are sane; no engine thread is left running. The two frames are
    far apart in the video (another head pose), so their animated frames differ and the order shows."""
    from liveportrait_core.engine.core import Engine

    cap = cv2.VideoCapture(str(shared_path("testdata", "driving", "d0.mp4")))
    video = tmp_path / "frames"  # an image folder: frames 0 and 60 of the video
    video.mkdir()
    for i in range(61):
        ok, img = cap.read()
        assert ok, "d0.mp4 ended early"
        if i in (0, 60):
            cv2.imwrite(str(video / f"{i:03d}.png"), img)
    cap.release()
    seen: list[tuple[int, np.ndarray]] = []
    statuses = []
    orig_start, orig_stop = Engine.start, Engine.stop

    def start(self):  # observe the published frames through the public callback API
        self.add_frame_callback(lambda f: seen.append((f.index, f.bgra.copy())))
        orig_start(self)

    def stop(self, timeout=1.0):
        statuses.append(self.status(window_s=float("inf")))
        return orig_stop(self, timeout)

    monkeypatch.setattr(Engine, "start", start)
    monkeypatch.setattr(Engine, "stop", stop)
    out_mp4 = tmp_path / "out.mp4"
    rc = cli.main(["run", "--character", str(ASTRONAUT), "--input", str(video), "--record", str(out_mp4),
                   "--models-dir", str(recipe_models_dir), "--max-frames", "2", "--set", "model.device=cpu"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "frames published: 2" in printed
    assert [i for i, _ in seen] == [0, 1]
    cap = cv2.VideoCapture(str(out_mp4))
    recorded = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        recorded.append(img.astype(np.float32))
    h, w = cv2.imread(str(ASTRONAUT), cv2.IMREAD_UNCHANGED).shape[:2]
    assert len(recorded) == 2 and recorded[0].shape == (h, w, 3)
    published = []
    for _, bgra in seen:
        a = bgra[..., 3:].astype(np.float32) / 255.0
        published.append(bgra[..., :3].astype(np.float32) * a)  # the recorder composites over black
    err = np.array([[np.abs(r - p).mean() for p in published] for r in recorded])
    assert np.all(np.diag(err) < 12.0), err  # each recorded frame is its published frame (lossy mp4v codec)
    assert np.abs(published[0] - published[1]).mean() > 1.0  # another pose, another animated frame
    assert list(err.argmin(axis=1)) == [0, 1], err  # recorded in the order published
    st = statuses[-1]
    assert st.frames == 2 and st.dropped == 0 and st.errors == []
    assert 0 < st.latency_p50_ms <= st.latency_p95_ms
    assert st.stages["inference"].count == 2 and st.stages["tracking"].count == 2
    assert st.tracking == "face"
    assert not engine_threads()


def test_benchmark_report_names_the_bottleneck_and_the_setting(capsys):
    from liveportrait_core.tools.benchmarks import pipeline as bench
    from liveportrait_core.settings import Settings

    stage = lambda ms: {"median_ms": ms, "p95_ms": ms * 1.2, "mean_ms": ms, "min_ms": ms * 0.9, "n": 3}  # noqa: E731
    info = {"cpu": "Test CPU", "cpu_cores": 2, "ram_gb": 8, "os": "Linux", "python": "3.11", "torch": "2",
            "device": "cuda:0", "precision": "fp16", "load_average": [0.1], "torch_threads": 2}
    s = Settings()
    r = {"frames": 3, "warmup": 1, "weights": "recipe (synthetic)", "system": info, "input": "x", "character": "a.png",
         "faces_found": 3, "model_load_s": 1.0, "inference_cpu_s": 0.1,
         "stages": {"capture": stage(1.0), "tracking": stage(20.0), "inference": stage(12.0), "publish": stage(0.5)},
         "inference_parts": {"warping_module": stage(5.0)}, "latency_ms": 33.5, "throughput_fps": 50.0,
         "target_fps": 60, "bottleneck": {"stage": "tracking", "part": "", "share": 0.6,
                                          "advice": bench._advice("tracking", "", info, s)},
         "official_cpu_frame_s": 7.7, "vs_official": 641.7}
    table = bench.format_table(r)
    assert "recipe (synthetic)" in table and "tracking" in table and "warping_module" in table
    assert "bottleneck: tracking" in table and "capture.width/height" in table and "7.7 s per frame" in table
    assert "model.device=cuda" in bench._advice("inference", "spade_generator", {**info, "device": "cpu"}, s)
    from liveportrait_core.models import loader
    for fast_bf16 in (True, False):  # bf16 is advised only where the CPU runs it natively
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(loader, "cpu_has_fast_bf16", lambda v=fast_bf16: v)
            advice = bench._advice("inference", "spade_generator", {**info, "device": "cpu", "precision": "fp32"}, s)
        assert ("bf16" in advice) == fast_bf16
    assert "fp16" in bench._advice("inference", "x", {**info, "precision": "fp32"}, s)
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--help"])
    assert "--compare-official" in capsys.readouterr().out


def test_benchmark_never_calls_other_weights_official(recipe_models_dir, tmp_path):
    from liveportrait_core.tools.benchmarks.pipeline import weights_label

    assert "not byte-identical to the official" in weights_label(str(recipe_models_dir), "human")
    assert "not byte-identical to the official" in weights_label(str(tmp_path), "human")  # no files at all


def test_a_fatal_start_error_is_printed_once_without_traceback(tmp_path, capsys):
    """Missing weights used to be printed three times (log with traceback, error line, summary)."""
    video = shared_path("testdata", "driving", "d0.mp4")
    rc = cli.main(["run", "--character", str(ASTRONAUT), "--input", str(video), "--models-dir", str(tmp_path),
                   "--record", str(tmp_path / "o.mp4"), "--max-frames", "2"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 1 and text.count("weights are not usable") == 1, text
    assert "Traceback" not in text
    assert "recording: nothing recorded" in out.out and f"recording: {tmp_path / 'o.mp4'}" not in out.out
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("name", ["out.png", "frame.JPG"])
def test_record_to_an_image_name_is_refused_naming_the_options(tmp_path, capsys, name):
    """``--record out.png`` used to create a folder named out.png."""
    rc = cli.main(["run", "--character", str(ASTRONAUT), "--input", "0", "--record", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot record to {name}" in err and ".mp4" in err and "folder" in err
    assert not (tmp_path / name).exists()


def test_summary_lists_only_the_outputs_that_were_on(capsys):
    from liveportrait_core.engine.stats import EngineStatus, OutputStatus, StageStatus

    st = EngineStatus(frames=3, stages={"inference": StageStatus(count=3)},
                      outputs={"obs_source": OutputStatus("obs_source", sent=3),
                               "ndi": OutputStatus("ndi", state="unavailable", message="cyndilib missing"),
                               "record": OutputStatus("record", sent=3)})
    s = Settings()
    s.outputs.record = "/tmp/x.mp4"
    run_cmd._print_summary(st, 1.0, s, True, preview=False)
    out = capsys.readouterr().out
    assert "obs_source" not in out and "preview window" not in out
    assert "output ndi: 0 sent" in out and "cyndilib missing" in out and "recording: /tmp/x.mp4 (3 frames)" in out
    run_cmd._print_summary(st, 1.0, s, True, preview=True)
    assert "preview window: 3 frames shown" in capsys.readouterr().out
