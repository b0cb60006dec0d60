"""Keypoint maths against the official vectors (keypoint_math.npz, motion_extractor.npz)."""
import numpy as np
import torch

from liveportrait_core.models.networks.keypoints import MotionInfo, headpose_to_degrees, rotation_matrix, transform_keypoints
from tests.conftest import load_vectors, rel_err


def t(a):
    return torch.from_numpy(np.asarray(a))


def test_pose_bins_to_degrees():
    v = load_vectors("keypoint_math")
    assert rel_err(headpose_to_degrees(t(v["headpose_logits"])), v["headpose_deg"]) < 1e-5


def test_rotation_matrix_official_convention():
    v = load_vectors("keypoint_math")
    R = rotation_matrix(t(v["rot_pitch_deg"]), t(v["rot_yaw_deg"]), t(v["rot_roll_deg"]))
    assert rel_err(R, v["rot_R"]) < 1e-5


def test_keypoint_transform():
    v = load_vectors("keypoint_math")
    R = rotation_matrix(t(v["tk_pitch_deg"]), t(v["tk_yaw_deg"]), t(v["tk_roll_deg"]))
    x = transform_keypoints(t(v["tk_kp"]), t(v["tk_exp"]), R, t(v["tk_scale"]), t(v["tk_t"]))
    assert rel_err(x, v["tk_x"]) < 1e-5


def test_motion_info_from_raw_outputs():
    v = load_vectors("motion_extractor")
    raw = {k: t(v[f"raw_{k}"]) for k in ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")}
    info = MotionInfo.from_raw(raw)
    for name in ("pitch", "yaw", "roll"):
        assert rel_err(getattr(info, name), v[f"{name}_deg"]) < 1e-5
    assert rel_err(info.R, v["R"]) < 1e-5
    assert rel_err(info.keypoints(), v["x"]) < 1e-5


def test_rotation_is_orthonormal_and_identity_at_zero():
    z = torch.zeros(1)
    assert torch.allclose(rotation_matrix(z, z, z), torch.eye(3)[None])
    a = torch.tensor([10.0, -35.0, 80.0])
    R = rotation_matrix(a, a.flip(0), a * 0.5)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
