"""Driving maths per frame: from the motion of the webcam face to the character's driving keypoints.

``drive_keypoints`` is the official per-frame maths (LIVEPORTRAIT_FACTS.md section 7, checked against
the official ``driving.npz`` vectors): relative or absolute motion per animation region, the
expression-friendly multiplier, lip normalisation, stitching, eye/lip retargeting and the driving
multiplier; the stitching and retargeting maths is ``models.networks.stitching``'s (beside the MLPs) and the
options are read straight from ``settings.AnimationSettings`` (their defaults live there only).
``MotionDriver`` wraps it with what a live stream needs: a neutral reference taken on
demand (the official code anchors on the first video frame), plus our own additions, each off with its
setting: One Euro smoothing of rotation and expression, and a clamp on head rotation beyond which
LivePortrait distorts. Everything runs in float32 torch on the tensors' device; the only host syncs are
once per reference (expression-friendly convex hull) and once per source (lip-normalisation test).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from typing import Optional, Protocol

import numpy as np
import torch

from liveportrait_core.driving.filters import OneEuroFilter, OneEuroParams
from liveportrait_core.models.checkpoint import layout
from liveportrait_core.models.networks.keypoints import NUM_KP, MotionInfo, rotation_matrix, transform_keypoints
from liveportrait_core.models.networks.stitching import retarget, stitch
from liveportrait_core.settings import AnimationSettings

_log = logging.getLogger(__name__)

#: Expression rows of each animation region (official indices).
LIP_ROWS = (6, 12, 14, 17, 19, 20)
EYE_ROWS = (11, 13, 15, 16, 18)
#: Absolute motion, regions all/exp: (row, components) taken from the driving expression; the rest stays
#: the source's (official selection: rows 0, 7, 10 and some components of 3, 4, 5, 8, 9 keep the source).
_ABSOLUTE_EXP = tuple((r, (0, 1, 2)) for r in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)) + (
    (3, (1,)), (4, (1,)), (5, (2,)), (8, (2,)), (9, (1, 2)))


class Net(Protocol):
    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class RetargetingNets:
    """The three MLPs (official ``stitching_retargeting_module``); a missing one disables its step."""

    stitching: Optional[Net] = None
    lip: Optional[Net] = None
    eye: Optional[Net] = None


@dataclass
class SourceMotion:
    """What the driving maths needs about the character: its motion info, x_s and open ratios."""

    info: MotionInfo  #: motion extractor on the source crop
    eye_ratio: torch.Tensor  #: (1, 2) [left, right] eye open ratios of the source
    lip_ratio: torch.Tensor  #: (1, 1) lip open ratio of the source
    x_s: torch.Tensor = field(init=False)  #: (1, 21, 3) source keypoints

    def __post_init__(self) -> None:
        self.x_s = self.info.keypoints()

    def to(self, device: torch.device | str) -> "SourceMotion":
        return SourceMotion(self.info.to(device), self.eye_ratio.to(device), self.lip_ratio.to(device))


@dataclass
class Offsets:
    """Additions on top of tracking (expressions, idle): expression (1,21,3) and pose (1,3) in degrees.

    The expression offset is added to the expression before the keypoint transform, as the official
    image-editing sliders do; the pose offset (pitch, yaw, roll) rotates the head after the motion.
    """

    exp: torch.Tensor
    pose_deg: torch.Tensor

    @classmethod
    def zeros(cls, device: torch.device | str = "cpu") -> "Offsets":
        return cls(torch.zeros(1, NUM_KP, 3, device=device), torch.zeros(1, 3, device=device))


def lip_normalisation_delta(nets: RetargetingNets, source: SourceMotion,
                            opts: AnimationSettings) -> torch.Tensor | None:
    """Official lip normalisation (once per source): close an open source mouth at neutral.

    Applies only with relative motion and when the source lip ratio reaches the threshold; one host
    sync, here, never per frame.
    """
    if not (opts.normalize_lip and opts.relative_motion) or nets.lip is None:
        return None
    if float(source.lip_ratio.reshape(-1)[0]) < opts.lip_normalize_threshold:
        return None
    ratios = torch.cat([source.lip_ratio.reshape(1, 1), torch.zeros_like(source.lip_ratio.reshape(1, 1))], dim=1)
    return retarget(nets.lip, source.x_s, ratios)


def motion_multiplier(x_s: torch.Tensor, x_d0: torch.Tensor) -> float:
    """Official expression-friendly multiplier sqrt(vol(x_s)) / sqrt(vol(x_d0)) (convex hulls; host side)."""
    from scipy.spatial import ConvexHull

    a = x_s.detach().reshape(NUM_KP, 3).cpu().numpy()
    b = x_d0.detach().reshape(NUM_KP, 3).cpu().numpy()
    return float(np.sqrt(ConvexHull(a).volume) / np.sqrt(ConvexHull(b).volume))


def upload(host: torch.Tensor, device: torch.device, non_blocking: bool = True) -> torch.Tensor:
    """A per-frame host tensor onto ``device`` without making the host wait: on CUDA through pinned memory
    (a copy from pageable memory may first wait for the work queued on the stream: CUDA's documented
    synchronisation behaviour), elsewhere the plain copy (``non_blocking`` as the caller asks)."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device, non_blocking=non_blocking)


@functools.lru_cache(maxsize=8)
def _pose_limit(limits: tuple[float, float, float], device: torch.device) -> torch.Tensor:
    """(3,) pitch/yaw/roll limits in degrees on ``device``, made once per value: built per frame,
    ``torch.tensor(..., device=cuda)`` is a blocking copy that waits for all the queued GPU work."""
    return torch.tensor(limits, dtype=torch.float32).to(device)


@functools.lru_cache(maxsize=4)
def _lip_array(device: torch.device) -> torch.Tensor:
    """(1, 21, 3) the official ``lip_array`` on ``device``, made once per device (per frame it was a blocking
    host-to-device copy)."""
    return torch.tensor(layout.lip_array(), dtype=torch.float32).reshape(1, NUM_KP, 3).to(device)


@functools.lru_cache(maxsize=16)
def _region_mask(rows: tuple, device: torch.device) -> torch.Tensor:
    """(1, 21, 3) bool: the expression entries a region takes from the driving face (made once per device)."""
    m = torch.zeros(1, NUM_KP, 3, dtype=torch.bool)
    m[:, list(rows)] = True
    return m.to(device)


@functools.lru_cache(maxsize=4)
def _absolute_mask(device: torch.device) -> torch.Tensor:
    m = torch.zeros(1, NUM_KP, 3, dtype=torch.bool)
    for r, comps in _ABSOLUTE_EXP:
        m[0, r, list(comps)] = True
    return m.to(device)


def _rotate(R: torch.Tensor, offsets: Offsets | None) -> torch.Tensor:
    if offsets is None:
        return R
    p, y, r = offsets.pose_deg.unbind(-1)
    return R @ rotation_matrix(p, y, r)


def motion_keypoints(source: SourceMotion, d: MotionInfo, ref: MotionInfo, opts: AnimationSettings,
                     ref_exp: torch.Tensor | None = None, offsets: Offsets | None = None, *,
                     single_image: bool = False) -> torch.Tensor:
    """Official steps 2-3: the driving keypoints before stitching, from the motion relative to ``ref``.

    ``ref_exp`` replaces ``ref.exp`` for the lip/eyes/all expression reference; ``single_image``: the
    official quirks for a single driving image (with ``ref_exp``, see ``MotionDriver``).
    """
    s, region = source.info, opts.region
    dev = s.exp.device
    if opts.relative_motion:
        R = (d.R @ ref.R.transpose(1, 2)) @ s.R if region in ("all", "pose") else s.R
        e_ref = ref.exp if ref_exp is None else ref_exp
        if region in ("all", "exp"):
            exp = s.exp + (d.exp - e_ref)
        elif region in ("lip", "eyes"):
            moved = s.exp + (d.exp - e_ref) if not (region == "eyes" and single_image) else s.exp + d.exp
            exp = torch.where(_region_mask(LIP_ROWS if region == "lip" else EYE_ROWS, dev), moved, s.exp)
        else:
            exp = s.exp
        scale = s.scale * (d.scale / ref.scale) if region == "all" else s.scale
        t = s.t + (d.t - ref.t) if region in ("all", "pose") else s.t
    else:
        R = d.R if region in ("all", "pose") else s.R
        if region in ("all", "exp"):
            exp = torch.where(_absolute_mask(dev), d.exp, s.exp)
        elif region in ("lip", "eyes"):
            exp = torch.where(_region_mask(LIP_ROWS if region == "lip" else EYE_ROWS, dev), d.exp, s.exp)
        else:
            exp = s.exp
        scale = s.scale
        t = d.t if region in ("all", "pose") else s.t
    if offsets is not None:
        exp = exp + offsets.exp
    return transform_keypoints(s.kp, exp, _rotate(R, offsets), scale, t)


@dataclass
class AnimalMotion:
    """State of the official animal driving (``live_portrait_pipeline_animal.py``): x_d of the reference frame
    and the motion multiplier sqrt(vol(x_s)) / sqrt(vol(x_d0))."""

    x_d0: torch.Tensor
    multiplier: float


def animal_keypoints(source: SourceMotion, d: MotionInfo, offsets: Offsets | None = None) -> torch.Tensor:
    """The official animal script's keypoints of one driving frame: the driving rotation, expression and
    translation as they are, with the source's canonical keypoints and scale (before the reference is taken off)."""
    s = source.info
    exp = d.exp if offsets is None else d.exp + offsets.exp
    return transform_keypoints(s.kp, exp, _rotate(d.R, offsets), s.scale, d.t)


def animal_motion(source: SourceMotion, reference: MotionInfo) -> AnimalMotion:
    """The animal driving's per-reference state (one host sync, for the convex hulls)."""
    x_d0 = animal_keypoints(source, reference)
    return AnimalMotion(x_d0, motion_multiplier(source.x_s, x_d0))


@dataclass
class ExpressionFriendly:
    """State of the official expression-friendly option: x_d at the reference and the multiplier."""

    x_d0: torch.Tensor
    multiplier: float


def drive_keypoints(source: SourceMotion, d: MotionInfo, ref: MotionInfo, opts: AnimationSettings,
                    nets: RetargetingNets, *, single_image: bool = False, lip0: torch.Tensor | None = None,
                    expression_friendly: ExpressionFriendly | None = None,
                    eye_ratio: torch.Tensor | None = None, lip_ratio: torch.Tensor | None = None,
                    ref_exp: torch.Tensor | None = None, offsets: Offsets | None = None,
                    eye_close: torch.Tensor | None = None, voice: torch.Tensor | None = None,
                    animal: AnimalMotion | None = None) -> torch.Tensor:
    """The official per-frame driving maths (facts section 7, steps 2-6) -> x_d (1, 21, 3).

    ``lip0``: lip-normalisation delta (``lip_normalisation_delta``); ``expression_friendly``: its state
    when that option is on; ``eye_ratio`` (1, 2) / ``lip_ratio`` (1, 1): the driving frame's open
    ratios for retargeting (only the first eye ratio is used, as officially). Of ``opts`` only the official
    options are read (region, relative motion, stitching, retargeting, lip normalisation, driving option and
    multiplier); smoothing and clamps are ``MotionDriver.condition``'s. ``eye_close``: our eye-close boost
    (``driving.eye_close``), a (1, 21, 3) keypoint offset added before stitching, as retargeting deltas are;
    ``voice``: the voice's mouth opening (``driving.voice.voice_lip_delta``), added the same way.
    ``animal``: drive as the official animal script does (its state, ``animal_motion``): the frame's
    ``animal_keypoints`` minus the reference's, times the motion multiplier, plus x_s — in place of steps 2-4
    (regions and the driving option do not apply, as in that script).
    """
    x_s = source.x_s
    if animal is not None:
        x_d = (animal_keypoints(source, d, offsets) - animal.x_d0) * animal.multiplier + x_s
    else:
        x_d = motion_keypoints(source, d, ref, opts, ref_exp, offsets, single_image=single_image)
    if expression_friendly is not None and animal is None:
        x_d = (x_d - expression_friendly.x_d0) * expression_friendly.multiplier + x_s
    use_stitch = opts.stitching and nets.stitching is not None
    retargeting = opts.eye_retargeting or opts.lip_retargeting
    if not retargeting:
        if voice is not None:
            x_d = x_d + voice
        if eye_close is not None:
            x_d = x_d + eye_close
        if use_stitch:
            x_d = stitch(nets.stitching, x_s, x_d)
        if lip0 is not None:
            x_d = x_d + lip0
    else:
        delta = torch.zeros_like(x_s) if voice is None else voice
        if opts.eye_retargeting and nets.eye is not None and eye_ratio is not None:
            ratios = torch.cat([source.eye_ratio.reshape(1, 2), eye_ratio.reshape(1, -1)[:, :1].to(x_s)], dim=1)
            delta = delta + retarget(nets.eye, x_s, ratios)
        if opts.lip_retargeting and nets.lip is not None and lip_ratio is not None:
            ratios = torch.cat([source.lip_ratio.reshape(1, 1), lip_ratio.reshape(1, 1).to(x_s)], dim=1)
            delta = delta + retarget(nets.lip, x_s, ratios)
        if opts.relative_motion:
            # official: the driving motion is replaced by the source plus the retargeting deltas
            base = x_s if offsets is None else motion_keypoints(source, source.info, source.info, opts,
                                                                offsets=offsets, single_image=single_image)
            x_d = base + delta
        else:
            x_d = x_d + delta
        if eye_close is not None:
            x_d = x_d + eye_close
        if use_stitch:
            x_d = stitch(nets.stitching, x_s, x_d)
    return x_s + (x_d - x_s) * opts.driving_multiplier


# ------------------------------------------------------------------------------------------------
# live driver


def angles_from_rotation(R: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) official (transposed) rotation -> (B, 3) pitch, yaw, roll in degrees (|yaw| < 90)."""
    Q = R.transpose(1, 2)  # Rz(roll) Ry(yaw) Rx(pitch)
    yaw = torch.asin((-Q[:, 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(Q[:, 2, 1], Q[:, 2, 2])
    roll = torch.atan2(Q[:, 1, 0], Q[:, 0, 0])
    return torch.rad2deg(torch.stack([pitch, yaw, roll], dim=1))


def with_pose(info: MotionInfo, pyr_deg: torch.Tensor) -> MotionInfo:
    """``info`` with its pose replaced by (B, 3) pitch/yaw/roll degrees (R rebuilt)."""
    p, y, r = (pyr_deg[:, i: i + 1] for i in range(3))
    return replace(info, pitch=p, yaw=y, roll=r, R=rotation_matrix(p, y, r))


def pose_of(info: MotionInfo) -> torch.Tensor:
    return torch.cat([info.pitch.reshape(-1, 1), info.yaw.reshape(-1, 1), info.roll.reshape(-1, 1)], dim=1)


class MotionDriver:
    """Per-frame driving for one character: reference, smoothing, clamps, then the official maths.

    Reads ``settings.animation`` itself (``configure`` takes a snapshot). ``additions=False`` leaves out
    our smoothing and clamp (the official maths alone, as the reference vectors were made);
    ``single_image`` gives the official behaviour for a single driving *image* (lip_array as the
    reference expression, the eyes-region quirk, no expression-friendly multiplier), never a live stream.
    """

    def __init__(self, nets: RetargetingNets, settings: AnimationSettings | None = None, *,
                 additions: bool = True, single_image: bool = False) -> None:
        self.nets = nets
        self.additions = additions
        self.single_image = single_image
        self.source: SourceMotion | None = None
        self.reference: MotionInfo | None = None
        self._lip0: torch.Tensor | None = None
        self._ef: ExpressionFriendly | None = None
        self._eye_close: torch.Tensor | None = None  #: the character's closing delta times the boost
        self.animal = False  #: drive as the official animal script (``set_animal``)
        self._animal: AnimalMotion | None = None  #: its state, made on the first frame after a change
        settings = settings or AnimationSettings()
        self._pose_filter = OneEuroFilter(OneEuroParams.of(settings))
        self._exp_filter = OneEuroFilter(OneEuroParams.of(settings))
        self.configure(settings)

    # -- configuration ------------------------------------------------------------------------------
    def configure(self, settings: AnimationSettings) -> None:
        """New settings: recompute what depends on them, keep the reference."""
        self.settings = replace(settings)  # a snapshot: what depends on it is recomputed only here
        p = OneEuroParams.of(settings)
        self._pose_filter.params = p
        self._exp_filter.params = p
        if self.source is not None:
            self._lip0 = lip_normalisation_delta(self.nets, self.source, self.settings)
        self._eye_close = self._eye_close_delta()
        self._ef = self._expression_friendly()

    def set_source(self, source: SourceMotion) -> None:
        self.source = source
        self._lip0 = lip_normalisation_delta(self.nets, source, self.settings)
        self._eye_close = self._eye_close_delta()
        self._ef = self._expression_friendly()
        self._animal = None
        self.reset_filters()

    def set_reference(self, reference: MotionInfo | None) -> None:
        """The neutral driving face (None: the next driven frame becomes the reference)."""
        self.reference = reference
        self._ef = self._expression_friendly()
        self._animal = None
        self.reset_filters()

    def set_animal(self, on: bool) -> None:
        """Drive as the official animal script does (``drive_keypoints``' ``animal``): for a character on the
        animal weights with ``animation.animal_driving``."""
        self.animal, self._animal = bool(on), None

    def reset_filters(self) -> None:
        self._pose_filter.reset()
        self._exp_filter.reset()

    def _eye_close_delta(self) -> torch.Tensor | None:
        """``eye_close.closing_delta`` of the source times ``animation.eye_close_boost`` (once per source or
        setting; None when off or without the eye MLP)."""
        boost = self.settings.eye_close_boost
        if boost <= 0 or self.source is None or self.nets.eye is None:
            return None
        from liveportrait_core.driving.eye_close import closing_delta  # noqa: PLC0415 - imports tracking

        return closing_delta(self.nets.eye, self.source.x_s, self.source.eye_ratio) * boost

    def _expression_friendly(self) -> ExpressionFriendly | None:
        o = self.settings
        if (o.driving_option != "expression-friendly" or not o.relative_motion or self.single_image
                or self.source is None or self.reference is None):
            return None
        x_d0 = motion_keypoints(self.source, self.reference, self.reference, o)
        return ExpressionFriendly(x_d0, motion_multiplier(self.source.x_s, x_d0))

    # -- per frame ----------------------------------------------------------------------------------
    def condition(self, d: MotionInfo, timestamp: float | None) -> MotionInfo:
        """Our additions: One Euro smoothing of pose and expression, then the rotation clamp (degrees,
        around the reference; absolute motion: around zero)."""
        if not self.additions:
            return d
        a = self.settings
        pose = pose_of(d)
        exp = d.exp
        if a.smoothing and timestamp is not None:
            pose = self._pose_filter(pose, timestamp)
            exp = self._exp_filter(exp, timestamp)
        limit = _pose_limit((a.max_pitch_deg, a.max_yaw_deg, a.max_roll_deg), pose.device)
        centre = pose_of(self.reference) if (a.relative_motion and self.reference is not None) \
            else torch.zeros_like(pose)
        pose = torch.clamp(pose, centre - limit, centre + limit)
        return replace(with_pose(d, pose), exp=exp)

    def drive(self, d: MotionInfo, *, timestamp: float | None = None, eye_ratio: torch.Tensor | None = None,
              lip_ratio: torch.Tensor | None = None, offsets: Offsets | None = None) -> torch.Tensor:
        """Driving keypoints x_d (1, 21, 3) for one driving frame; the first one becomes the reference
        when none is set (official: the first video frame)."""
        if self.source is None:
            raise RuntimeError("MotionDriver.drive: no character source set")
        if self.reference is None:
            self.set_reference(d)
        if self.single_image:
            return self._drive_single_image(d, eye_ratio, lip_ratio, offsets)
        return self.drive_conditioned(self.condition(d, timestamp), eye_ratio=eye_ratio, lip_ratio=lip_ratio,
                                      offsets=offsets)

    def drive_conditioned(self, d: MotionInfo, *, eye_ratio: torch.Tensor | None = None,
                          lip_ratio: torch.Tensor | None = None, offsets: Offsets | None = None,
                          blink: float = 0.0, voice: torch.Tensor | None = None) -> torch.Tensor:
        """The official maths on motion already smoothed and clamped (``condition``), e.g. blended by idle.
        ``blink`` (0 open .. 1 shut, ``eye_close.blink_level``) scales the eye-close boost."""
        ref = self.neutral()
        close = self._eye_close * blink if (self._eye_close is not None and blink > 0.0) else None
        animal = None
        if self.animal and not self.single_image:
            if self._animal is None:  # once per reference or source: the convex hulls' host sync
                self._animal = animal_motion(self.source, ref)
            animal = self._animal
        return drive_keypoints(self.source, d, ref, self.settings, self.nets, single_image=self.single_image,
                               lip0=self._lip0, expression_friendly=self._ef, eye_ratio=eye_ratio,
                               lip_ratio=lip_ratio, offsets=offsets, voice=voice, eye_close=close, animal=animal)

    def neutral(self) -> MotionInfo:
        """The neutral driving motion: the reference, or the source's own before any face was seen."""
        if self.source is None:
            raise RuntimeError("MotionDriver: no character source set")
        return self.reference if self.reference is not None else self.source.info

    def _drive_single_image(self, d: MotionInfo, eye_ratio, lip_ratio, offsets) -> torch.Tensor:
        """Official single driving image: the frame is its own reference, with lip_array as its expression."""
        return drive_keypoints(self.source, d, d, self.settings, self.nets, single_image=True, lip0=self._lip0,
                               eye_ratio=eye_ratio, lip_ratio=lip_ratio, ref_exp=_lip_array(d.exp.device),
                               offsets=offsets)
