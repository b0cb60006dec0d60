"""Animator end to end: real driving video, real character, full-size networks with the recipe weights
(synthetic test-only numbers: the face they paint is noise, the geometry and compositing are real)."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.driving.expressions import SHAPES
from liveportrait_core.engine.pipeline import Animator, fit_frame
from liveportrait_core.settings import Settings
from tests.conftest import shared_path


def _alpha_character(folder: Path) -> Path:
    """s1.jpg as a PNG with a soft round alpha (transparent corners), written into a temporary folder."""
    img = cv2.imread(str(shared_path("testdata", "characters", "s1.jpg")))
    img = cv2.resize(img, (640, 640), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:640, 0:640]
    r = np.hypot(xx - 320, yy - 300) / 320
    alpha = np.clip((1.05 - r) * 400, 0, 255).astype(np.uint8)
    path = folder / "woman.png"
    cv2.imwrite(str(path), np.dstack([img, alpha]))
    return path


def _settings(folder: Path, tmp_path: Path) -> Settings:
    s = Settings()
    s.characters.folder = str(folder)
    s.characters.cache_dir = str(tmp_path / "cache")
    s.characters.rescan_s = 0.0
    s.animation.smoothing = False
    return s


def _folder_with(tmp_path: Path, *images: Path) -> Path:
    folder = tmp_path / "chars"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    return folder


@pytest.fixture
def s1_settings(tmp_path) -> Settings:
    """Settings whose characters folder holds the real photo s1.jpg (and a cache of its own)."""
    return _settings(_folder_with(tmp_path, shared_path("testdata", "characters", "s1.jpg")), tmp_path)


def _animator(settings: Settings, models) -> Animator:
    """An Animator over ``settings``' folder with its first character live."""
    animator = Animator(models, settings, CharacterLibrary(settings, models))
    animator.select_character(0)
    return animator


def _driving_frames(indices):
    from liveportrait_core.tracking.tracker import FaceTracker

    cap = cv2.VideoCapture(str(shared_path("testdata", "driving", "d0.mp4")))
    frames = []
    i = 0
    while len(frames) < len(indices):
        ok, frame = cap.read()
        assert ok, "d0.mp4 ended early"
        if i in indices:
            frames.append((i, frame))
        i += 1
    cap.release()
    out = []
    with FaceTracker(Settings().tracking) as tracker:
        for i, frame in frames:
            obs = tracker.process(frame, i / 25.0)
            assert obs.found
            out.append((obs, tracker.driving_crop(frame, obs)))
        lost = tracker.no_input(2.0)
    return out, lost


def test_animated_frames_keep_the_character_outside_the_face(tmp_path, recipe_models):
    folder = _folder_with(tmp_path)
    _alpha_character(folder)
    settings = _settings(folder, tmp_path)
    library = CharacterLibrary(settings, recipe_models)
    animator = Animator(recipe_models, settings, library)
    assert animator.select_character("woman.png") == "woman.png"
    c = animator.character
    assert c.alpha is not None
    mask = c.ensure_paste_back().mask_ori
    outside = mask == 0
    assert outside.mean() > 0.2 and (mask > 0.99).mean() > 0.1
    (tracked, lost) = _driving_frames([0, 40])
    (obs0, crop0), (obs1, crop1) = tracked
    animator.driving_keypoints(crop0, obs0)  # frame 0 becomes the neutral reference (no rendering needed)
    frames = [animator.animate(crop1, obs1)]  # W+G take seconds per frame on a CPU: two frames only
    keypoints = [animator.last_keypoints.clone()]
    frames.append(animator.animate(None, lost))  # tracking lost: idle animation
    for f in frames:
        assert f.shape == (640, 640, 4) and f.dtype == np.uint8
        assert np.array_equal(f[..., :3][outside], c.image_bgr[outside])  # untouched outside the mask
        assert np.array_equal(f[..., 3][outside], c.alpha[outside])  # the character's own alpha
        inside = mask > 0.99
        assert np.abs(f[..., 3][inside].astype(int) - c.alpha[inside]).max() <= 8  # alpha composited inside
        assert np.abs(f[..., :3][inside].astype(int) - c.image_bgr[inside]).mean() > 1  # the face was pasted
    assert all(torch.isfinite(k).all() for k in keypoints)
    assert torch.isfinite(animator.last_keypoints).all()


def test_crop_output_without_paste_back(s1_settings, recipe_models, monkeypatch):
    settings = s1_settings
    settings.outputs.paste_back = False
    settings.outputs.width, settings.outputs.height, settings.outputs.fit = 320, 180, "contain"
    animator = _animator(settings, recipe_models)
    crop = np.full((512, 512, 3), 128, np.uint8)
    monkeypatch.setattr(animator, "render_crop", lambda x_d: crop)  # skip W+G: compositing only
    (tracked, lost) = _driving_frames([0])
    frame = animator.animate(tracked[0][1], tracked[0][0])
    assert frame.shape == (180, 320, 4)
    assert frame[:, :70, 3].max() == 0 and frame[90, 160, 3] == 255  # letterboxed, transparent bars


def test_odd_sized_character_keeps_its_exact_size(tmp_path, recipe_models, monkeypatch):
    """outputs.width/height 0: the frame is the character's exact size, odd sides included (564x729)."""
    folder = _folder_with(tmp_path)
    img = cv2.imread(str(shared_path("testdata", "characters", "s1.jpg")))
    cv2.imwrite(str(folder / "odd.png"), cv2.resize(img, (564, 729), interpolation=cv2.INTER_AREA))
    animator = _animator(_settings(folder, tmp_path), recipe_models)
    monkeypatch.setattr(animator, "render_crop", lambda x_d: np.full((512, 512, 3), 128, np.uint8))
    (tracked, lost) = _driving_frames([0])
    assert animator.animate(tracked[0][1], tracked[0][0]).shape == (729, 564, 4)


def test_a_stop_cancels_the_frame_between_the_networks(s1_settings, recipe_models, monkeypatch):
    """On a CPU W and G take seconds each: a stopping engine must not wait for both."""
    from liveportrait_core.engine.cancel import FrameCancelled

    animator = _animator(s1_settings, recipe_models)
    ran: list[str] = []

    def run(name, *args, **kwargs):  # records the order; W's output is all the decoder needs
        ran.append(name)
        return {"out": torch.zeros(1, 256, 64, 64)} if name == "warping_module" else torch.zeros(1, 3, 512, 512)

    monkeypatch.setattr(animator.models, "run", run)
    x_d = animator.driver.source.x_s
    animator.should_stop = lambda: True
    with pytest.raises(FrameCancelled):
        animator.render_crop(x_d)
    assert ran == []
    answers = iter([False, True])
    animator.should_stop = lambda: next(answers)
    with pytest.raises(FrameCancelled):
        animator.render_crop(x_d)
    assert ran == ["warping_module"]
    animator.should_stop = lambda: False
    assert animator.render_crop(x_d).shape == (512, 512, 3)


def test_keypoints_idle_expressions_and_calibration(s1_settings, recipe_models):
    settings = s1_settings
    settings.animation.stitching = False
    settings.animation.idle = False
    settings.animation.max_pitch_deg = settings.animation.max_yaw_deg = settings.animation.max_roll_deg = 90.0
    animator = _animator(settings, recipe_models)
    x_s = animator.driver.source.x_s
    (tracked, lost) = _driving_frames([0, 40])
    (obs0, crop0), (obs1, crop1) = tracked
    obs0, obs1 = replace(obs0, calibrate_now=False), replace(obs1, calibrate_now=False)
    assert torch.allclose(animator.driving_keypoints(crop0, obs0), x_s, atol=1e-5)  # first frame = neutral
    first_reference = animator.driver.reference
    moved = animator.driving_keypoints(crop1, obs1)
    assert animator.driver.reference is first_reference
    assert not torch.allclose(moved, x_s, atol=1e-4)  # frame 40 moves the keypoints
    animator.expressions.ease_s = 0.0
    animator.expressions.set("aaa", True)
    with_aaa = animator.driving_keypoints(crop1, obs1)
    # region "all": the expression is scaled by the relative scale s_s * s_d / s_ref
    scale = animator.driver.source.info.scale * animator._driving_motion(crop1).scale / first_reference.scale
    want = scale * torch.from_numpy(SHAPES["aaa"].exp_array())[None]
    assert torch.allclose(with_aaa - moved, want, atol=1e-5)
    animator.expressions.set("aaa", False)
    animator.expressions.weights(1e9)
    x_idle = animator.driving_keypoints(None, replace(lost, timestamp=5.0))  # lost > idle_ease_s: neutral
    assert torch.allclose(x_idle, x_s, atol=1e-5)
    animator.calibrate()  # the next tracked frame becomes the reference
    assert torch.allclose(animator.driving_keypoints(crop1, replace(obs1, timestamp=10.0)), x_s, atol=1e-5)
    assert animator.driver.reference is not first_reference
    animator.driving_keypoints(crop0, replace(obs0, timestamp=11.0, calibrate_now=True))  # the tracker's pick
    assert torch.equal(animator.driver.reference.exp, animator._driving_motion(crop0).exp)


def test_fit_frame_modes():
    f = np.zeros((100, 200, 4), np.uint8)
    f[..., 3] = 255
    assert fit_frame(f, 0, 0, "contain") is f
    c = fit_frame(f, 100, 100, "contain")
    assert c.shape == (100, 100, 4) and c[0, 50, 3] == 0 and c[50, 50, 3] == 255
    cv = fit_frame(f, 100, 100, "cover")
    assert cv.shape == (100, 100, 4) and cv[..., 3].min() == 255
    assert fit_frame(f, 50, 70, "stretch").shape == (70, 50, 4)


def test_a_stop_during_the_model_load_skips_preparing_characters(recipe_models_dir, s1_settings, monkeypatch):
    """A reload while the weights load (seconds on a CPU) must not go on to prepare characters."""
    from liveportrait_core.engine.backend import FrameCancelled, LivePortraitBackend

    settings = s1_settings
    settings.model.models_dir = str(recipe_models_dir)
    prepared: list[str] = []
    monkeypatch.setattr(CharacterLibrary, "get", lambda self, name: prepared.append(name))
    backend = LivePortraitBackend()
    backend.should_stop = lambda: True
    with pytest.raises(FrameCancelled):
        backend.create_animator(settings)
    assert prepared == []


def test_a_stop_during_the_model_load_gives_up_after_one_step(recipe_models_dir, tmp_path, monkeypatch):
    """The load itself is cancellable: a stop waits for one network to be built, not for all of them."""
    from liveportrait_core.engine.cancel import FrameCancelled
    from liveportrait_core.models import loader

    settings = _settings(_folder_with(tmp_path), tmp_path)
    settings.model.models_dir = str(recipe_models_dir)
    built: list[str] = []
    real_build = loader.build
    monkeypatch.setattr(loader, "build", lambda name: built.append(name) or real_build(name))
    asked = []

    def should_stop() -> bool:  # the stop comes while the first network is being built
        asked.append(len(built))
        return len(built) >= 1

    with pytest.raises(FrameCancelled):
        Animator.from_settings(settings, should_stop=should_stop)
    assert len(built) == 1 and len(asked) == 2  # gave up before the second of the networks
