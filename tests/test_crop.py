"""The crop and paste-back geometry reproduces the official reference vectors (crop_paste.npz)."""
from __future__ import annotations

import numpy as np
import pytest

from liveportrait_core.driving import crop
from tests.conftest import shared_path


def err(mine: np.ndarray, ref: np.ndarray) -> float:
    """The vectors' metric: max |mine − ref| / max |ref|."""
    return float(np.max(np.abs(np.asarray(mine, np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(shared_path("reference", "vectors", "crop_paste.npz"), allow_pickle=False))


def _transform(ref, i: int, rotate: bool) -> crop.CropTransform:
    eye, lip = crop.lmk106_eye_lip_centres(ref["lmk106"][i])
    return crop.source_crop_transform(eye, lip, ref["lmk106"][i], scale=float(ref["crop_scale"]),
                                      vy_ratio=float(ref["crop_vy_ratio"]), dsize=int(ref["crop_dsize"]),
                                      rotate=rotate)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_eye_and_lip_centres_match_official_pt2(ref, i):
    eye, lip = crop.lmk106_eye_lip_centres(ref["lmk106"][i])
    assert err(np.stack([eye, lip]), ref["pt2"][i]) < 1e-5


@pytest.mark.parametrize("i", [0, 1, 2])
def test_source_crop_rect_matches_official(ref, i):
    t = _transform(ref, i, rotate=True)
    assert err(t.rect.centre, ref["rect_centre"][i]) < 1e-5
    assert err(np.array([t.rect.size]), ref["rect_size"][i:i + 1]) < 1e-5
    assert abs(t.rect.angle - ref["rect_angle_rad"][i]) < 1e-5


@pytest.mark.parametrize("i", [0, 1, 2])
@pytest.mark.parametrize("rotate", [True, False])
def test_source_crop_matrices_match_official(ref, i, rotate):
    t = _transform(ref, i, rotate)
    tag = "rot" if rotate else "norot"
    assert err(t.M_o2c, ref[f"M_o2c_{tag}"][i]) < 1e-5
    assert err(t.M_c2o, ref[f"M_c2o_{tag}"][i]) < 1e-5


def test_generic_function_accepts_any_point_layout(ref):
    """The same function serves other layouts: only the eye/lip centres and the points' extent matter."""
    eye, lip = crop.lmk106_eye_lip_centres(ref["lmk106"][1])
    pts = ref["lmk106"][1]
    extent_only = np.concatenate([pts, pts[:5]])  # duplicates change the mean but not the box
    a = crop.source_crop_transform(eye, lip, pts)
    b = crop.source_crop_transform(eye, lip, extent_only)
    assert err(b.M_o2c, a.M_o2c) < 1e-5


def test_paste_matrices_and_crops_match_official(ref):
    eye, lip = crop.lmk106_eye_lip_centres(ref["paste_lmk106"])
    t = crop.source_crop_transform(eye, lip, ref["paste_lmk106"])
    assert err(t.M_o2c, ref["paste_M_o2c"]) < 1e-5
    assert err(t.M_c2o, ref["paste_M_c2o"]) < 1e-5
    crop512 = crop.warp_crop(ref["paste_image_u8"], t.M_o2c, exact=True)
    assert np.abs(crop512.astype(int) - ref["paste_source_crop_u8"]).max() <= 1
    crop256 = crop.to_network_size(crop512)
    assert crop256.shape == (256, 256, 3)
    assert np.abs(crop256.astype(int) - ref["paste_source_crop256_u8"]).max() <= 1


def _within_opencv_quantisation(mine: np.ndarray, ref: np.ndarray) -> None:
    """OpenCV 4.11 places bilinear samples on a 1/32-pixel grid: a few LSB on sharp edges, rarely
    (1/32 px of the steepest edges of the 512² crop shrunk ~2× into the image is ~6 LSB)."""
    diff = np.abs(mine.astype(int) - ref)
    assert diff.max() <= 8
    assert diff.mean() < 0.5


def test_fast_crop_is_within_opencv_quantisation_of_official(ref):
    crop512 = crop.warp_crop(ref["paste_image_u8"], ref["paste_M_o2c"])
    _within_opencv_quantisation(crop512, ref["paste_source_crop_u8"])


def test_mask_template_matches_official(ref):
    mask = crop.mask_template()
    assert mask.shape == (512, 512)
    assert np.abs(mask.astype(int) - ref["mask_template_u8"][..., 0]).max() <= 1
    assert mask[0, 256] == 0 and mask[256, 256] == 255


def test_mask_in_image_and_paste_back_match_official(ref):
    paste = crop.PasteBack(ref["paste_image_u8"], ref["paste_M_c2o"])
    assert np.abs(paste.mask_ori - ref["paste_mask_ori"][..., 0]).max() <= 1 / 255 + 1e-6
    result = paste.paste(ref["paste_anim_crop_u8"], exact=True)
    assert result.dtype == np.uint8
    assert np.abs(result.astype(int) - ref["paste_result_u8"]).max() <= 1
    _within_opencv_quantisation(paste.paste(ref["paste_anim_crop_u8"]), ref["paste_result_u8"])
    assert np.array_equal(ref["paste_image_u8"], paste.image), "the character image must not be modified"


def test_paste_back_reuses_its_output_buffer(ref):
    paste = crop.PasteBack(ref["paste_image_u8"], ref["paste_M_c2o"])
    out = paste.paste(ref["paste_anim_crop_u8"])
    again = paste.paste(ref["paste_source_crop_u8"], out=out)
    assert again is out
    fresh = paste.paste(ref["paste_source_crop_u8"])
    assert np.array_equal(again, fresh)


def test_paste_bgra_keeps_alpha_outside_and_composites_inside(ref):
    image = ref["paste_image_u8"]
    h, w = image.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, : w // 2] = 255  # left half opaque, right half transparent
    paste = crop.PasteBack(image, ref["paste_M_c2o"], alpha=alpha)
    anim = ref["paste_anim_crop_u8"]
    frame = paste.paste_bgra(anim, crop_alpha=np.full((512, 512), 255, np.uint8))
    assert frame.shape == (h, w, 4)
    m = paste.mask_ori
    inside, outside = m > 0.999, m == 0
    assert (frame[..., 3][inside] == 255).all()
    assert np.array_equal(frame[..., 3][outside], alpha[outside])
    assert np.array_equal(frame[..., :3][outside], image[outside])
    # on the ramp over transparent pixels: coverage = mask, colour = the crop's alone (no bleeding
    # of the colour hidden under the transparent pixels)
    ramp = (m > 0.2) & (m < 0.8) & (alpha == 0)
    assert ramp.any()
    assert np.abs(frame[..., 3][ramp].astype(int) - np.round(255 * m[ramp])).max() <= 1
    x0, y0, x1, y1 = paste.roi
    warped = np.zeros_like(image)
    warped[y0:y1, x0:x1] = paste._warp_roi(anim)  # the same resampling as the paste
    assert np.abs(frame[..., :3][ramp].astype(int) - warped[ramp]).max() <= 1
    # over opaque pixels it is the official blend
    opaque = alpha == 255
    assert np.abs(frame[..., :3][opaque].astype(int) - paste.paste(anim)[opaque]).max() <= 1
    # no crop alpha: official colours, the character's alpha kept as it is
    plain = paste.paste_bgra(anim)
    assert np.array_equal(plain[..., 3], alpha) and np.array_equal(plain[..., :3], paste.paste(anim))


def test_paste_bgra_of_opaque_images_is_the_official_paste(ref):
    paste = crop.PasteBack(ref["paste_image_u8"], ref["paste_M_c2o"])
    frame = paste.paste_bgra(ref["paste_anim_crop_u8"], crop_alpha=np.full((512, 512), 255, np.uint8))
    assert (frame[..., 3] == 255).all()
    assert np.abs(frame[..., :3].astype(int) - paste.paste(ref["paste_anim_crop_u8"])).max() <= 1


def test_opaque_character_gives_opaque_bgra(ref):
    paste = crop.PasteBack(ref["paste_image_u8"], ref["paste_M_c2o"])
    frame = paste.paste_bgra(ref["paste_anim_crop_u8"])
    assert (frame[..., 3] == 255).all()


def test_crop_outside_the_image_pastes_nothing():
    image = np.full((64, 64, 3), 7, np.uint8)
    t = crop.square_transform(np.array([1000.0, 1000.0]), 100.0)
    paste = crop.PasteBack(image, t.M_c2o)
    assert np.array_equal(paste.paste(np.zeros((512, 512, 3), np.uint8)), image)


def test_square_transform_round_trips_points():
    t = crop.square_transform(np.array([320.0, 240.0]), 200.0, dsize=512)
    pts = np.array([[320.0, 240.0], [220.0, 140.0]], np.float32)
    assert np.allclose(t.to_crop(pts), [[256, 256], [0, 0]], atol=1e-3)
    assert np.allclose(t.to_image(t.to_crop(pts)), pts, atol=1e-3)


def test_degenerate_eye_lip_axis_falls_back_to_upright():
    pts = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    rect = crop.rect_from_points(np.array([5, 5]), np.array([5, 5]), pts, scale=1.0, vy_ratio=0.0)
    assert rect.angle == 0.0 and rect.size == pytest.approx(10.0)


def test_precomputed_mask_skips_the_warp_and_pastes_identically(monkeypatch):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (300, 260), dtype=np.uint8)
    t = crop.source_crop_transform(np.array([120.0, 130.0]), np.array([125.0, 190.0]),
                                   np.array([[60, 80], [190, 80], [125, 230]], np.float32))
    fresh = crop.PasteBack(image, t.M_c2o, alpha)
    roi, box = fresh.mask_box()
    assert box.dtype == np.uint8 and box.shape == (roi[3] - roi[1], roi[2] - roi[0])
    assert 0 < box.size < image.shape[0] * image.shape[1]  # only the box is kept
    calls = []
    monkeypatch.setattr(crop.PasteBack, "_mask_in_image", lambda *a: calls.append(a))
    full = crop.mask_from_box(roi, box, image.shape[:2])
    crops = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), rng.integers(0, 256, (512, 512), dtype=np.uint8)
    again = crop.PasteBack(image, t.M_c2o, alpha, mask_ori=full)
    assert again.roi == fresh.roi and np.array_equal(again.mask_ori, fresh.mask_ori)
    assert np.array_equal(again.paste_bgra(*crops), fresh.paste_bgra(*crops))
    assert calls == []
    for bad in (full[:-1], fresh.mask_ori):  # another size; not the uint8 mask
        with pytest.raises(ValueError, match="mask"):
            crop.PasteBack(image, t.M_c2o, mask_ori=bad)
    for bad in ((roi, box[:-1]), ((0, 0, 999, 999), box), (roi, box.astype(np.float32)), (np.array(roi, float), box)):
        with pytest.raises(ValueError, match="mask box"):
            crop.mask_from_box(*bad, image.shape[:2])
