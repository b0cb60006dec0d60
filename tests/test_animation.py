"""Driving maths (driving/animation.py) against the official vectors and an independent numpy reference.

The MLPs use the recipe weights (test-only synthetic numbers, the ones the vectors were made with).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch

from liveportrait_core.models import networks as models
from liveportrait_core.driving.animation import MotionDriver, Offsets, RetargetingNets, SourceMotion, angles_from_rotation
from liveportrait_core.models.networks.keypoints import MotionInfo, rotation_matrix
from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts, recipe_weights
from liveportrait_core.settings import AnimationSettings
from tests.conftest import load_vectors, rel_err, shared_path


def t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


@lru_cache(maxsize=1)
def recipe_nets() -> RetargetingNets:
    """The three MLPs from the networks package, with the recipe weights (test-only numbers)."""
    sds = recipe_state_dicts(("stitching", "lip", "eye"))
    nets = {}
    for name in ("stitching", "lip", "eye"):
        m = models.build(name)
        m.load_state_dict(sds[name], strict=True)
        nets[name] = m.eval()
    return RetargetingNets(**nets)


def info(v, prefix: str, i: int | None = None) -> MotionInfo:
    sl = (lambda a: a) if i is None else (lambda a: a[i: i + 1])
    return MotionInfo(pitch=t(sl(v[f"{prefix}_pitch_deg"])).reshape(1, 1), yaw=t(sl(v[f"{prefix}_yaw_deg"])).reshape(1, 1),
                      roll=t(sl(v[f"{prefix}_roll_deg"])).reshape(1, 1), R=t(sl(v[f"{prefix}_R"])).reshape(1, 3, 3),
                      kp=t(sl(v[f"{prefix}_kp"])).reshape(1, 21, 3), exp=t(sl(v[f"{prefix}_exp"])).reshape(1, 21, 3),
                      t=t(sl(v[f"{prefix}_t"])).reshape(1, 3), scale=t(sl(v[f"{prefix}_scale"])).reshape(1, 1))


# ------------------------------------------------------------------------------------------------
# official vectors


@pytest.mark.parametrize("case", range(16))
def test_driving_vectors_all_cases(case: int):
    v = load_vectors("driving")
    single_image = int(v["case_n_frames"][case]) == 1
    opts = AnimationSettings(
        region=str(v["opt_animation_region"][case]), relative_motion=bool(v["opt_flag_relative_motion"][case]),
        stitching=bool(v["opt_flag_stitching"][case]), eye_retargeting=bool(v["opt_flag_eye_retargeting"][case]),
        lip_retargeting=bool(v["opt_flag_lip_retargeting"][case]),
        normalize_lip=bool(v["opt_flag_normalize_lip"][case]),
        lip_normalize_threshold=float(v["opt_lip_normalize_threshold"][case]),
        driving_option=str(v["opt_driving_option"][case]),
        driving_multiplier=float(v["opt_driving_multiplier"][case]))
    lip = v["source_lip_ratio_closed"] if v["case_source_lip_closed"][case] else v["source_lip_ratio_open"]
    source = SourceMotion(info(v, "source"), t(v["source_eye_ratio"]), t(lip))
    assert rel_err(source.x_s, v["source_x_s"]) < 1e-5
    driver = MotionDriver(recipe_nets(), opts, additions=False, single_image=single_image)  # official maths only
    driver.set_source(source)
    if opts.driving_option == "expression-friendly" and not single_image:
        driver.drive(info(v, "driving", 0))  # sets the reference
        assert driver._ef.multiplier == pytest.approx(float(v["expression_friendly_motion_multiplier"]), abs=1e-6)
        driver.set_reference(None)
    with torch.no_grad():
        for i in range(int(v["case_n_frames"][case])):
            x_d = driver.drive(info(v, "driving", i), eye_ratio=t(v["driving_eye_ratio"][i: i + 1]),
                               lip_ratio=t(v["driving_lip_ratio"][i: i + 1]))
            err = rel_err(x_d, v["x_d"][case, i][None])
            assert err < 1e-5, f"case {case} {v['case_name'][case]} frame {i}: err {err:.2e}"


# ------------------------------------------------------------------------------------------------
# official motion sequences through an independent numpy reference (facts section 7)


def _np_mlp(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Linear -> ReLU per hidden layer, final Linear (official MLP), in float64."""
    n = len([k for k in weights if k.endswith(".weight")])
    h = x.astype(np.float64)
    for i in range(n):
        h = h @ weights[f"mlp.{2 * i}.weight"].astype(np.float64).T + weights[f"mlp.{2 * i}.bias"]
        if i < n - 1:
            h = np.maximum(h, 0.0)
    return h


class NumpyReference:
    """Straightforward numpy transcription of the official image-source, video-driving loop."""

    def __init__(self, src: dict[str, np.ndarray], region="all", stitching=True, eye=False, lip=False,
                 normalize_lip=False, expression_friendly=False, multiplier=1.0):
        self.w = recipe_weights(("stitching", "lip", "eye"))
        self.s = {k: np.asarray(a, np.float64) for k, a in src.items()}
        self.region, self.stitching, self.eye, self.lip = region, stitching, eye, lip
        self.ef, self.mult = expression_friendly, multiplier
        self.x_s = self.transform(self.s["kp"], self.s["exp"], self.s["R"], self.s["scale"], self.s["t"])
        self.lip0 = None
        if normalize_lip and self.s["lip_ratio"][0] >= 0.03:
            self.lip0 = self.retarget("lip", np.array([self.s["lip_ratio"][0], 0.0]))
        self.d0 = None

    @staticmethod
    def transform(kp, exp, R, scale, t):
        return scale * (kp @ R + exp) + np.array([t[0], t[1], 0.0])

    def retarget(self, name, ratios):
        return _np_mlp(self.w[name], np.concatenate([self.x_s.ravel(), ratios])).reshape(21, 3)

    def stitch(self, x_d):
        out = _np_mlp(self.w["stitching"], np.concatenate([self.x_s.ravel(), x_d.ravel()]))
        x = x_d + out[:63].reshape(21, 3)
        x[:, :2] += out[63:65]
        return x

    def frame(self, d: dict[str, np.ndarray]) -> np.ndarray:
        from scipy.spatial import ConvexHull

        d = {k: np.asarray(a, np.float64) for k, a in d.items()}
        s = self.s
        if self.d0 is None:
            self.d0 = d
        d0 = self.d0
        R = d["R"] @ d0["R"].T @ s["R"] if self.region in ("all", "pose") else s["R"]
        exp = s["exp"].copy()
        moved = s["exp"] + d["exp"] - d0["exp"]
        rows = {"all": range(21), "exp": range(21), "lip": [6, 12, 14, 17, 19, 20],
                "eyes": [11, 13, 15, 16, 18], "pose": []}[self.region]
        for r in rows:
            exp[r] = moved[r]
        scale = s["scale"] * d["scale"] / d0["scale"] if self.region == "all" else s["scale"]
        tt = s["t"] + d["t"] - d0["t"] if self.region in ("all", "pose") else s["t"]
        x_d = self.transform(s["kp"], exp, R, scale, tt)
        if self.ef:
            if not hasattr(self, "x_d0"):
                self.x_d0 = x_d
                self.mm = np.sqrt(ConvexHull(self.x_s).volume) / np.sqrt(ConvexHull(x_d).volume)
            x_d = (x_d - self.x_d0) * self.mm + self.x_s
        if not (self.eye or self.lip):
            if self.stitching:
                x_d = self.stitch(x_d)
            if self.lip0 is not None:
                x_d = x_d + self.lip0
        else:
            x_d = self.x_s.copy()  # relative motion: the driving motion is discarded
            if self.eye:
                x_d += self.retarget("eye", np.array([*s["eye_ratio"], d["eye_ratio"][0]]))
            if self.lip:
                x_d += self.retarget("lip", np.array([s["lip_ratio"][0], d["lip_ratio"][0]]))
            if self.stitching:
                x_d = self.stitch(x_d)
        return self.x_s + (x_d - self.x_s) * self.mult


def _sequence(name: str) -> dict[str, np.ndarray]:
    with np.load(shared_path("testdata", "motion", f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def _source() -> tuple[dict[str, np.ndarray], SourceMotion]:
    v = load_vectors("driving")
    src = {"kp": v["source_kp"][0], "exp": v["source_exp"][0], "R": v["source_R"][0], "scale": v["source_scale"][0, 0],
           "t": v["source_t"][0], "eye_ratio": v["source_eye_ratio"][0], "lip_ratio": v["source_lip_ratio_open"][0]}
    return src, SourceMotion(info(v, "source"), t(v["source_eye_ratio"]), t(v["source_lip_ratio_open"]))


def _seq_info(seq, i: int) -> MotionInfo:
    R = t(seq["R"][i: i + 1])
    pose = angles_from_rotation(R)
    return MotionInfo(pitch=pose[:, 0:1], yaw=pose[:, 1:2], roll=pose[:, 2:3], R=R, kp=torch.zeros(1, 21, 3),
                      exp=t(seq["exp"][i: i + 1]), t=t(seq["t"][i: i + 1]), scale=t(seq["scale"][i: i + 1]))


SEQUENCE_CASES = [
    ("laugh", dict()),
    ("wink", dict(region="eyes")),
    ("open_lip", dict(region="lip", normalize_lip=True)),
    ("shake_face", dict(region="pose", multiplier=1.3)),
    ("talking", dict(expression_friendly=True, normalize_lip=True)),
    ("d1", dict(eye=True, lip=True)),
    ("d2", dict(region="exp", stitching=False, normalize_lip=True)),
    ("d5", dict(lip=True)),
]


@pytest.mark.parametrize("name,kw", SEQUENCE_CASES, ids=[c[0] for c in SEQUENCE_CASES])
def test_motion_sequences_match_numpy_reference(name, kw):
    seq = _sequence(name)
    src, source = _source()
    ref = NumpyReference(src, **kw)
    opts = AnimationSettings(region=kw.get("region", "all"), stitching=kw.get("stitching", True),
                             eye_retargeting=kw.get("eye", False), lip_retargeting=kw.get("lip", False),
                             normalize_lip=kw.get("normalize_lip", False),
                             driving_option="expression-friendly" if kw.get("expression_friendly") else "pose-friendly",
                             driving_multiplier=kw.get("multiplier", 1.0))
    driver = MotionDriver(recipe_nets(), opts, additions=False)
    driver.set_source(source)
    n = min(len(seq["R"]), 40)
    with torch.no_grad():
        for i in range(n):
            d = {k: seq[k][i] for k in ("R", "exp", "scale", "t")}
            d["scale"] = d["scale"][0]
            kwargs = {}
            if "eye_ratio" in seq:
                d["eye_ratio"], d["lip_ratio"] = seq["eye_ratio"][i], seq["lip_ratio"][i]
                kwargs = dict(eye_ratio=t(seq["eye_ratio"][i: i + 1]), lip_ratio=t(seq["lip_ratio"][i: i + 1]))
            want = ref.frame(d)
            got = driver.drive(_seq_info(seq, i), **kwargs)
            err = rel_err(got[0], want)
            assert err < 1e-5, f"{name} frame {i}: err {err:.2e}"
    assert i > 5


def test_sequence_motion_is_not_trivially_the_source():
    """The comparison above means something: real motion moves the keypoints well away from x_s."""
    seq = _sequence("laugh")
    _, source = _source()
    driver = MotionDriver(recipe_nets(), AnimationSettings(stitching=False), additions=False)
    driver.set_source(source)
    with torch.no_grad():
        moved = max(float((driver.drive(_seq_info(seq, i)) - source.x_s).abs().max()) for i in range(len(seq["R"])))
    assert moved > 0.01


# ------------------------------------------------------------------------------------------------
# our additions


def test_angles_from_rotation_inverts_rotation_matrix():
    pyr = torch.tensor([[10.0, -25.0, 5.0], [-30.0, 40.0, -20.0], [0.0, 0.0, 0.0]])
    R = rotation_matrix(pyr[:, 0], pyr[:, 1], pyr[:, 2])
    assert torch.allclose(angles_from_rotation(R), pyr, atol=1e-4)


def _synthetic_source() -> SourceMotion:
    g = torch.Generator().manual_seed(0)
    z = torch.zeros(1, 1)
    return SourceMotion(MotionInfo(pitch=z, yaw=z, roll=z, R=rotation_matrix(z, z, z),
                                   kp=torch.randn(1, 21, 3, generator=g) * 0.3, exp=torch.randn(1, 21, 3, generator=g) * 0.01,
                                   t=torch.zeros(1, 3), scale=torch.ones(1, 1)),
                        torch.tensor([[0.3, 0.3]]), torch.tensor([[0.0]]))


def _posed(source: SourceMotion, pitch=0.0, yaw=0.0, roll=0.0, exp=None) -> MotionInfo:
    p, y, r = (torch.tensor([[a]]) for a in (pitch, yaw, roll))
    return MotionInfo(pitch=p, yaw=y, roll=r, R=rotation_matrix(p, y, r), kp=source.info.kp,
                      exp=source.info.exp if exp is None else exp, t=torch.zeros(1, 3), scale=torch.ones(1, 1))


def test_rotation_clamp_limits_head_turn_relative_to_reference():
    source = _synthetic_source()
    settings = AnimationSettings(stitching=False, smoothing=False, max_pitch_deg=30, max_yaw_deg=20, max_roll_deg=30)
    driver = MotionDriver(RetargetingNets(), settings)
    driver.set_source(source)
    driver.set_reference(_posed(source, yaw=10.0))
    clamped = driver.drive(_posed(source, yaw=70.0))
    limit = driver.drive(_posed(source, yaw=30.0))  # 10 + 20: exactly at the limit
    assert torch.allclose(clamped, limit, atol=1e-6)
    inside = driver.drive(_posed(source, yaw=25.0))
    assert not torch.allclose(inside, limit, atol=1e-4)


def test_smoothing_damps_jitter_but_follows_a_hold():
    source = _synthetic_source()
    settings = AnimationSettings(stitching=False, smoothing=True, min_cutoff=1.0, beta=0.0, max_pitch_deg=90.0,
                                 max_yaw_deg=90.0, max_roll_deg=90.0)  # the clamps as loose as the settings allow
    driver = MotionDriver(RetargetingNets(), settings)
    driver.set_source(source)
    driver.set_reference(_posed(source))
    raw, smooth = [], []
    for i in range(60):
        yaw = 3.0 * (-1) ** i  # +-3 degrees of frame-to-frame jitter at 30 fps
        raw.append(float(angles_from_rotation(_posed(source, yaw=yaw).R)[0, 1]))
        x = driver.drive(_posed(source, yaw=yaw), timestamp=i / 30)
        smooth.append(x)
    jitter_smooth = float((smooth[-1] - smooth[-2]).abs().max())
    unsmoothed = MotionDriver(RetargetingNets(), AnimationSettings(stitching=False), additions=False)
    unsmoothed.set_source(source)
    unsmoothed.set_reference(_posed(source))
    jitter_raw = float((unsmoothed.drive(_posed(source, yaw=3.0)) - unsmoothed.drive(_posed(source, yaw=-3.0))).abs().max())
    assert jitter_smooth < 0.3 * jitter_raw
    for i in range(60, 150):  # a held pose is reached
        x = driver.drive(_posed(source, yaw=15.0), timestamp=i / 30)
    assert torch.allclose(x, unsmoothed.drive(_posed(source, yaw=15.0)), atol=1e-4)


def test_reference_frame_reproduces_the_source_and_calibration_moves_it():
    source = _synthetic_source()
    driver = MotionDriver(RetargetingNets(), AnimationSettings(stitching=False), additions=False)
    driver.set_source(source)
    first = _posed(source, pitch=5.0, yaw=-8.0)
    assert torch.allclose(driver.drive(first), source.x_s, atol=1e-5)  # first frame = neutral
    turned = _posed(source, yaw=12.0)
    assert not torch.allclose(driver.drive(turned), source.x_s, atol=1e-3)
    driver.set_reference(None)  # calibrate: the next frame is the new neutral
    assert torch.allclose(driver.drive(turned), source.x_s, atol=1e-5)


def test_offsets_add_expression_and_tilt():
    source = _synthetic_source()
    driver = MotionDriver(RetargetingNets(), AnimationSettings(stitching=False), additions=False)
    driver.set_source(source)
    off = Offsets.zeros()
    off.exp[0, 14, 1] = 0.02
    x = driver.drive(_posed(source), offsets=off)
    diff = x - source.x_s
    assert float(diff[0, 14, 1]) == pytest.approx(0.02, abs=1e-6)
    assert float(diff.abs().sum()) == pytest.approx(0.02, abs=1e-5)
    tilt = Offsets.zeros()
    tilt.pose_deg[0, 2] = 10.0
    x = driver.drive(_posed(source), offsets=tilt)
    expected = source.info.scale * ((source.info.kp @ source.info.R @ rotation_matrix(*(torch.tensor([v]) for v in (0.0, 0.0, 10.0))))
                                    + source.info.exp)
    assert torch.allclose(x, expected, atol=1e-5)


def test_driver_reads_the_animation_settings_and_keeps_a_snapshot():
    """The driving options are ``settings.AnimationSettings`` itself (defaults there only), copied at
    ``configure``: a later change to the caller's object takes effect only through ``configure``."""
    driver = MotionDriver(RetargetingNets())
    assert driver.settings == AnimationSettings()
    mine = AnimationSettings(region="pose", driving_multiplier=1.5)
    driver.configure(mine)
    mine.region = "lip"
    assert driver.settings == AnimationSettings(region="pose", driving_multiplier=1.5)
