"""The voice inside the driving maths: the opening goes through the official lip retargeting MLP (silence adds
exactly nothing), vowel shapes are expression offsets, the modes decide per frame, and the result is x_d before
stitching and paste-back. Reduced test networks (models/small.py: random weights, the retargeting MLPs with
the recipe weights): the keypoints are asserted, never a picture."""
from __future__ import annotations

import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.driving.animation import LIP_ROWS
from liveportrait_core.driving.voice import voice_lip_delta
from liveportrait_core.models.networks.stitching import retarget
from liveportrait_core.settings import Settings
from liveportrait_core.voice.features import SILENT, VOWELS, VoiceFeatures
from tests.conftest import REPO

ASTRONAUT = REPO / "characters" / "astronaut.png"


@pytest.fixture(scope="module")
def small_models():
    from liveportrait_core.models.small import reduced_models

    return reduced_models()


@pytest.fixture
def animator(small_models, tmp_path):
    from liveportrait_core.engine.pipeline import Animator

    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    s = Settings()
    s.characters.folder, s.characters.cache_dir, s.characters.rescan_s = str(folder), str(tmp_path / "c"), 0.0
    s.audio.mode = "always"
    a = Animator(small_models, s, CharacterLibrary(s, small_models))
    a.select_character("astronaut.png")
    return a


def loud(vowel: str = "a", level: float = 1.0, t: float = 0.0) -> VoiceFeatures:
    w = [0.0] * len(VOWELS)
    w[VOWELS.index(vowel)] = 1.0
    return VoiceFeatures(timestamp=t, db=-15.0, level=level, gate_open=True, vowels=tuple(w), f1=700, f2=1100)


def obs(t: float, found: bool = False, mouth: float | None = None):
    return SimpleNamespace(found=found, timestamp=t, eye_open=None, mouth_open=mouth, calibrate_now=False)


def with_settings(animator, **audio):
    s = animator.settings.copy()
    for k, v in audio.items():
        setattr(s.audio, k, v)
    animator.update_settings(s)


def test_the_opening_is_the_official_lip_retargeting_delta(animator):
    nets, src = animator.nets, animator.driver.source
    assert voice_lip_delta(nets, src, 0.0) is None  # silence: nothing at all
    c = src.lip_ratio.reshape(1, 1)
    for extra in (0.1, 0.4):
        d = voice_lip_delta(nets, src, extra)
        ref = retarget(nets.lip, src.x_s, torch.cat([c, c + extra], 1)) - retarget(nets.lip, src.x_s, torch.cat([c, c], 1))
        torch.testing.assert_close(d, ref)
    assert voice_lip_delta(nets, src, 0.4).abs().sum() > voice_lip_delta(nets, src, 0.1).abs().sum()


def test_silence_leaves_the_keypoints_as_without_voice_and_loud_speech_moves_the_mouth(animator):
    t = 10.0
    animator.set_voice(None)
    with_settings(animator, mode="off")
    off = animator.driving_keypoints(None, obs(t))
    with_settings(animator, mode="always")
    animator.set_voice(replace(SILENT, timestamp=t))
    silent = animator.driving_keypoints(None, obs(t))
    torch.testing.assert_close(silent, off)  # a closed mouth is exactly the voiceless one
    assert animator.last_mouth.open_ratio == 0.0
    animator.set_voice(loud("a", t=t))
    talking = animator.driving_keypoints(None, obs(t))
    s = animator.settings.audio
    assert animator.last_mouth.open_ratio == pytest.approx(s.max_open)
    moved = (talking - off).abs()[0].sum(dim=1)
    assert moved.max() > 1e-3  # the voice moved keypoints (through stitching, like tracked motion)
    animator.set_voice(loud("a", level=0.5, t=t))
    half = animator.driving_keypoints(None, obs(t))
    assert 0 < (half - off).abs().sum() < (talking - off).abs().sum()  # louder opens wider


def test_vowel_shapes_are_expression_offsets(animator):
    t = 10.0
    with_settings(animator, mode="always", max_open=0.0)  # the shapes alone
    xs = {}
    for v in ("a", "i", "u"):
        animator.set_voice(loud(v, t=t))
        xs[v] = animator.driving_keypoints(None, obs(t))
    assert (xs["i"] - xs["u"]).abs().max() > 1e-3  # spread and pursed lips differ
    with_settings(animator, vowels=False)
    animator.set_voice(loud("i", t=t))
    torch.testing.assert_close(animator.driving_keypoints(None, obs(t)), xs["a"])  # A is the opening alone


def test_fallback_voices_only_a_lost_face_and_mix_adds_what_the_tracked_mouth_lacks(animator):
    rng = np.random.default_rng(0)
    crop = animator.character.crop_rgb256
    t = 10.0
    with_settings(animator, mode="fallback")
    animator.set_voice(loud("a", t=t))
    for _ in range(2):
        animator.driving_keypoints(crop, obs(t, found=True, mouth=0.05))
        t += 0.1
    assert animator.last_mouth.open_ratio == 0.0  # the face is tracked: the voice waits
    for _ in range(8):  # lost: the voice fades in with the idle easing (0.5 s)
        animator.set_voice(loud("a", t=t))
        animator.driving_keypoints(None, obs(t))
        t += 0.1
    assert animator.last_mouth.open_ratio == pytest.approx(animator.settings.audio.max_open)
    with_settings(animator, mode="mix")
    animator.set_voice(loud("a", t=t))
    crop2 = np.clip(crop.astype(np.int16) + rng.integers(-5, 6, crop.shape), 0, 255).astype(np.uint8)
    for _ in range(8):  # found again: the idle weight eases back to 0
        animator.driving_keypoints(crop2, obs(t, found=True, mouth=0.2))
        t += 0.1
    assert animator.last_mouth.open_ratio == pytest.approx(animator.settings.audio.max_open - 0.2, abs=1e-6)
    animator.driving_keypoints(crop2, obs(t, found=True, mouth=0.9))
    assert animator.last_mouth.open_ratio == 0.0  # the tracked mouth is the wider: it alone


def test_always_holds_the_tracked_lip_rows_at_neutral(animator):
    crop = animator.character.crop_rgb256
    t = 10.0
    with_settings(animator, mode="always", max_open=0.0, vowels=False)
    animator.set_voice(replace(SILENT, timestamp=t))
    animator.driving_keypoints(crop, obs(t, found=True, mouth=0.3))
    d = animator._last_live
    held = animator.voice_motion(d, animator.driver.neutral(), animator.last_mouth)
    rows = list(LIP_ROWS)
    torch.testing.assert_close(held.exp[:, rows], animator.driver.neutral().exp[:, rows])
    other = [r for r in range(21) if r not in rows]
    torch.testing.assert_close(held.exp[:, other], d.exp[:, other])
