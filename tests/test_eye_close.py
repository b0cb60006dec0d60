"""Eye-close boost (driving/eye_close.py): a blink, tracked or idle, adds the official eye retargeting's
keypoint change to closed. The MLPs carry the recipe weights (synthetic, test-only numbers): what is checked is
that the keypoints reach exactly the official retargeting's closed-eye change, not how a real face looks."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from liveportrait_core.driving import eye_close
from liveportrait_core.driving.animation import MotionDriver, RetargetingNets, SourceMotion
from liveportrait_core.models.networks.keypoints import MotionInfo
from liveportrait_core.models.networks.stitching import retarget
from liveportrait_core.settings import AnimationSettings
from liveportrait_core.tracking.landmarks import EYE_OFFICIAL_CLOSED, EYE_OFFICIAL_OPEN
from tests.test_animation import recipe_nets


@pytest.fixture(scope="module")
def nets() -> RetargetingNets:
    return recipe_nets()


def _source(seed: int = 0) -> SourceMotion:
    g = torch.Generator().manual_seed(seed)
    info = MotionInfo(pitch=torch.zeros(1, 1), yaw=torch.zeros(1, 1), roll=torch.zeros(1, 1),
                      R=torch.eye(3)[None], kp=torch.randn(1, 21, 3, generator=g) * 0.3,
                      exp=torch.randn(1, 21, 3, generator=g) * 0.01, t=torch.zeros(1, 3), scale=torch.ones(1, 1))
    return SourceMotion(info, torch.tensor([[0.42, 0.40]]), torch.tensor([[0.0]]))


def test_tracked_blink_level_runs_from_the_calibrated_opening_to_closed():
    assert eye_close.tracked_blink((0.35, 0.35), (0.35, 0.35)) == 0.0
    assert eye_close.tracked_blink((EYE_OFFICIAL_CLOSED,) * 2, (0.35, 0.35)) == pytest.approx(1.0)
    assert eye_close.tracked_blink((0.0, 0.0), None) == 1.0  # clamped
    assert eye_close.tracked_blink((EYE_OFFICIAL_OPEN,) * 2, None) == 0.0  # before calibration: the official open
    assert 0.4 < eye_close.tracked_blink((0.18, 0.18), (0.35, 0.35)) < 0.6
    assert eye_close.blink_level(1.0, 0.0, 0.0) == 1.0 and eye_close.blink_level(1.0, 0.5, 1.0) == 0.5


def test_closing_delta_is_the_official_retargeting_to_closed(nets):
    src = _source()
    d = eye_close.closing_delta(nets.eye, src.x_s, src.eye_ratio)
    s = src.eye_ratio
    want = retarget(nets.eye, src.x_s, torch.tensor([[0.42, 0.40, EYE_OFFICIAL_CLOSED]])) - \
        retarget(nets.eye, src.x_s, torch.tensor([[0.42, 0.40, float(s.mean())]]))
    torch.testing.assert_close(d, want)
    assert float(d.abs().max()) > 0


@pytest.mark.parametrize("stitching", [False, True])
def test_a_full_blink_brings_the_eye_keypoints_to_the_official_closed_ratio(nets, stitching):
    """Boost 1 at the bottom of a blink: x_d = the motion's keypoints + the official retargeting from the
    character's own eye ratio to closed (before stitching); open eyes: the keypoints do not change."""
    src = _source()
    opts = replace(AnimationSettings(), smoothing=False, stitching=stitching, eye_close_boost=1.0)
    drv = MotionDriver(nets, opts, additions=False)
    drv.set_source(src)
    plain = drv.drive_conditioned(src.info)
    torch.testing.assert_close(drv.drive_conditioned(src.info, blink=0.0), plain)
    closed = drv.drive_conditioned(src.info, blink=1.0)
    delta = eye_close.closing_delta(nets.eye, src.x_s, src.eye_ratio)
    if stitching:
        from liveportrait_core.models.networks.stitching import stitch
        want = stitch(nets.stitching, src.x_s, src.x_s + delta)
    else:
        want = plain + delta
    torch.testing.assert_close(closed, want, rtol=1e-5, atol=1e-6)
    half = drv.drive_conditioned(src.info, blink=0.5)
    if not stitching:
        torch.testing.assert_close(half, plain + 0.5 * delta, rtol=1e-5, atol=1e-6)


def test_boost_off_changes_nothing(nets):
    src = _source(1)
    drv = MotionDriver(nets, replace(AnimationSettings(), eye_close_boost=0.0), additions=False)
    drv.set_source(src)
    torch.testing.assert_close(drv.drive_conditioned(src.info, blink=1.0), drv.drive_conditioned(src.info))


def test_an_idle_blink_of_a_character_with_the_boost_in_its_sidecar_closes_its_eyes(tmp_path):
    """End to end through the Animator: a sidecar sets eye_close_boost for the character; at the bottom of an
    idle blink its driving keypoints carry the full closing delta (the blink expression's offset aside)."""
    import shutil

    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.small import reduced_models
    from liveportrait_core.settings import Settings
    from tests.conftest import shared_path

    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(shared_path("testdata", "characters", "s23.jpg"), folder / "s23.jpg")
    (folder / "s23.jpg.yaml").write_text("face: {left_eye: [260, 345], right_eye: [395, 340], mouth: [340, 412], "
                                         "box: [185, 215, 265, 265]}\nsettings: {animation: {eye_close_boost: 1.0}}\n")
    s = Settings()
    s.characters.folder, s.characters.cache_dir = str(folder), str(tmp_path / "cache")
    s.animation.smoothing = False
    models = reduced_models()
    animator = Animator(models, s, CharacterLibrary(s, models))
    animator.select_character("s23.jpg")
    assert animator.driver.settings.eye_close_boost == 1.0 and s.animation.eye_close_boost == 0.0

    class Lost:
        found, timestamp = False, 0.0

    animator.driving_keypoints(None, Lost())  # tracking lost from the start: idle (weight ramps to 1)
    animator.idle.update(False, 10.0)
    blink_at = animator.idle._next_blink + animator.idle.style.blink_close_s  # the bottom of the next blink
    assert animator.idle.blink_level(blink_at) == pytest.approx(1.0)
    calls = []
    real = animator.driver.drive_conditioned

    def spy(*a, **k):
        calls.append(k.get("blink", 0.0))
        return real(*a, **k)

    animator.driver.drive_conditioned = spy
    Lost.timestamp = blink_at
    animator.driving_keypoints(None, Lost())
    assert calls == [pytest.approx(1.0)]
    # the blink hotkey too: a live, open-eyed face with the blink expression fully eased in
    animator.idle = type(animator.idle)(0.0, False)
    animator.set_expression("blink", True)
    animator.expressions.ease_s = 0.0
    Lost.timestamp = blink_at + 100.0
    calls.clear()
    animator.driving_keypoints(None, Lost())
    assert calls == [pytest.approx(1.0)]
    src = animator.driver.source
    delta = eye_close.closing_delta(animator.nets.eye, src.x_s, src.eye_ratio)
    torch.testing.assert_close(animator.driver._eye_close, delta)  # boost 1: the full official closing
