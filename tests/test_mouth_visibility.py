"""The hidden-mouth cue (tracking/mouth_visibility.py) on real driving videos, and the voice fallback it drives.

Real frames: ../shared/testdata/driving (people talking, grinning, nodding). Occluders are pasted over the mouth
where the *unoccluded* frame's landmarks put it (tests/mouth_occluders.py: a hand in the person's own skin
colour, a dark microphone, a mug). The tracker keeps finding the face behind each of them, so only the cue can
tell the voice that the mouth is gone.
"""
from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from liveportrait_core.engine.stats import EngineStatus
from liveportrait_core.settings import TrackingSettings
from liveportrait_core.tracking import mouth_visibility as mv
from liveportrait_core.tracking.debug_draw import draw_observation
from liveportrait_core.tracking.observation import FaceObservation
from liveportrait_core.voice.mouth import CLOSED, MouthControls, apply_mode
from tests.conftest import shared_path
from tests.mouth_occluders import OCCLUDERS
from tests.test_voice_driving import animator, loud, small_models, with_settings  # noqa: F401 - fixtures too

CLIPS = ("d0.mp4", "d3.mp4", "d10.mp4", "d13.mp4", "d14.mp4")
REFERENCE_AT = 10  #: the neutral reference is asked for here (the calibrate hotkey)
OCCLUDED = (20, 50)  #: frames [start, end) with the occluder
N_FRAMES = 65


def _read(name: str, n: int | None = None):
    """(fps, frames...) of a driving clip, decoded one at a time (d13 is 720×1280: not all kept in memory)."""
    cap = cv2.VideoCapture(str(shared_path("testdata", "driving", name)))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        i = 0
        while n is None or i < n:
            ok, f = cap.read()
            if not ok:
                break
            yield fps, f
            i += 1
    finally:
        cap.release()


def _tracker(**tracking):
    pytest.importorskip("mediapipe")
    from liveportrait_core.tracking.tracker import FaceTracker

    return FaceTracker(TrackingSettings(max_faces=1, **tracking))


def _track(name: str, n: int | None, edit=None, reference_at: int | None = REFERENCE_AT, **tracking):
    """The observations of the first ``n`` frames; ``edit(i, frame)`` changes a frame before it is tracked."""
    out = []
    with _tracker(auto_calibrate=reference_at is None, **tracking) as t:
        for i, (fps, f) in enumerate(_read(name, n)):
            if i == reference_at:
                t.calibrate()
            out.append(t.process(edit(i, f) if edit else f, i / fps))
    return out


@functools.lru_cache(maxsize=None)
def _clean_landmarks(name: str) -> tuple[np.ndarray, ...]:
    """Where the mouth is in the unoccluded frames (to place the occluders)."""
    obs = _track(name, N_FRAMES)
    assert all(o.found for o in obs), name
    return tuple(o.landmarks_raw for o in obs)


# ---------------------------------------------------------------------------------------------- real frames
#: one case per occluder runs fast; the rest of the 5 clips × 3 occluders are marked slow
QUICK = {("d13.mp4", "hand"), ("d10.mp4", "microphone"), ("d14.mp4", "mug")}


@pytest.mark.parametrize("name, occluder", [
    pytest.param(c, o, marks=() if (c, o) in QUICK else pytest.mark.slow) for c in CLIPS for o in sorted(OCCLUDERS)])
def test_an_occluder_over_the_mouth_hides_it_within_a_few_frames(name, occluder):
    where = _clean_landmarks(name)
    paste = OCCLUDERS[occluder]
    obs = _track(name, N_FRAMES, lambda i, f: paste(f, where[i]) if OCCLUDED[0] <= i < OCCLUDED[1] else f)
    a, b = OCCLUDED
    assert all(o.found for o in obs), "the tracker keeps the face behind the occluder (else fallback would do)"
    assert obs[REFERENCE_AT].calibrate_now and obs[REFERENCE_AT].mouth_match is not None
    assert all(o.mouth_visible for o in obs[REFERENCE_AT:a]), [o.mouth_match for o in obs[REFERENCE_AT:a]]
    first = next(i for i in range(a, b) if not obs[i].mouth_visible)
    assert first - a <= mv.HIDE_FRAMES, f"hidden only {first - a + 1} frames after the {occluder} came"
    hidden = [o for o in obs[first:b]]
    assert not any(o.mouth_visible for o in hidden)
    assert sum(o.mouth_hidden == "covered" for o in hidden) >= 0.9 * len(hidden), {o.mouth_hidden for o in hidden}
    assert np.median([o.mouth_match for o in obs[a:b]]) < 0.4  # well below the threshold (0.45), not just under
    back = next(i for i in range(b, N_FRAMES) if obs[i].mouth_visible)
    assert back - b <= mv.SHOW_FRAMES + 2
    assert all(o.mouth_visible for o in obs[back:])


@pytest.mark.slow
def test_unoccluded_clips_keep_the_mouth_visible_end_to_end_talking_included(capsys):
    """Every frame of every clip after the automatic neutral reference: the measured false-positive rate
    (docs/TRACKING.md quotes it) stays under 1 % per clip, and the wide-open mouths are all seen."""
    rates, wide, total = {}, 0, 0
    for name in CLIPS:
        obs = _track(name, None, reference_at=None)
        ref = next(i for i, o in enumerate(obs) if o.calibrate_now)
        after = obs[ref + 1:]
        assert all(o.found and o.mouth_match is not None for o in after), name  # the appearance cue really ran
        assert all(o.mouth_visible for o in obs[:ref + 1]), name  # before it: light, edges and pitch only
        hidden = sum(not o.mouth_visible for o in after)
        rates[name] = (hidden, len(after), min(o.mouth_match for o in after))
        talking = [o for o in after if o.mouth_open > 0.3]  # a wide-open mouth (speech, a laugh)
        assert all(o.mouth_visible for o in talking), name
        wide += len(talking)
        total += len(after)
        assert hidden <= 0.01 * len(after), (name, rates[name])
    assert wide >= 50, "the clips hold enough talking to say it is not taken for a hidden mouth"
    with capsys.disabled():
        print(f"\nmouth hidden on unoccluded frames: {sum(h for h, _, _ in rates.values())}/{total}; "
              + ", ".join(f"{k} {h}/{n} (lowest match {m:.2f})" for k, (h, n, m) in rates.items()))


@pytest.mark.parametrize("name", ["d13.mp4", "d10.mp4"])
def test_a_mouth_below_the_frame_edge_is_out_of_frame(name):
    """The person moves down until the frame's bottom edge crosses the mouth (the frame keeps its size)."""
    where = _clean_landmarks(name)

    def lower(i, f):
        if not OCCLUDED[0] <= i < OCCLUDED[1]:
            return f
        shift = f.shape[0] - int(where[i][list(mv.INNER_LIP), 1].mean())  # the lips' middle on the bottom edge
        out = np.zeros_like(f)
        out[shift:] = f[:-shift]
        return out

    obs = _track(name, N_FRAMES, lower)
    during = obs[OCCLUDED[0] + 4:OCCLUDED[1]]  # (a jump: the tracker may take a frame or two)
    found = [o for o in during if o.found]
    assert len(found) >= 0.8 * len(during)
    assert all(not o.mouth_visible and o.mouth_hidden == "out of frame" for o in found)
    assert all(o.mouth_visible for o in obs[OCCLUDED[1] + mv.SHOW_FRAMES + 3:])


def test_looking_down_beyond_the_threshold_hides_the_mouth():
    """d3: from +4.5° at the reference the head goes down to −9° (frames 100-170). With the threshold at 10° the
    frames pitched further down than that read "looking down" (after the hysteresis), and none of the others."""
    thr = 10.0
    obs = _track("d3.mp4", 180, reference_at=5, mouth_pitch_down_deg=thr)
    ref_pitch = obs[5].pitch
    down = [o.pitch < ref_pitch - thr for o in obs]
    looking = [not o.mouth_visible and o.mouth_hidden == "looking down" for o in obs]
    assert sum(looking) >= 10, "the clip's nod must reach the threshold for the test to mean anything"
    for i, is_down in enumerate(looking):
        if is_down:  # each such frame is down, or lies within the hysteresis after one that is
            assert any(down[max(0, i - mv.SHOW_FRAMES):i + 1]), i
        if all(down[max(0, i - mv.HIDE_FRAMES + 1):i + 1]) and i >= mv.HIDE_FRAMES:
            assert not obs[i].mouth_visible, i
    default = _track("d3.mp4", 180, reference_at=5)
    assert not any(o.mouth_hidden == "looking down" for o in default)  # 13.5° < the default 25°


def test_darkness_hides_the_mouth_and_dim_light_does_not():
    rng = np.random.default_rng(0)

    def light(gain, noise):
        def edit(i, f):
            if not OCCLUDED[0] <= i < OCCLUDED[1]:
                return f
            return np.clip(f * gain + rng.normal(0.0, noise, f.shape), 0, 255).astype(np.uint8)
        return edit

    dark = _track("d10.mp4", N_FRAMES, light(0.08, 2.0))[OCCLUDED[0] + mv.HIDE_FRAMES:OCCLUDED[1]]
    assert all(o.found for o in dark) and all(o.mouth_hidden == "too dark" for o in dark)
    dim = _track("d10.mp4", N_FRAMES, light(0.35, 3.0))
    assert all(o.mouth_visible for o in dim)  # a third of the light and sensor noise: still seen


def test_a_lighting_change_after_the_reference_does_not_hide_the_mouth():
    """Light from one side (a lamp switched on) and a warmer colour: the correlation has no gain or offset."""
    def relight(i, f):
        if i < OCCLUDED[0]:
            return f
        ramp = np.linspace(0.55, 1.25, f.shape[1], dtype=np.float32)[None, :, None]
        warm = np.array([0.8, 1.0, 1.15], np.float32)  # BGR
        return np.clip(f * ramp * warm + 10, 0, 255).astype(np.uint8)

    obs = _track("d13.mp4", N_FRAMES, relight)
    assert all(o.found and o.mouth_visible for o in obs)
    assert min(o.mouth_match for o in obs[OCCLUDED[0]:]) > 0.6


def test_the_check_can_be_switched_off():
    where = _clean_landmarks("d13.mp4")
    obs = _track("d13.mp4", 40, lambda i, f: OCCLUDERS["hand"](f, where[i]) if i >= 20 else f, mouth_check=False)
    assert all(o.mouth_visible and o.mouth_match is None for o in obs)


# ---------------------------------------------------------------------------------------------- the cue alone
@pytest.fixture(scope="module")
def frame_and_landmarks():
    (fps, frame), = list(_read("d13.mp4", 1))
    return frame, _clean_landmarks("d13.mp4")[0]


def test_hysteresis_needs_frames_in_a_row(frame_and_landmarks):
    frame, lmk = frame_and_landmarks
    cue = mv.MouthVisibility(TrackingSettings())
    cue.update(frame, lmk, 0.0, reference=True)
    seen = [cue.update(frame, lmk, p).visible for p in (-40, -40, 0, -40, -40, -40, 0, 0, 0, 0, -40, 0, 0, 0, 0, 0)]
    # two frames down are not enough, the third in a row hides; one frame back up is not enough, the fifth shows
    assert seen == [True, True, True, True, True, False, False, False, False, False, False, False, False, False,
                    False, True]
    cue.reset()  # a lost face starts visible
    assert cue.update(frame, lmk, 0.0).visible


def test_the_reference_pitch_is_the_neutral_one(frame_and_landmarks):
    """A webcam below the face reads the neutral head as chin-up: looking down is measured from there."""
    frame, lmk = frame_and_landmarks
    cue = mv.MouthVisibility(TrackingSettings(mouth_pitch_down_deg=25.0))
    cue.update(frame, lmk, 15.0, reference=True)
    assert all(cue.update(frame, lmk, -8.0).visible for _ in range(5))  # 23° below the reference
    assert [cue.update(frame, lmk, -12.0).reason for _ in range(3)][-1] == "looking down"  # 27° below


def test_no_reference_no_appearance_cue_but_darkness_still_counts(frame_and_landmarks):
    frame, lmk = frame_and_landmarks
    cue = mv.MouthVisibility(TrackingSettings())
    covered = OCCLUDERS["microphone"](frame, lmk)
    assert all(cue.update(covered, lmk, 0.0).visible for _ in range(5))  # nothing to compare with yet
    assert not cue.has_reference
    dark = (frame * 0.05).astype(np.uint8)
    assert [cue.update(dark, lmk, 0.0).reason for _ in range(3)][-1] == "too dark"


def test_the_observation_and_status_say_mouth_hidden():
    obs = FaceObservation(found=True, timestamp=0.0, image_size=(64, 64), landmarks=np.full((478, 2), 32, np.float32),
                          mouth_visible=False, mouth_hidden="covered", mouth_match=0.2)
    drawn = draw_observation(np.zeros((64, 64, 3), np.uint8), obs)
    plain = draw_observation(np.zeros((64, 64, 3), np.uint8), dataclasses.replace(obs, mouth_visible=True,
                                                                                   mouth_hidden=""))
    assert (drawn != plain).any()  # the overlay's last line differs ("mouth hidden: covered", in red)
    line = EngineStatus(state="running", frames=10, fps=30.0, tracking="mouth hidden (covered)").line()
    assert "mouth hidden (covered)" in line and "face mouth" not in line
    assert FaceObservation(found=False, timestamp=0.0, image_size=(1, 1)).mouth_hidden == ""


# ---------------------------------------------------------------------------------------------- the voice
VOICE = MouthControls(open_ratio=0.4, vowels=(0.5, 0.0, 0.0, 0.0, 0.0))


def test_fallback_voices_a_hidden_mouth_with_its_fade():
    assert apply_mode("fallback", VOICE, 0.0, 0.1, hidden_weight=0.0) == CLOSED  # seen: the tracked mouth alone
    half = apply_mode("fallback", VOICE, 0.0, 0.1, hidden_weight=0.5)
    assert half.open_ratio == pytest.approx(0.2) and half.vowels[0] == pytest.approx(0.25)
    assert half.hold_tracked_mouth == pytest.approx(0.5)  # the invented lips give way as the voice comes in
    full = apply_mode("fallback", VOICE, 0.0, 0.1, hidden_weight=1.0)
    assert full.open_ratio == pytest.approx(0.4) and full.hold_tracked_mouth == 1.0
    lost = apply_mode("fallback", VOICE, 1.0, None, hidden_weight=1.0)  # a lost face: as before
    assert lost.open_ratio == pytest.approx(0.4)


def test_mix_counts_a_hidden_mouths_tracked_opening_as_zero():
    assert apply_mode("mix", VOICE, 0.0, 0.3).open_ratio == pytest.approx(0.1)  # seen: what it lacks
    hidden = apply_mode("mix", VOICE, 0.0, 0.3, hidden_weight=1.0)
    assert hidden.open_ratio == pytest.approx(0.4) and hidden.hold_tracked_mouth == 1.0
    assert apply_mode("mix", VOICE, 0.0, 0.3, hidden_weight=0.5).open_ratio == pytest.approx(0.4 - 0.15)
    assert apply_mode("always", VOICE, 0.0, 0.3, hidden_weight=0.0).hold_tracked_mouth == 1.0


def test_the_animator_voices_a_tracked_face_whose_mouth_is_hidden(animator):
    """Through the pipeline: the face stays found, the mouth goes hidden, the voice eases in over the idle
    easing's time (the idle weight itself stays 0: the head still follows the webcam), and out again."""
    crop = animator.character.crop_rgb256
    with_settings(animator, mode="fallback")
    ease = animator.settings.animation.idle_ease_s
    t, opens, holds = 10.0, [], []

    def frame(visible: bool) -> None:
        nonlocal t
        animator.set_voice(loud("a", t=t))
        animator.driving_keypoints(crop, SimpleNamespace(found=True, timestamp=t, eye_open=None, mouth_open=0.05,
                                                         calibrate_now=False, mouth_visible=visible))
        opens.append(animator.last_mouth.open_ratio)
        holds.append(animator.last_mouth.hold_tracked_mouth)
        t += 0.05

    for _ in range(3):
        frame(True)
    assert opens == [0.0, 0.0, 0.0]
    steps = int(round(ease / 0.05))
    for _ in range(steps + 2):
        frame(False)
    voiced = opens[3:]
    assert all(b >= a for a, b in zip(voiced, voiced[1:])) and 0.0 < voiced[1] < voiced[-1]  # eased in
    assert voiced[-1] == pytest.approx(animator.settings.audio.max_open) and holds[-1] == pytest.approx(1.0)
    assert animator.idle.weight == 0.0  # the face is tracked: no idle motion
    for _ in range(steps + 2):
        frame(True)
    assert opens[-1] == 0.0 and holds[-1] == 0.0


def test_a_degenerate_reference_is_refused_and_the_last_one_kept(frame_and_landmarks, caplog):
    frame, lmk = frame_and_landmarks
    cue = mv.MouthVisibility(TrackingSettings())
    cue.update(frame, lmk, 0.0, reference=True)
    flat = np.full_like(lmk, 100.0)  # every point in one place: no triangulation
    flat[:, 0] += np.arange(len(flat)) * 1e-9
    check = cue.update(frame, flat, 0.0, reference=True)
    assert cue.has_reference and check.visible  # the frame still gets a verdict
    assert "mouth check: no reference" in caplog.text
    assert cue.update(frame, lmk, 0.0).match > 0.95  # the first reference is still the one compared with


def test_a_hidden_mouths_tracked_lip_ratio_no_longer_drives_the_lips(animator):
    """With the official lip retargeting on, the tracked lip ratio moves the mouth; once the mouth has been hidden
    for the easing time, the (invented) tracked ratio no longer matters: silence keeps the mouth neutral."""
    from dataclasses import replace as dc_replace

    from liveportrait_core.voice.features import SILENT

    s = animator.settings.copy()
    s.animation.lip_retargeting, s.audio.mode = True, "fallback"
    animator.update_settings(s)
    crop = animator.character.crop_rgb256
    t = 10.0

    def keypoints(mouth_open: float, visible: bool, frames: int):
        nonlocal t
        for _ in range(frames):
            animator.set_voice(dc_replace(SILENT, timestamp=t))
            x = animator.driving_keypoints(crop, SimpleNamespace(found=True, timestamp=t, eye_open=None,
                                                                 mouth_open=mouth_open, calibrate_now=False,
                                                                 mouth_visible=visible))
            t += 0.1
        return x

    seen_closed, seen_open = keypoints(0.0, True, 1), keypoints(0.6, True, 1)
    assert (seen_closed - seen_open).abs().max() > 1e-4  # seen: the tracked ratio drives the lips
    steps = int(animator.settings.animation.idle_ease_s / 0.1) + 2
    hidden_closed, hidden_open = keypoints(0.0, False, steps), keypoints(0.6, False, 1)
    assert (hidden_closed - hidden_open).abs().max() < 1e-6
