"""The tracker on real photographs: roll, crop geometry, no-face cases and awkward inputs (MediaPipe)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("mediapipe")

from liveportrait_core.settings import TrackingSettings  # noqa: E402
from liveportrait_core.tracking import FaceTracker  # noqa: E402
from liveportrait_core.characters.faces import CharacterFaceFinder  # noqa: E402
from liveportrait_core.tracking.debug_draw import draw_observation  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _astronaut() -> np.ndarray:
    p = ROOT / "characters" / "astronaut.png"
    if p.exists():
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            return img
    data = pytest.importorskip("skimage.data")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _shared_image(name: str) -> np.ndarray:
    return cv2.imread(str(shared_path("testdata", "characters", name)), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def still():
    with FaceTracker(TrackingSettings(max_faces=1, smoothing=False), static_image_mode=True) as t:
        yield t


@pytest.fixture(scope="module")
def finder():
    with CharacterFaceFinder() as f:
        yield f


def test_astronaut_observation_is_complete(still):
    img = _astronaut()
    obs = still.process(img, 1.0)
    assert obs.found and obs.landmarks.shape == (478, 2) and obs.landmarks.dtype == np.float32
    assert obs.image_size == (img.shape[1], img.shape[0])
    assert 0.5 < obs.confidence <= 1.0
    assert obs.crop is not None and obs.crop.dsize == 512
    assert 0.15 < min(obs.eye_open) < 0.6  # open eyes on the official range (~0.3)
    assert 0.0 <= obs.mouth_open < 0.4
    assert abs(obs.yaw) < 20 and abs(obs.roll) < 10
    assert obs.lost_for_s == 0.0
    rgb = still.driving_crop(img, obs)
    assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("angle", [15, -15, 30, -30])
def test_in_plane_rotation_is_recovered_within_2_degrees(still, angle):
    img = _astronaut()
    base = still.process(img, 0.0)
    centre = tuple(float(v) for v in base.landmarks.mean(axis=0))
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)  # counter-clockwise on screen for angle > 0
    rotated = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    obs = still.process(rotated, 1.0)
    assert obs.found
    assert obs.roll - base.roll == pytest.approx(-angle, abs=2.0)


@pytest.mark.parametrize("name", ["s1.jpg", "s12.jpg", "s42.jpg", "s7.jpg"])
def test_roll_on_rotated_portraits_and_cartoon(still, name):
    img = _shared_image(name)
    base = still.process(img, 0.0)
    assert base.found
    centre = tuple(float(v) for v in base.landmarks.mean(axis=0))
    rotated = cv2.warpAffine(img, cv2.getRotationMatrix2D(centre, 15, 1.0), (img.shape[1], img.shape[0]),
                             borderMode=cv2.BORDER_REPLICATE)
    assert still.process(rotated, 1.0).roll - base.roll == pytest.approx(-15, abs=2.0)


def test_crop_follows_shift_and_scale(still):
    img = _astronaut()
    h, w = img.shape[:2]
    canvas = np.zeros((h + 200, w + 200, 3), np.uint8)
    canvas[50:50 + h, 60:60 + w] = img
    a = still.process(canvas, 0.0)
    canvas2 = np.zeros_like(canvas)
    canvas2[120:120 + h, 100:100 + w] = img
    b = still.process(canvas2, 1.0)
    assert np.allclose(b.crop.rect.centre - a.crop.rect.centre, [40, 70], atol=3.0)
    assert b.crop.rect.size == pytest.approx(a.crop.rect.size, rel=0.03)
    small = cv2.resize(canvas, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    c = still.process(small, 2.0)
    assert c.crop.rect.size == pytest.approx(a.crop.rect.size * 0.7, rel=0.05)
    assert np.allclose(c.crop.rect.centre, a.crop.rect.centre * 0.7, atol=4.0)


def test_dog_and_texture_report_no_face(finder, still):
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (7, 7), 0)
    assert not still.process(texture, 0.0).found
    assert not finder.find(texture).found
    dog = finder.find(_shared_image("s25.jpg"))
    assert not dog.found and "characters.min_face_confidence" in dog.message and 0.5 < dog.confidence < 0.8


@pytest.mark.parametrize("name", ["s0.jpg", "s1.jpg", "s5.jpg", "s7.jpg", "s9.jpg", "s12.jpg", "s42.jpg"])
def test_portraits_paintings_and_cartoon_are_found(finder, name):
    face = finder.find(_shared_image(name))
    assert face.found, face.message
    assert face.confidence >= 0.8 and face.crop is not None
    # the official crop holds the whole face: every crop landmark lies inside the 512² crop
    inside = face.crop.to_crop(face.landmarks)
    assert inside.min() > 0 and inside.max() < 512


def test_small_face_in_a_large_image_is_found(finder):
    img = _astronaut()
    big = np.full((2400, 3200, 3), 90, np.uint8)
    big[1500:1500 + img.shape[0], 2300:2300 + img.shape[1]] = img
    face = finder.find(big)
    assert face.found, face.message
    assert 2300 < face.landmarks[:, 0].mean() < 2300 + img.shape[1]


def _variants(img: np.ndarray) -> dict[str, np.ndarray]:
    return {"gray": cv2.cvtColor(img, cv2.COLOR_BGR2GRAY),
            "bgra": cv2.cvtColor(img, cv2.COLOR_BGR2BGRA),
            "16bit": img.astype(np.uint16) * 257}


@pytest.mark.parametrize("kind", ["gray", "bgra", "16bit"])
def test_unusual_frame_formats_are_tracked(still, kind):
    obs = still.process(_variants(_astronaut())[kind], 0.0)
    assert obs.found


def test_tiny_and_8k_frames_do_not_crash(still, finder):
    tiny = cv2.resize(_astronaut(), (32, 32), interpolation=cv2.INTER_AREA)
    obs = still.process(tiny, 0.0)
    assert obs.landmarks is None or obs.landmarks.shape == (478, 2)
    tiny_face = finder.find(tiny)
    assert not tiny_face.found and "32x32" in tiny_face.message
    huge = cv2.resize(_astronaut(), (7680, 4320), interpolation=cv2.INTER_LINEAR)
    obs = still.process(huge, 1.0)
    assert obs.found and obs.image_size == (7680, 4320)


def test_two_faces_keeps_the_one_nearest_the_last_position():
    img = np.ascontiguousarray(_astronaut()[0:300, 70:370])  # the head, so both faces stay large enough
    h, w = img.shape[:2]
    pair = np.zeros((h, 2 * w, 3), np.uint8)
    pair[:, :w] = img
    pair[:, w:] = img
    with FaceTracker(TrackingSettings(max_faces=2, smoothing=False), static_image_mode=True) as t:
        right_only = np.zeros_like(pair)
        right_only[:, w:] = img
        first = t.process(right_only, 0.0)
        assert first.found and first.landmarks[:, 0].mean() > w
        both = t.process(pair, 0.1)
        assert both.faces_in_frame == 2
        assert both.landmarks[:, 0].mean() > w  # stays on the right-hand face


def test_debug_drawing(still):
    img = _astronaut()
    obs = still.process(img, 0.0)
    drawn = draw_observation(img, obs)
    assert drawn.shape == img.shape and not np.array_equal(drawn, img)
    assert np.array_equal(img, _astronaut())  # the frame itself is untouched
    none = still.process(np.zeros((120, 160, 3), np.uint8), 1.0)
    assert draw_observation(np.zeros((120, 160, 3), np.uint8), none).any()


def test_debug_text_starts_below_a_band_the_preview_draws(still):
    """The preview's top band (FPS, latency) covered the first line of the tracker's debug text (pose):
    seen in a screenshot of `preview` with D pressed. ``text_top`` moves the text below it; the preview passes
    its band's share of the height."""
    from liveportrait_core.outputs.preview import TOP_BAND

    blank = np.zeros((400, 400, 3), np.uint8)
    none = still.process(blank, 2.0)  # no face: only the text is drawn
    top = int(TOP_BAND * blank.shape[0])
    plain, moved = draw_observation(blank, none), draw_observation(blank, none, text_top=top)
    assert plain[:top].any() and not moved[:top].any() and moved[top:].any()
