"""Character library: stable order, prepare once (disk cache + device LRU), pick up changes, reject bad images.

Uses the full-size networks with the recipe weights (conftest ``recipe_models``: synthetic test-only numbers)
and the real MediaPipe landmark pass on real character images.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from liveportrait_core.characters.faces import CharacterError
from liveportrait_core.characters.library import CharacterLibrary, list_character_files
from liveportrait_core.settings import Settings
from tests.conftest import shared_path


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def folder(tmp_path) -> Path:
    src = shared_path("testdata", "characters")
    d = tmp_path / "chars"
    d.mkdir()
    shutil.copy(src / "s1.jpg", d / "b_woman.jpg")
    shutil.copy(src / "s0.jpg", d / "a_painting.jpg")
    return d


def _settings(folder: Path, tmp_path: Path, **characters) -> Settings:
    s = Settings()
    s.characters.folder = str(folder)
    s.characters.cache_dir = str(tmp_path / "cache")
    s.characters.rescan_s = 0.0
    for k, v in characters.items():
        setattr(s.characters, k, v)
    return s


def test_listing_is_stable_and_filters_file_types(tmp_path):
    a, b = tmp_path / "one", tmp_path / "two"
    a.mkdir(), b.mkdir()
    for name in ("Zed.PNG", "alpha.webp", "beta.jpeg", "notes.txt", ".hidden.png"):
        (a / name).write_bytes(b"x")
    (b / "gamma.jpg").write_bytes(b"x")
    s = Settings()
    s.characters.folder = str(a)
    s.characters.extra_folders = [str(b), str(tmp_path / "missing")]
    assert [p.name for p in list_character_files(s.characters)] == ["alpha.webp", "beta.jpeg", "Zed.PNG", "gamma.jpg"]


def test_switching_prepares_each_character_once_and_restart_uses_the_disk_cache(folder, tmp_path, recipe_models):
    before = _digests(folder)
    lib = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    assert lib.names() == ["a_painting.jpg", "b_woman.jpg"]
    woman = lib.get("b_woman.jpg")
    painting = lib.get("a_painting.jpg")
    assert lib.prepare_calls == 2
    for _ in range(3):  # switching back and forth: no re-preparation, the same device objects
        assert lib.get("b_woman.jpg") is woman
        assert lib.get(0) is painting  # slot 0 (hotkey 1) = first in library order
    assert lib.prepare_calls == 2
    assert tuple(woman.f_s.shape) == (1, 32, 16, 64, 64) and woman.crop_rgb256.shape == (256, 256, 3)
    assert woman.face.size_px > 200

    restarted = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    again = restarted.get("b_woman.jpg")
    assert restarted.prepare_calls == 0  # from the disk cache
    assert np.array_equal(again.f_s.numpy(), woman.f_s.numpy())
    assert np.allclose(again.crop.M_c2o, woman.crop.M_c2o)
    for k in ("R", "exp", "kp", "t", "scale"):
        assert np.array_equal(again.motion[k].numpy(), woman.motion[k].numpy())
    assert _digests(folder) == before  # user files untouched
    assert not any(p.suffix == ".npz" for p in folder.iterdir())


def test_device_cache_is_lru(folder, tmp_path, recipe_models):
    lib = CharacterLibrary(_settings(folder, tmp_path, device_cache_size=1), recipe_models)
    lib.get("a_painting.jpg")
    lib.get("b_woman.jpg")
    assert lib.cached_on_device() == ["b_woman.jpg"]
    lib.get("a_painting.jpg")  # evicted from the device, back from disk: not prepared again
    assert lib.prepare_calls == 2 and lib.cached_on_device() == ["a_painting.jpg"]


def test_changed_added_and_removed_files_are_picked_up(folder, tmp_path, recipe_models):
    lib = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    first = lib.get("b_woman.jpg")
    img = cv2.imread(str(folder / "b_woman.jpg"))
    cv2.imwrite(str(folder / "b_woman.jpg"), cv2.flip(img, 1))  # the user edits the file
    shutil.copy(folder / "a_painting.jpg", folder / "c_new.jpg")
    (folder / "a_painting.jpg").unlink()
    changed = lib.rescan(force=True)
    assert set(changed) == {"a_painting.jpg", "b_woman.jpg", "c_new.jpg"}
    assert lib.names() == ["b_woman.jpg", "c_new.jpg"]
    second = lib.get("b_woman.jpg")
    assert lib.prepare_calls == 2 and second is not first
    assert second.key != first.key
    with pytest.raises(CharacterError, match="unknown character"):
        lib.get("a_painting.jpg")


def test_bad_images_are_rejected_with_a_message_and_the_library_keeps_working(folder, tmp_path, recipe_models):
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    shutil.copy(shared_path("testdata", "characters", "s23.jpg"), folder / "alpaca.jpg")
    shutil.copy(shared_path("testdata", "characters", "s25.jpg"), folder / "dog.jpg")
    tiny = cv2.resize(cv2.imread(str(folder / "b_woman.jpg")), (160, 160), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "tiny.jpg"), tiny)
    lib = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    with pytest.raises(CharacterError, match=r"corrupt\.png.*(PNG|JPEG)"):
        lib.get("corrupt.png")
    with pytest.raises(CharacterError, match=r"alpaca\.jpg: no face scored at least characters.min_face_confidence"):
        lib.get("alpaca.jpg")
    with pytest.raises(CharacterError, match=r"dog\.jpg: no face .* best candidate scored 0\.7"):
        lib.get("dog.jpg")
    with pytest.raises(CharacterError, match=r"tiny\.jpg: the face is only \d+ px across \(at least 64"):
        lib.get("tiny.jpg")
    assert set(lib.errors()) == {"corrupt.png", "alpaca.jpg", "dog.jpg", "tiny.jpg"}
    assert lib.get("b_woman.jpg").name == "b_woman.jpg"  # still works
    assert "b_woman.jpg" not in lib.errors()


def test_cache_hit_brings_the_paste_back_mask_and_a_bad_mask_means_preparing_again(tmp_path, recipe_models,
                                                                                     monkeypatch):
    from liveportrait_core.characters import cache as ch
    from liveportrait_core.driving import crop

    folder = tmp_path / "chars"
    folder.mkdir()
    bgr = cv2.imread(str(shared_path("testdata", "characters", "s1.jpg")))
    alpha = np.tile(np.linspace(255, 64, bgr.shape[1]).astype(np.uint8), (bgr.shape[0], 1))  # see-through right
    cv2.imwrite(str(folder / "woman.png"), np.dstack([bgr, alpha]))
    lib = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    fresh = lib.get("woman.png")
    assert lib.prepare_calls == 1 and fresh.alpha is not None and fresh.crop_alpha512 is not None
    entry = tmp_path / "cache" / f"{fresh.key}.npz"
    with np.load(entry) as z:
        roi, box = z["paste_mask_roi"], z["paste_mask"]
    assert box.dtype == np.uint8 and box.shape == (roi[3] - roi[1], roi[2] - roi[0])
    assert box.size < fresh.image_bgr.shape[0] * fresh.image_bgr.shape[1]  # only the mask's box is stored

    calls = []
    real = crop.PasteBack._mask_in_image
    monkeypatch.setattr(crop.PasteBack, "_mask_in_image", lambda *a: calls.append(1) or real(*a))
    restarted = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    hit = restarted.get("woman.png")
    assert restarted.prepare_calls == 0 and calls == []  # neither the networks nor the mask warp ran
    rng = np.random.default_rng(1)
    anim = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    assert np.array_equal(hit.paste_back.mask_ori, fresh.paste_back.mask_ori)
    assert hit.paste_back.roi == fresh.paste_back.roi
    assert np.array_equal(hit.crop_alpha512, fresh.crop_alpha512)
    assert np.array_equal(hit.ensure_paste_back().paste_bgra(anim, hit.crop_alpha512),
                          fresh.ensure_paste_back().paste_bgra(anim, fresh.crop_alpha512))

    # a mask of the wrong size, a box outside the image, a truncated file: prepared again, never a crash
    good = dict(np.load(entry))
    cache_dir = tmp_path / "cache"
    for bad in ({"paste_mask": good["paste_mask"][:-1]}, {"paste_mask_roi": good["paste_mask_roi"] + 10_000}):
        np.savez(entry, **{**good, **bad})
        assert ch.load_prepared(folder / "woman.png", "woman.png", fresh.key, "cpu", cache_dir) is None
    entry.write_bytes(entry.read_bytes()[:5000])
    assert ch.load_prepared(folder / "woman.png", "woman.png", fresh.key, "cpu", cache_dir) is None
    again = CharacterLibrary(_settings(folder, tmp_path), recipe_models)
    assert np.array_equal(again.get("woman.png").paste_back.mask_ori, fresh.paste_back.mask_ori)
    assert again.prepare_calls == 1 and len(calls) == 1  # re-prepared, the mask computed once, entry rewritten
    assert ch.load_prepared(folder / "woman.png", "woman.png", fresh.key, "cpu", cache_dir) is not None


def test_hotkey_slots_follow_settings(folder, tmp_path, recipe_models):
    s = _settings(folder, tmp_path)
    s.hotkeys.character_slots = ["b_woman.jpg", "a_painting.jpg"]
    lib = CharacterLibrary(s, recipe_models)
    assert lib.resolve(0) == "b_woman.jpg" and lib.resolve(1) == "a_painting.jpg"
    assert lib.resolve("b_woman") == "b_woman.jpg"
    with pytest.raises(CharacterError, match="slot 5"):
        lib.resolve(4)


def test_assess_gives_verdicts_and_advice():
    from liveportrait_core.characters.check import assess

    good = {"face_found": True, "face_size_px": 380, "face_size_ratio": 0.33, "yaw_deg": 3, "pitch_deg": -2,
            "roll_deg": 4, "mouth_open": 0.01, "eye_open": [0.3, 0.28], "confidence": 0.96, "format": "JPEG"}
    assert assess(good) == ("good", [])
    verdict, advice = assess({**good, "mouth_open": 0.2, "face_size_px": 120})
    assert verdict == "usable" and any("mouth" in a for a in advice) and any("200+" in a for a in advice)
    assert assess({**good, "face_size_px": 40})[0] == "unusable"
    assert assess({"face_found": False, "message": "no face found"})[0] == "unusable"
    assert assess({"error": "x.png: the file is empty"}) == ("unusable", ["x.png: the file is empty"])


def test_check_character_command_writes_previews_and_verdicts(tmp_path, capsys):
    from liveportrait_core.cli import main as cli

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("testdata", "characters", "s1.jpg"), folder / "woman.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    before = _digests(folder)
    out = tmp_path / "report"
    rc = cli.main(["check-character", str(folder), "--out", str(out), "--json"])
    rows = {Path(r["file"]).name: r for r in __import__("json").loads(capsys.readouterr().out)}
    assert rc == 1  # one image is unusable
    woman, broken = rows["woman.jpg"], rows["broken.png"]
    assert woman["format"] == "JPEG" and woman["verdict"] in ("good", "usable") and woman["face_found"]
    assert broken["verdict"] == "unusable" and broken["advice"]
    mask = cv2.imread(woman["mask_preview"], cv2.IMREAD_UNCHANGED)
    assert mask.shape == (1145, 1145) and mask.max() == 255  # the image's own size (odd sides kept) and mask.min() == 0
    assert Path(woman["region_preview"]).is_file() and Path(woman["crop_preview"]).is_file()
    assert _digests(folder) == before  # nothing written next to the images


def test_min_face_confidence_setting_lets_a_refused_animal_in(tmp_path):
    """The dog photo s25 scores about 0.72 with the human face detector: refused at the default 0.8,
    accepted once the user lowers ``characters.min_face_confidence`` (applied live, no restart)."""
    import cv2

    from liveportrait_core.characters.faces import CharacterError
    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.settings import Settings
    from tests.conftest import shared_path

    dog = cv2.imread(str(shared_path("testdata", "characters", "s25.jpg")))
    s = Settings()
    s.characters.folder = str(tmp_path)
    s.characters.cache_dir = str(tmp_path / "cache")
    library = CharacterLibrary(s, None)
    with pytest.raises(CharacterError, match="0.80"):
        library.face_finder(dog)
    lowered = Settings()
    lowered.characters.folder, lowered.characters.cache_dir = s.characters.folder, s.characters.cache_dir
    lowered.characters.min_face_confidence = 0.6
    library.update_settings(lowered)
    face = library.face_finder(dog)
    assert 0.6 <= face.confidence < 0.8


# ================================================================================ an explicit choice is never replaced

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "characters" / "astronaut.png"


def _texture(path: Path) -> Path:
    """A real, readable image with no face in it."""
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), np.uint8), (5, 5), 0))
    return path


@pytest.mark.parametrize("bad, reason", [("notimage.png", "not a readable"), ("noface.png", "no face")])
def test_cli_refuses_an_explicit_character_that_cannot_be_used(tmp_path, bad, reason):
    """``run --character notimage.png`` used to animate another image of the folder and exit 0: now a
    one-line error naming the file and the reason, exit status 2 (bad input, nothing started), no
    traceback and no recording, whatever else the folder holds."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(ASTRONAUT, folder / "astronaut.png")  # a usable image beside it must not be taken instead
    if bad == "notimage.png":
        (folder / bad).write_text("hello, I am text")
    else:
        _texture(folder / bad)
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "liveportrait_core", "run", "--character", str(folder / bad),
                        "--record", str(out), "--input", "0", "--max-frames", "1",
                        "--models-dir", str(tmp_path / "no-models")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(errors) == 1 and bad in errors[0] and reason in errors[0], p.stderr
    assert "Traceback" not in p.stderr and "astronaut" not in p.stdout + p.stderr
    assert not out.exists() and "recording" not in p.stdout


@pytest.fixture(scope="module")
def small_models():
    from liveportrait_core.models.small import reduced_models

    return reduced_models()


class _RealAnimatorBackend:
    """The real Animator (reduced test networks) and character library; a tracker that sees no face, so
    frames are the idle animation (the point here is which character is live, not the motion)."""

    def __init__(self, models) -> None:
        self.models = models

    def create_tracker(self, settings):
        from types import SimpleNamespace

        class NoFace:
            def track(self, frame):
                return SimpleNamespace(found=False, timestamp=frame.timestamp, eye_open=None, mouth_open=None,
                                       calibrate_now=False), None

            def no_input(self, timestamp):
                return SimpleNamespace(found=False, timestamp=timestamp, eye_open=None, mouth_open=None,
                                       calibrate_now=False)

            def calibrate(self):
                pass

            def update_settings(self, settings):
                pass

            def close(self):
                pass

        return NoFace()

    def create_animator(self, settings):
        from liveportrait_core.engine.pipeline import Animator

        animator = Animator(self.models, settings, CharacterLibrary(settings, self.models))
        animator.start_character()
        return animator

    def list_characters(self, settings):
        return [p.name for p in list_character_files(settings.characters)]

    def expression_names(self):
        return []


def _wait_status(engine, cond, timeout: float = 120.0):
    """The first status for which ``cond`` holds (a deadline for a hang, not a speed assertion)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = engine.status()
        if cond(st):
            return st
        time.sleep(0.02)
    raise AssertionError(f"status never matched: {engine.status()}")


def test_engine_keeps_a_refused_chosen_character_off_and_says_why(tmp_path, small_models):
    """``characters.active`` (the OBS panel's choice) naming an unusable file used to be swapped silently for
    another file of the folder. Now nothing is animated, and the status names the choice and the reason;
    another pick goes live at once (the networks stay loaded), and a later refused pick keeps the live one."""
    from liveportrait_core.engine.core import Engine

    folder = tmp_path / "chars"
    folder.mkdir()
    (folder / "a_broken.png").write_bytes(b"not an image")  # first in the folder: the old fallback skipped it
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    _texture(folder / "noface.png")
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(ASTRONAUT, frames / "f0.png")
    s = _settings(folder, tmp_path, active="a_broken.png")
    s.capture.source, s.capture.loop, s.capture.realtime = str(frames), True, True
    s.outputs.obs_source = True
    engine = Engine(s, backend=_RealAnimatorBackend(small_models))
    engine.start()
    try:
        st = _wait_status(engine, lambda st: st.character_error)
        assert st.state == "error" and st.character == "" and st.character_chosen == "a_broken.png"
        assert "a_broken.png" in st.character_error and "not a readable" in st.character_error
        assert "a_broken.png" in st.message and st.frames == 0

        engine.select_character("astronaut.png")  # the user picks another one: live at once
        st = _wait_status(engine, lambda st: st.character == "astronaut.png" and st.frames > 0)
        assert st.character_chosen == "astronaut.png" and st.character_error == "" and st.state == "running"

        engine.select_character("noface.png")  # refused: the live character stays, the status says why
        st = _wait_status(engine, lambda st: st.character_chosen == "noface.png")
        assert st.character == "astronaut.png" and "noface.png" in st.character_error
        assert "face" in st.character_error
    finally:
        assert engine.stop(timeout=30.0)


def test_with_no_choice_the_first_usable_character_is_taken_and_the_log_says_so(tmp_path, small_models, caplog):
    from liveportrait_core.engine.pipeline import Animator

    folder = tmp_path / "chars"
    folder.mkdir()
    (folder / "a_broken.png").write_bytes(b"not an image")
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    s = _settings(folder, tmp_path)
    animator = Animator(small_models, s, CharacterLibrary(s, small_models))
    with caplog.at_level("INFO", logger="liveportrait_core.engine.pipeline"):
        animator.start_character()
    assert animator.current_character() == "astronaut.png"
    assert animator.chosen_character == "" and animator.character_error == ""
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "no character chosen" in said and "astronaut.png" in said and "a_broken.png" in said
    animator.close()


def test_a_lowered_threshold_lets_the_refused_chosen_character_go_live(tmp_path, small_models):
    """The OBS slider (``characters.min_face_confidence``) applied live retries the refused choice."""
    dog = shared_path("testdata", "characters", "s25.jpg")
    from liveportrait_core.engine.pipeline import Animator

    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(dog, folder / "dog.jpg")
    s = _settings(folder, tmp_path, active="dog.jpg")
    animator = Animator(small_models, s, CharacterLibrary(s, small_models))
    animator.start_character()
    assert animator.current_character() == "" and "min_face_confidence" in animator.character_error
    lowered = _settings(folder, tmp_path, active="dog.jpg", min_face_confidence=0.6)
    animator.update_settings(lowered)
    assert animator.current_character() == "dog.jpg" and animator.character_error == ""
    animator.close()


def test_new_thresholds_close_the_old_face_finder(tmp_path):
    """Moving the confidence slider makes a new face finder; the old one's MediaPipe graph is closed, not leaked."""
    from liveportrait_core.characters.faces import LazyFaceFinder

    s = Settings()
    s.characters.folder = str(tmp_path)
    s.characters.cache_dir = str(tmp_path / "cache")
    library = CharacterLibrary(s, models=None)
    old = library.face_finder
    assert isinstance(old, LazyFaceFinder)
    closed = []
    old.close = lambda: closed.append(True)  # type: ignore[method-assign]
    s2 = Settings()
    s2.characters.folder, s2.characters.cache_dir = s.characters.folder, s.characters.cache_dir
    s2.characters.min_face_confidence = 0.5
    library.update_settings(s2)
    assert closed == [True] and library.face_finder is not old
