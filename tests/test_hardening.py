"""Hardening: bad inputs and faults, through the product's own entry points (docs/HARDENING.md).

Bad inputs go through the real code paths: the character library (image loader, MediaPipe face
finder, preparation with the reduced test networks of liveportrait_core/models/small.py), the weights verifier and
loader behind the engine's real animator factory, the settings loader and the CLI. Faults are driven
through the real ``Engine``; where the real stages would take minutes per frame on a CPU, the engine's
test-double tracker/animator of tests/test_engine.py stand in, and the fault is injected there.
Time is simulated wherever a test is about long durations (face lost for 10 s): nothing sleeps.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from liveportrait_core.cli import main as cli
from liveportrait_core.engine import core as engine_mod
from liveportrait_core.engine.backend import LivePortraitBackend
from liveportrait_core.characters.faces import CharacterError
from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.engine.core import Engine
from liveportrait_core.settings import Settings, SettingsError, load as load_settings
from tests.test_engine import Collect, FakeAnimator, FakeBackend, _engine_threads, _settings, _video, _wait

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "characters" / "astronaut.png"

torch = pytest.importorskip("torch")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


pytestmark = pytest.mark.usefixtures("stop_started_engines")


@pytest.fixture(autouse=True)
def _drop_cli_log_handler():
    """cli.main() logs to the sys.stderr of its call (pytest's capture): detach it afterwards."""
    yield
    from liveportrait_core import logger

    for h in [h for h in logger.handlers if getattr(h, "_lp_cli", False)]:
        logger.removeHandler(h)


def _until(cond, timeout: float = 60.0) -> bool:
    """A deadline for a hang on this busy machine, not a speed assertion."""
    return _wait(cond, timeout)


@pytest.fixture(scope="module")
def small_models():
    from liveportrait_core.models.small import reduced_models

    return reduced_models()


# ================================================================================ bad character images


def _astronaut_bgr() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)


def _write_characters(folder: Path) -> dict[str, str]:
    """Every odd image a user may drop into the folder; returns {file: what it is}."""
    from PIL import Image

    bgr = _astronaut_bgr()
    rgb = bgr[..., ::-1]
    kinds = {}
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    kinds["gray.png"] = "grayscale PNG"
    cv2.imwrite(str(folder / "deep16.png"), bgr.astype(np.uint16) * 257)
    kinds["deep16.png"] = "16-bit PNG"
    Image.fromarray(np.ascontiguousarray(rgb)).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    kinds["cmyk.jpg"] = "CMYK JPEG"
    frames = [Image.fromarray(np.ascontiguousarray(rgb)), Image.new("RGB", rgb.shape[1::-1], (0, 0, 0))]
    frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:], duration=100, loop=0,
                   quality=90)
    kinds["animated.webp"] = "animated WebP (first frame: the face)"
    big = np.full((4320, 7680, 3), 40, np.uint8)
    big[:, 1680:6000] = cv2.resize(bgr, (4320, 4320), interpolation=cv2.INTER_LINEAR)  # an 8K portrait
    cv2.imwrite(str(folder / "huge8k.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    kinds["huge8k.jpg"] = "8K (7680x4320) JPEG"
    yy, xx = np.mgrid[0:512, 0:512]
    alpha = (np.hypot(xx - 256, yy - 230) < 230).astype(np.uint8) * 255
    cv2.imwrite(str(folder / "cutout.png"), np.dstack([bgr, alpha]))
    kinds["cutout.png"] = "PNG with transparency"
    (folder / "notes.png").write_text("this is not an image\n" * 50, encoding="utf-8")
    kinds["notes.png"] = "a text file named .png"
    data = ASTRONAUT.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    kinds["truncated.png"] = "PNG cut off at a third"
    gradient = np.dstack([np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))] * 3)
    cv2.imwrite(str(folder / "noface.jpg"), gradient)
    kinds["noface.jpg"] = "an image without a face"
    (folder / "empty.jpg").write_bytes(b"")
    kinds["empty.jpg"] = "an empty file"
    return kinds


USABLE = {"gray.png", "deep16.png", "cmyk.jpg", "animated.webp", "huge8k.jpg", "cutout.png"}
REJECTED = {"notes.png": "not a readable", "truncated.png": "", "noface.jpg": "no face found",
            "empty.jpg": "the file is empty"}


@pytest.fixture(scope="module")
def odd_characters(tmp_path_factory, small_models):
    folder = tmp_path_factory.mktemp("odd_characters")
    kinds = _write_characters(folder)
    before = {p.name: _sha(p) for p in folder.iterdir()}
    s = Settings()
    s.characters.folder = str(folder)
    s.characters.cache_dir = str(tmp_path_factory.mktemp("cache"))
    s.characters.rescan_s = 0.0
    lib = CharacterLibrary(s, small_models)
    results: dict[str, object] = {}
    for name in lib.names():
        try:
            results[name] = lib.get(name)
        except CharacterError as e:
            results[name] = e
    return SimpleNamespace(folder=folder, kinds=kinds, before=before, lib=lib, results=results)


@pytest.mark.parametrize("name", sorted(USABLE))
def test_odd_but_valid_images_become_characters(odd_characters, name):
    p = odd_characters.results[name]
    assert not isinstance(p, Exception), f"{odd_characters.kinds[name]}: {p}"
    h, w = p.image_bgr.shape[:2]
    assert p.image_bgr.dtype == np.uint8 and p.image_bgr.ndim == 3 and max(h, w) <= 1280
    assert p.face.size_px >= 64
    assert torch.isfinite(p.f_s).all()
    if name == "cutout.png":
        assert p.alpha is not None and p.alpha.min() == 0 and p.alpha.max() == 255
    if name == "huge8k.jpg":
        assert (w, h) == (1280, 720)  # the official resize_to_limit, not 7680x4320 held in memory


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_bad_images_are_rejected_with_a_message_naming_the_file(odd_characters, name):
    e = odd_characters.results[name]
    assert isinstance(e, CharacterError), f"{odd_characters.kinds[name]} was accepted"
    msg = str(e)
    assert name in msg and REJECTED[name] in msg
    assert "Traceback" not in msg and len(msg) < 400


def test_the_library_keeps_working_and_never_touches_the_files(odd_characters):
    lib = odd_characters.lib
    assert set(lib.errors()) >= set(REJECTED)
    assert lib.get("cutout.png").name == "cutout.png"  # still serves the good ones after the bad
    assert {p.name: _sha(p) for p in odd_characters.folder.iterdir()} == odd_characters.before


def test_check_character_reports_every_image_without_crashing(odd_characters, tmp_path, capsys):
    out = tmp_path / "previews"
    rc = cli.main(["check-character", str(odd_characters.folder / "noface.jpg"),
                   str(odd_characters.folder / "notes.png"), str(odd_characters.folder / "cutout.png"),
                   "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1  # not every image has a face
    assert "noface.jpg" in text and "notes.png" in text and "cutout.png" in text
    assert (out / "cutout.crop.png").is_file() and not (out / "noface.crop.png").exists()
    assert {p.name: _sha(p) for p in odd_characters.folder.iterdir()} == odd_characters.before


# ================================================================================ bad weights, through the engine


def _models_dir_with(tmp_path: Path, damage: str) -> Path:
    """The appearance extractor's file in the official place, damaged as ``damage`` says."""
    from liveportrait_core.models.checkpoint import weights
    from liveportrait_core.models.checkpoint.recipe import recipe_weights

    root = tmp_path / "models"
    sd = recipe_weights(("appearance_feature_extractor",))
    (path,) = weights.write_checkpoints(root, sd)
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.9)])
    elif damage == "corrupt":
        data = bytearray(path.read_bytes())
        # the zip directory at the end (flipped bytes inside tensor data load silently: doctor's SHA-256
        # finds those, tests/test_weights.py::test_checksum_match_and_corruption)
        data[-2048:] = np.random.default_rng(1).integers(0, 256, 2048, np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif damage == "wrong-layout":
        bad = dict(sd["appearance_feature_extractor"])
        bad["first.conv.weight"] = np.zeros((32, 3, 3, 3), np.float32)
        torch.save({k: torch.from_numpy(v) for k, v in bad.items()}, path)
    return root


class RealAnimatorBackend(FakeBackend):
    """The product's animator factory (weights verifier, loader, character library); a test tracker."""

    calls = 0

    def create_animator(self, settings):
        self.calls += 1
        return LivePortraitBackend().create_animator(settings)


@pytest.mark.parametrize("damage,says", [("truncated", "truncated or corrupt"), ("corrupt", ""),
                                         ("wrong-layout", "first.conv.weight")])
def test_damaged_weights_put_the_engine_in_error_with_the_file_and_the_fix(tmp_path, damage, says, monkeypatch):
    root = _models_dir_with(tmp_path, damage)
    (bad,) = root.rglob("appearance_feature_extractor.pth")
    before = _sha(bad)
    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    s = _settings(str(_video(tmp_path / "d.avi", 5)), realtime=True, loop=True)
    s.model.models_dir = str(root)
    s.characters.folder = str(REPO / "characters")
    backend = RealAnimatorBackend()
    eng = Engine(s, [Collect()], backend=backend)
    eng.start()
    seen = {}

    def in_error_after_a_retry() -> bool:  # a retry keeps the error on show (listed once while it repeats)
        st = eng.status()
        if st.state == "error" and backend.calls >= 2 and any("inference" in e for e in st.errors):
            seen["status"] = st
        return "status" in seen

    assert _until(in_error_after_a_retry, 120)
    st = seen["status"]
    assert eng.stop(5.0)
    assert "appearance_feature_extractor.pth" in st.message and says in st.message
    assert "download-models" in st.message and "Traceback" not in st.message
    assert st.line().startswith("error:")
    assert _sha(bad) == before  # the user's file is never modified


# ================================================================================ invalid settings


@pytest.mark.parametrize("text,fragment", [
    ("animation: [unclosed\n", "my.yaml"),
    ("animation:\n  regon: exp\n", "animation.regon"),
    ("capture:\n  fps: fast\n", "capture.fps"),
    ("capture:\n  fps: 100000\n", "capture.fps"),
    ("model:\n  device: tpu\n", "model.device"),
    ("- just\n- a list\n", "my.yaml"),
])
def test_invalid_settings_file_is_refused_by_the_cli_with_the_key_and_no_traceback(tmp_path, text, fragment, capsys):
    f = tmp_path / "my.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError):
        load_settings(f)
    assert cli.main(["doctor", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert f.read_text(encoding="utf-8") == text  # never rewritten


def test_invalid_override_is_refused_by_the_cli(capsys):
    assert cli.main(["doctor", "--set", "animation.region=nonsense"]) == 2
    err = capsys.readouterr().err
    assert "animation.region" in err and "nonsense" in err and "allowed" in err


# ================================================================================ faults in the running engine


def test_capture_folder_lost_and_back_with_the_real_source(tmp_path, monkeypatch):
    """The image-folder source disappears mid-run (camera unplugged) and comes back."""
    folder = tmp_path / "cam"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((32, 32, 3), i, np.uint8))
    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    backend, out = FakeBackend(), Collect()
    eng = Engine(_settings(str(folder), realtime=True, loop=True), [out], backend=backend)
    eng.start()
    assert _until(lambda: len(out.frames) >= 3)
    shutil.rmtree(folder)  # reading fails, then reopening fails
    assert _until(lambda: sum(f.index == -1 for f in out.frames) >= 3)  # idle frames keep coming
    lost = eng.status()
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((32, 32, 3), i, np.uint8))
    n = len(out.frames)
    assert _until(lambda: any(f.index >= 0 for f in out.frames[n:]))
    back = eng.status()
    assert eng.stop()
    assert lost.tracking == "idle (no input)" and any("capture" in e for e in lost.errors)
    assert back.state == "running" and back.tracking == "face"


@pytest.mark.parametrize("exc", [
    lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda: ValueError("injected failure"),
], ids=["OutOfMemoryError", "RuntimeError-OOM", "ValueError"])
def test_inference_failures_and_out_of_memory_are_reported_and_the_engine_keeps_going(tmp_path, exc):
    class Failing(FakeAnimator):
        def animate(self, driving, observation):
            if observation.index in (2, 3, 7):
                raise exc()
            return super().animate(driving, observation)

    backend, out = FakeBackend(), Collect()
    backend.create_animator = lambda s: Failing(backend.log)  # type: ignore[method-assign]
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10))), [out], backend=backend)
    eng.start()
    assert eng.wait_finished(120)
    st = eng.status()
    assert eng.stop()
    assert [f.index for f in out.frames] == [0, 1, 4, 5, 6, 8, 9]
    assert len(st.errors) == 3 and all("inference" in e for e in st.errors)
    assert str(exc()) in st.errors[0]
    oom = "out of memory" in str(exc())
    assert (engine_mod.OUT_OF_MEMORY_ADVICE in st.errors[0]) == oom


def test_persistent_out_of_memory_does_not_flood_the_log(tmp_path, caplog):
    class AlwaysOOM(FakeAnimator):
        def animate(self, driving, observation):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    backend, out = FakeBackend(), Collect()
    backend.create_animator = lambda s: AlwaysOOM(backend.log)  # type: ignore[method-assign]
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 60))), [out], backend=backend)
    with caplog.at_level(logging.WARNING, logger="liveportrait_core.engine.core"):
        eng.start()
        assert eng.wait_finished(120)
        st = eng.status()
        assert eng.stop()
    logged = [r for r in caplog.records if "out of memory" in r.getMessage()]
    assert 1 <= len(logged) <= 3  # tracebacks the first three times, then one line per hundred
    assert out.frames == [] and len(st.errors) == engine_mod.MAX_ERRORS and "out of GPU memory" in st.line()


def test_a_failing_recorder_is_retried_while_the_obs_source_keeps_receiving(tmp_path, monkeypatch):
    monkeypatch.setattr("liveportrait_core.outputs.runner.DEFAULT_BACKOFF_S", (0.01, 0.02))
    target = tmp_path / "clip.mp4"
    target.mkdir()  # a folder where the video file should go: OpenCV cannot open it for writing
    s = _settings(str(_video(tmp_path / "d.avi", 20)), realtime=True, loop=True)
    s.outputs.record = str(target)
    eng = Engine(s, backend=FakeBackend())
    got: list[int] = []
    eng.add_frame_callback(lambda f: got.append(f.index))
    eng.start()
    assert _until(lambda: len(got) >= 20 and eng.status().outputs.get("record") is not None
                 and eng.status().outputs["record"].failures >= 2)
    st = eng.status()
    assert eng.stop()
    rec = st.outputs["record"]
    assert rec.state in ("retrying", "running") and str(target) in (rec.message or "")
    assert st.outputs["obs_source"].failures == 0 and st.state == "running"


def test_recording_into_a_missing_folder_is_unavailable_not_retried(tmp_path):
    s = _settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True)
    s.outputs.record = str(tmp_path / "no" / "such" / "clip.mp4")
    eng = Engine(s, backend=FakeBackend())
    got: list[int] = []
    eng.add_frame_callback(lambda f: got.append(f.index))
    eng.start()
    assert _until(lambda: len(got) >= 10 and "record" in eng.status().outputs
                 and eng.status().outputs["record"].state == "unavailable")
    st = eng.status()
    assert eng.stop()
    assert "does not exist" in st.outputs["record"].message and st.outputs["record"].failures <= 1


# ================================================================================ face lost for 10 s


def test_face_lost_for_ten_seconds_idles_then_follows_the_face_again(small_models, tmp_path):
    """Real Animator (reduced test networks), simulated 30 fps clock: 0.4 s face, 10 s none, 0.7 s face."""
    from liveportrait_core.engine.pipeline import Animator

    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    s = Settings()
    s.characters.folder, s.characters.cache_dir, s.characters.rescan_s = str(folder), str(tmp_path / "c"), 0.0
    s.animation.stitching = False  # the recipe stitching MLP adds a large test-number offset; idle is the point
    animator = Animator(small_models, s, CharacterLibrary(s, small_models))
    animator.select_character("astronaut.png")
    x_s = animator.driver.source.x_s
    driving = animator.character.crop_rgb256  # any face crop drives the (random) motion extractor
    rng = np.random.default_rng(0)

    def obs(t: float, found: bool):
        return SimpleNamespace(found=found, timestamp=t, eye_open=None, mouth_open=None, calibrate_now=False)

    fps, t, trace = 30.0, 100.0, []
    for phase, seconds, found in (("face", 0.4, True), ("lost", 10.0, False), ("back", 0.7, True)):
        for _ in range(int(seconds * fps)):
            crop = np.clip(driving.astype(np.int16) + rng.integers(-20, 21, driving.shape), 0, 255).astype(np.uint8)
            x = animator.driving_keypoints(crop if found else None, obs(t, found))
            trace.append((phase, t, animator.idle.weight, float((x - x_s).abs().max())))
            assert torch.isfinite(x).all()
            t += 1.0 / fps
        if phase == "lost":
            frame = animator.animate(None, obs(t, False))  # a whole frame still renders after 10 s
            assert frame.shape[:2] == animator.character.image_bgr.shape[:2] and frame.dtype == np.uint8
    lost = [r for r in trace if r[0] == "lost"]
    settled = [r for r in lost if r[1] - lost[0][1] > s.animation.idle_ease_s + 0.1]
    assert all(w == 1.0 for _, _, w, _ in settled)  # fully idle within the ease time ...
    devs = [d for *_, d in settled]
    assert max(devs) < 0.2 and max(devs) - min(devs) > 1e-4  # ... near neutral, and alive (breath, blinks)
    assert lost[-1][2] == 1.0 and max(devs[-30:]) < 0.2  # still idle and bounded after 10 s: no drift
    back = [r for r in trace if r[0] == "back"]
    assert back[-1][2] == 0.0  # live again within the ease time


# ================================================================================ OBS script reloaded 20 times


def test_obs_script_reloaded_twenty_times_with_the_real_engine(monkeypatch, tmp_path, capsys):
    """The Scripts dialog's reload (unload + load) 20 times with the real Engine (test-double stages):
    every cycle delivers frames, and nothing is left behind: threads, timers, hotkeys, OBS references."""
    import importlib

    from liveportrait_core.obs import controller as ctl
    from tests.fake_obspython import FakeObs
    from tests.test_obs_script import FakeLibobs

    obs = FakeObs()
    monkeypatch.setitem(sys.modules, "obspython", obs)
    engines: list[Engine] = []

    def factory(settings):
        engines.append(Engine(settings, backend=FakeBackend()))
        return engines[-1]

    monkeypatch.setattr(ctl, "default_engine_factory", factory)
    monkeypatch.setattr(ctl, "default_libobs_factory", FakeLibobs)
    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    sys.modules.pop("obs_liveportrait", None)
    monkeypatch.syspath_prepend(str(REPO))
    script = importlib.import_module("obs_liveportrait")
    video = _video(tmp_path / "cam.avi", 10)
    try:
        for cycle in range(20):
            data = obs.obs_data_create()
            script.script_defaults(data)
            data.values["capture.source"] = str(video)
            script.script_load(data)
            c = script._controller
            if c._starter is not None:
                c._starter.join(60)
            libobs = c.libobs
            assert _until(lambda: libobs is not None and len(libobs.frames) >= 3), f"cycle {cycle}: no frames"
            script.script_save(data)
            script.script_unload()
            obs.obs_data_release(data)
            assert script._controller is None and obs.timers == [] and obs.hotkeys == {}
            assert _until(lambda: not _engine_threads(), 30), f"cycle {cycle}: {[t.name for t in _engine_threads()]}"
    finally:
        sys.modules.pop("obs_liveportrait", None)
    assert len(engines) == 20 and not any(e.running for e in engines)
    assert obs.leaked() == []
    assert not _engine_threads()
    assert "Traceback" not in capsys.readouterr().out
