"""The device paste-back (driving/paste_device.py) against the CPU path (crop.PasteBack), on the CPU device.

The contract is ≤ 1 LSB on the uint8 output; the construction gives bit-equality for the official 512 crop
(see the module's docstring), which is asserted too, so that a change in OpenCV's warp shows up here.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from liveportrait_core.images import load_image
from liveportrait_core.driving import crop
from liveportrait_core.driving.paste_device import DevicePasteBack, cv_sampling_grid, warp_like_cv2
from tests.conftest import shared_path

CHARACTERS = ["s0.jpg", "s5.jpg", "s12.jpg", "s42.jpg"]


def _bgr_tensor(crop_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crop_hwc.transpose(2, 0, 1)))


def _device_frame(paste: crop.PasteBack, anim: np.ndarray, crop_alpha: np.ndarray | None) -> np.ndarray:
    dev = DevicePasteBack(paste, crop_alpha, "cpu")
    return dev.paste(_bgr_tensor(anim), dev.new_frame()).numpy()


def _assert_equal_to_cpu(paste: crop.PasteBack, anim: np.ndarray, crop_alpha: np.ndarray | None) -> None:
    cpu = paste.paste_bgra(anim, crop_alpha)
    got = _device_frame(paste, anim, crop_alpha)
    diff = np.abs(cpu.astype(int) - got.astype(int))
    assert got.shape == cpu.shape and got.dtype == np.uint8
    assert diff.max() <= 1, f"{(diff > 0).sum()} values differ, up to {diff.max()} LSB"
    assert diff.max() == 0, f"{(diff > 0).sum()} values differ by 1 LSB (the construction should be exact)"


def _animated(source_crop: np.ndarray, seed: int) -> np.ndarray:
    """A stand-in for the decoder's output: the source crop shifted, with noise and hard edges (not a model)."""
    rng = np.random.default_rng(seed)
    out = np.roll(source_crop, (3, -5), axis=(0, 1)).astype(np.int16)
    out += rng.integers(-40, 41, out.shape, dtype=np.int16)
    out[200:260, 100:400] = rng.integers(0, 256, 3)  # a sharp bar: the worst case for interpolation
    return np.clip(out, 0, 255).astype(np.uint8)


def _soft_alpha(h: int, w: int) -> np.ndarray:
    """A character alpha with a soft radial edge and a hard transparent corner."""
    ys, xs = np.mgrid[0:h, 0:w]
    r = np.hypot((xs - w / 2) / (w / 2), (ys - h / 2) / (h / 2))
    a = np.clip((1.15 - r) * 400, 0, 255).astype(np.uint8)
    a[: h // 3, : w // 4] = 0
    return a


@pytest.fixture(scope="module")
def faces():
    """(image, face crop transform) of real characters, found as a preparation finds them."""
    from liveportrait_core.characters.faces import CharacterFaceFinder

    out = {}
    with CharacterFaceFinder() as finder:
        for name in CHARACTERS:
            img = load_image(shared_path("testdata", "characters", name), limit=True)
            out[name] = (img.bgr, finder.find(img.bgr).source_face().crop_transform())
    return out


def test_sampling_positions_are_opencvs():
    """grid_sample at the reproduced fixed-point positions gives cv2.warpAffine's bytes, both borders."""
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    t = _bgr_tensor(src)[None].float()
    for _ in range(12):
        ang, s = rng.uniform(-0.7, 0.7), rng.uniform(0.3, 3.0)
        c, n = np.cos(ang) * s, np.sin(ang) * s
        M = np.array([[c, -n, rng.uniform(-300, 300)], [n, c, rng.uniform(-300, 300)]], np.float32)
        w, h = (int(v) for v in rng.integers(40, 700, 2))
        grid = cv_sampling_grid(M, (w, h), (512, 512))
        for replicate, border in ((False, cv2.BORDER_CONSTANT), (True, cv2.BORDER_REPLICATE)):
            ref = cv2.warpAffine(src, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
            got = warp_like_cv2(t, grid, replicate=replicate)[0].permute(1, 2, 0).to(torch.uint8).numpy()
            assert np.array_equal(got, ref), (M, replicate, np.abs(got.astype(int) - ref).max())


@pytest.mark.parametrize("name", CHARACTERS)
def test_real_character_opaque(faces, name):
    image, t = faces[name]
    paste = crop.PasteBack(image, t.M_c2o)
    source = crop.warp_crop(image, t.M_o2c, exact=True)
    _assert_equal_to_cpu(paste, _animated(source, 1), None)


@pytest.mark.parametrize("name", CHARACTERS[:2])
def test_real_character_with_alpha_composites_as_the_cpu(faces, name):
    image, t = faces[name]
    alpha = _soft_alpha(*image.shape[:2])
    paste = crop.PasteBack(image, t.M_c2o, alpha)
    crop_alpha = crop.warp_crop(alpha, t.M_o2c, exact=True)  # as the preparation cuts it
    source = crop.warp_crop(image, t.M_o2c, exact=True)
    _assert_equal_to_cpu(paste, _animated(source, 2), crop_alpha)
    _assert_equal_to_cpu(paste, _animated(source, 3), None)  # alpha kept, official colours


@pytest.mark.parametrize("where", ["rotated", "top-left corner", "right edge", "upscaled", "downscaled"])
def test_synthetic_crops_across_the_borders(where):
    """Crops half outside the image, rotated, enlarged and shrunk: black outside the crop, replicate for alpha."""
    rng = np.random.default_rng(7)
    h, w = 500, 700
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    centre, size, angle = {"rotated": ((350, 250), 300, 0.6), "top-left corner": ((20, 10), 260, 0.2),
                           "right edge": ((690, 300), 200, -0.3), "upscaled": ((300, 250), 140, 0.05),
                           "downscaled": ((350, 250), 900, -0.1)}[where]
    t = crop.crop_transform(crop.CropRect(np.array(centre, np.float32), float(size), angle))
    anim = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    alpha = _soft_alpha(h, w)
    _assert_equal_to_cpu(crop.PasteBack(image, t.M_c2o), anim, None)
    _assert_equal_to_cpu(crop.PasteBack(image, t.M_c2o, alpha), anim, crop.warp_crop(alpha, t.M_o2c, exact=True))


def test_frame_buffer_is_reused_and_stays_valid():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    t = crop.square_transform(np.array([200.0, 150.0]), 220.0)
    paste = crop.PasteBack(image, t.M_c2o)
    dev = DevicePasteBack(paste, None, "cpu")
    frame = dev.new_frame()
    a, b = (rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(2))
    assert dev.paste(_bgr_tensor(a), frame) is frame
    dev.paste(_bgr_tensor(b), frame)
    assert np.array_equal(frame.numpy(), paste.paste_bgra(b))
    assert np.array_equal(paste.image, image), "the character image must not be modified"


def test_crop_outside_the_image_pastes_nothing():
    image = np.full((64, 64, 3), 7, np.uint8)
    paste = crop.PasteBack(image, crop.square_transform(np.array([1000.0, 1000.0]), 100.0).M_c2o)
    got = _device_frame(paste, np.zeros((512, 512, 3), np.uint8), None)
    assert np.array_equal(got[..., :3], image) and (got[..., 3] == 255).all()


def test_wrong_crop_size_is_named():
    paste = crop.PasteBack(np.zeros((64, 64, 3), np.uint8), crop.square_transform(np.array([32.0, 32.0]), 40.0).M_c2o)
    with pytest.raises(ValueError, match="3x512x512"):
        DevicePasteBack(paste, None, "cpu").paste(torch.zeros(3, 256, 256), torch.zeros(64, 64, 4, dtype=torch.uint8))


def test_other_crop_sides_stay_within_one_lsb():
    """Not a power of two: the normalised grid is rounded in float32, so a value exactly on .5 may round
    the other way (≤ 1 LSB, rare)."""
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    t = crop.crop_transform(crop.CropRect(np.array([200, 200], np.float32), 250.0, 0.3), dsize=384)
    paste = crop.PasteBack(image, t.M_c2o, dsize=384)
    anim = rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)
    diff = np.abs(paste.paste_bgra(anim).astype(int) - _device_frame(paste, anim, None).astype(int))
    assert diff.max() <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", CHARACTERS[:2])
def test_cuda_paste_equals_the_cpu_path(faces, name):
    """The same construction on CUDA (grid_sample's CUDA kernel, IEEE float32 element-wise ops)."""
    image, t = faces[name]
    alpha = _soft_alpha(*image.shape[:2])
    source = crop.warp_crop(image, t.M_o2c, exact=True)
    for a in (None, alpha):
        paste = crop.PasteBack(image, t.M_c2o, a)
        crop_alpha = None if a is None else crop.warp_crop(a, t.M_o2c, exact=True)
        anim = _animated(source, 4)
        dev = DevicePasteBack(paste, crop_alpha, "cuda")
        got = dev.paste(_bgr_tensor(anim).cuda(), dev.new_frame()).cpu().numpy()
        diff = np.abs(paste.paste_bgra(anim, crop_alpha).astype(int) - got.astype(int))
        assert diff.max() <= 1, f"{(diff > 0).sum()} values differ, up to {diff.max()} LSB"
