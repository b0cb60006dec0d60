"""Named expressions: each moves what its name says, eases in and out, and several combine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from liveportrait_core.driving.animation import MotionDriver, RetargetingNets, SourceMotion
from liveportrait_core.driving.expressions import CHARACTER_LEFT, CHARACTER_RIGHT, NAMES, SHAPES, Expressions
from liveportrait_core.models.networks.keypoints import MotionInfo, rotation_matrix
from liveportrait_core.settings import AnimationSettings

BRIEF_NAMES = {"smile", "wink_left", "wink_right", "blink", "aaa", "eee", "woo", "eyebrows_up", "pupils_left",
               "pupils_right", "pupils_up", "pupils_down", "head_tilt"}


def shape(name: str) -> np.ndarray:
    return SHAPES[name].exp_array()


def test_every_named_expression_exists():
    assert BRIEF_NAMES <= set(NAMES)
    for n in NAMES:
        s = SHAPES[n]
        assert np.abs(s.exp_array()).max() > 0 or any(s.pose_deg), n


def test_unknown_expression_is_rejected_with_the_known_names():
    with pytest.raises(KeyError, match="smile"):
        Expressions(ease_s=0.15).set("grin_wide", True)


def test_blink_closes_both_eyes_and_winks_one():
    blink = shape("blink")
    for eye in (CHARACTER_LEFT, CHARACTER_RIGHT):
        assert blink[eye["upper"], 1] > 0.01  # upper lid down (y points down)
        assert blink[eye["lower"], 1] < 0  # lower lid up
    for name, eye, other in (("wink_left", CHARACTER_LEFT, CHARACTER_RIGHT),
                             ("wink_right", CHARACTER_RIGHT, CHARACTER_LEFT)):
        w = shape(name)
        assert w[eye["upper"], 1] > 0.01 and w[eye["lower"], 1] < 0
        assert w[other["upper"]].tolist() == [0, 0, 0] and w[other["lower"]].tolist() == [0, 0, 0]


def test_mouth_shapes():
    aaa, eee, woo, smile = shape("aaa"), shape("eee"), shape("woo"), shape("smile")
    assert aaa[19, 1] > 0.05  # lower lip well down: the mouth opens
    assert 0 < eee[19, 1] < aaa[19, 1] and 0 < woo[19, 1] < aaa[19, 1]  # vowels open less than "aaa"
    assert eee[20, 2] < aaa[20, 2]  # grin: lips back, not forward
    assert woo[17, 2] < aaa[17, 2] and woo[14, 1] > aaa[14, 1]  # pursed
    assert smile[14, 1] < 0 and smile[3, 1] < 0 and smile[7, 1] < 0  # corners and cheeks up


def test_gaze_brows_and_tilt_directions():
    for name, comp, sign in (("pupils_left", 0, +1), ("pupils_right", 0, -1), ("pupils_up", 1, -1),
                             ("pupils_down", 1, +1)):
        s = shape(name)
        assert sign * s[11, comp] > 0 and sign * s[15, comp] > 0, name
    brows = shape("eyebrows_up")
    assert brows[1, 1] < 0 and brows[2, 1] < 0
    tilt = SHAPES["head_tilt"]
    assert tilt.pose_deg[2] != 0 and tilt.pose_deg[:2] == (0.0, 0.0) and not tilt.exp_array().any()


def test_easing_in_and_out():
    ex = Expressions(ease_s=0.2)
    assert ex.offsets(0.0) is None
    ex.set("smile", True, strength=0.5)
    w = [float(ex.weights(t)[NAMES.index("smile")]) for t in (0.0, 0.1, 0.2, 0.3)]
    assert w[0] == 0.0 and 0.0 < w[1] < 0.5 and w[2] == pytest.approx(0.5) and w[3] == pytest.approx(0.5)
    off = ex.offsets(0.35)
    assert torch.allclose(off.exp[0], 0.5 * torch.from_numpy(shape("smile")), atol=1e-7)
    ex.set("smile", False)
    assert 0.0 < float(ex.weights(0.45)[NAMES.index("smile")]) < 0.5
    assert ex.offsets(0.6) is None  # fully eased out


def test_several_at_once_add_up():
    ex = Expressions(ease_s=0.0)
    ex.set("smile", True)
    ex.set("head_tilt", True, 0.5)
    ex.set("pupils_up", True)
    off = ex.offsets(1.0)
    want = shape("smile") + shape("pupils_up")
    assert np.allclose(off.exp[0].numpy(), want, atol=1e-7)
    assert off.pose_deg[0, 2].item() == pytest.approx(0.5 * SHAPES["head_tilt"].pose_deg[2])
    assert set(ex.active()) == {"smile", "head_tilt", "pupils_up"}
    ex.clear()
    assert ex.offsets(2.0) is None


def test_expression_moves_the_driving_keypoints_by_its_offset():
    g = torch.Generator().manual_seed(1)
    z = torch.zeros(1, 1)
    info = MotionInfo(pitch=z, yaw=z, roll=z, R=rotation_matrix(z, z, z), kp=torch.randn(1, 21, 3, generator=g) * 0.3,
                      exp=torch.zeros(1, 21, 3), t=torch.zeros(1, 3), scale=torch.full((1, 1), 1.5))
    driver = MotionDriver(RetargetingNets(), AnimationSettings(stitching=False), additions=False)
    driver.set_source(SourceMotion(info, torch.tensor([[0.3, 0.3]]), torch.tensor([[0.0]])))
    ex = Expressions(ease_s=0.0)
    ex.set("aaa", True)
    x = driver.drive(info, offsets=ex.offsets(0.0))
    assert torch.allclose(x - driver.source.x_s, 1.5 * torch.from_numpy(shape("aaa"))[None], atol=1e-6)
