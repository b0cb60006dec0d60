"""The official animal script's driving (``live_portrait_pipeline_animal.py``), re-derived here in float64 numpy
from its steps and compared with ``drive_keypoints(animal=...)`` on a real motion sequence (the official motion
extractor's output on the wink clip, testdata/motion): absolute driving rotation, expression and translation
with the source's keypoints and scale, minus the reference frame's, times the convex-hull motion multiplier,
plus x_s; then the driving multiplier."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from liveportrait_core.driving.animation import (MotionDriver, RetargetingNets, SourceMotion, animal_motion,
                                                  drive_keypoints)
from liveportrait_core.models.networks.keypoints import MotionInfo
from liveportrait_core.settings import AnimationSettings
from tests.conftest import shared_path


def _frames():
    z = np.load(shared_path("testdata", "motion", "wink.npz"))
    return z["R"].astype(np.float32), z["exp"].astype(np.float32), z["scale"].astype(np.float32), \
        z["t"].astype(np.float32)


def _info(R, exp, scale, t, kp=None) -> MotionInfo:
    z = torch.zeros(1, 1)
    return MotionInfo(pitch=z, yaw=z, roll=z, R=torch.from_numpy(R)[None], exp=torch.from_numpy(exp)[None],
                      t=torch.from_numpy(t)[None], scale=torch.from_numpy(scale).reshape(1, 1),
                      kp=torch.zeros(1, 21, 3) if kp is None else torch.from_numpy(kp)[None])


def _official(kp_s, scale_s, R_s, exp_s, t_s, R, exp, t, i, multiplier=1.0):
    """The animal script's x_d for frame i with frame 0 as x_d0, float64."""
    def x(Ri, ei, ti, scale):
        tt = np.array([ti[0], ti[1], 0.0])
        return scale * (kp_s @ Ri + ei) + tt
    x_s = x(R_s, exp_s, t_s, scale_s)
    x_d0 = x(R[0], exp[0], t[0], scale_s)
    mult = np.sqrt(ConvexHull(x_s).volume) / np.sqrt(ConvexHull(x_d0).volume)
    x_d = (x(R[i], exp[i], t[i], scale_s) - x_d0) * mult + x_s
    return x_s + (x_d - x_s) * multiplier


@pytest.mark.parametrize("multiplier", [1.0, 1.75])  # 1.75: the official animal example's --driving_multiplier
def test_animal_driving_is_the_official_animal_scripts(multiplier):
    R, exp, scale, t = _frames()
    rng = np.random.default_rng(3)
    kp_s = (rng.standard_normal((21, 3)) * 0.3).astype(np.float32)
    src = SourceMotion(_info(R[10], exp[10] * 0.5, scale[10], t[10] * 0.9, kp_s), torch.tensor([[0.3, 0.3]]),
                       torch.tensor([[0.0]]))
    opts = replace(AnimationSettings(), stitching=False, driving_multiplier=multiplier, smoothing=False)
    state = animal_motion(src, _info(R[0], exp[0], scale[0], t[0]))
    for i in (0, 20, 30, 56):
        d = _info(R[i], exp[i], scale[i], t[i])
        ours = drive_keypoints(src, d, d, opts, RetargetingNets(), animal=state)[0].double().numpy()
        want = _official(kp_s.astype(np.float64), float(scale[10, 0]), R[10].astype(np.float64),
                         exp[10].astype(np.float64) * 0.5, t[10].astype(np.float64) * 0.9, R.astype(np.float64),
                         exp.astype(np.float64), t.astype(np.float64), i, multiplier)
        np.testing.assert_allclose(ours, want, rtol=0, atol=2e-5)
    # at the reference the character is its own source picture
    d0 = _info(R[0], exp[0], scale[0], t[0])
    x0 = drive_keypoints(src, d0, d0, replace(opts, driving_multiplier=1.0), RetargetingNets(), animal=state)
    torch.testing.assert_close(x0, src.x_s, rtol=0, atol=1e-6)


def test_the_driver_drives_an_animal_character_the_animal_way_only_when_asked():
    R, exp, scale, t = _frames()
    src = SourceMotion(_info(R[10], exp[10], scale[10], t[10], np.full((21, 3), 0.1, np.float32) +
                             np.eye(21, 3, dtype=np.float32)), torch.tensor([[0.3, 0.3]]), torch.tensor([[0.0]]))
    opts = replace(AnimationSettings(), stitching=False, smoothing=False)
    drv = MotionDriver(RetargetingNets(), opts, additions=False)
    drv.set_source(src)
    drv.set_reference(_info(R[0], exp[0], scale[0], t[0]))
    d = _info(R[30], exp[30], scale[30], t[30])
    human = drv.drive_conditioned(d)
    drv.set_animal(True)
    animal = drv.drive_conditioned(d)
    want = drive_keypoints(src, d, drv.reference, opts, RetargetingNets(), animal=animal_motion(src, drv.reference))
    torch.testing.assert_close(animal, want)
    assert not torch.allclose(animal, human)
    drv.set_animal(False)
    torch.testing.assert_close(drv.drive_conditioned(d), human)


def test_the_animator_asks_for_it_for_animal_characters(tmp_path):
    import shutil

    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.characters import sidecar as sc
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.small import reduced_models
    from liveportrait_core.models.variants import VariantModels
    from liveportrait_core.settings import Settings

    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(shared_path("testdata", "characters", "s25.jpg"), folder / "s25.jpg")
    shutil.copy(shared_path("testdata", "characters", "s25.jpg"), folder / "dog2.jpg")
    face = "face: {left_eye: [172, 233], right_eye: [304, 229], mouth: [222, 335]}\n"
    sc.sidecar_path(folder / "s25.jpg").write_text(face + "settings: {model: {variant: animal}}\n")
    sc.sidecar_path(folder / "dog2.jpg").write_text(
        face + "settings: {model: {variant: animal}, animation: {animal_driving: false}}\n")
    s = Settings()
    s.characters.folder, s.characters.cache_dir = str(folder), str(tmp_path / "c")
    seeds = {"human": 0, "animal": 1}
    variants = VariantModels(s, load=lambda st: reduced_models(seed=seeds[st.model.variant]), free=lambda d: 10 ** 12)
    human = variants.get("human")
    animator = Animator(human, s, CharacterLibrary(s, human, models_for=variants.get), variants=variants)
    animator.select_character("s25.jpg")
    assert animator.driver.animal is True
    animator.select_character("dog2.jpg")  # its sidecar turns it off
    assert animator.driver.animal is False and animator.character.variant == "animal"
