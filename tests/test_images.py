"""The image loader turns every supported file into BGR uint8 (+ alpha) or a clear ImageError."""
from __future__ import annotations

import io
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from liveportrait_core import images
from liveportrait_core.images import ImageError, load_image


def _write(path, arr, params=()):
    ok, buf = cv2.imencode(path.suffix, arr, list(params))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture
def colour():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_png_bgr_round_trips(tmp_path, colour):
    img = load_image(_write(tmp_path / "a.png", colour))
    assert img.bgr.dtype == np.uint8 and img.bgr.shape == (40, 60, 3)
    assert np.array_equal(img.bgr, colour)
    assert img.alpha is None and img.size == (60, 40)


def test_rgba_keeps_alpha(tmp_path, colour):
    alpha = np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))
    img = load_image(_write(tmp_path / "a.png", np.dstack([colour, alpha])))
    assert np.array_equal(img.bgr, colour)
    assert np.array_equal(img.alpha, alpha)
    assert img.bgra().shape == (40, 60, 4)


def test_fully_opaque_alpha_is_dropped(tmp_path, colour):
    img = load_image(_write(tmp_path / "a.png", np.dstack([colour, np.full((40, 60), 255, np.uint8)])))
    assert img.alpha is None


def test_grayscale_becomes_bgr(tmp_path):
    gray = np.tile(np.arange(60, dtype=np.uint8), (40, 1))
    img = load_image(_write(tmp_path / "g.png", gray))
    assert img.bgr.shape == (40, 60, 3)
    assert np.array_equal(img.bgr[..., 0], gray) and np.array_equal(img.bgr[..., 2], gray)


def test_gray_alpha_png(tmp_path):
    la = Image.fromarray(np.dstack([np.full((8, 8), 100, np.uint8), np.full((8, 8), 50, np.uint8)]), "LA")
    p = tmp_path / "la.png"
    la.save(p)
    img = load_image(p)
    assert img.bgr.shape == (8, 8, 3) and (img.bgr == 100).all()
    assert img.alpha is not None and (img.alpha == 50).all()


def test_16bit_becomes_8bit(tmp_path):
    arr = np.zeros((4, 4, 3), np.uint16)
    arr[0, 0] = 65535
    arr[1, 1] = 257 * 128
    img = load_image(_write(tmp_path / "deep.png", arr))
    assert img.bgr.dtype == np.uint8
    assert (img.bgr[0, 0] == 255).all() and (img.bgr[1, 1] == 128).all() and (img.bgr[2, 2] == 0).all()


def test_jpeg_and_webp(tmp_path, colour):
    for name in ("a.jpg", "a.webp"):
        img = load_image(_write(tmp_path / name, colour))
        assert img.bgr.shape == (40, 60, 3)


def test_cmyk_jpeg_is_converted(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    img = load_image(p)
    assert img.bgr.shape == (12, 16, 3)
    b, g, r = img.bgr[6, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    pil = Image.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # stored sideways: display rotated 90° clockwise
    p = tmp_path / "rot.jpg"
    pil.save(p, exif=exif.tobytes(), quality=95)
    img = load_image(p)
    assert img.size == (20, 40)
    assert img.original_size == (40, 20)
    assert img.bgr[:10].mean() > 200 and img.bgr[-10:].mean() < 50  # white half now on top


def test_animated_webp_uses_first_frame(tmp_path, caplog):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / "anim.webp"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    img = load_image(p)
    assert img.bgr.shape == (10, 10, 3)
    assert "animated" in caplog.text


def test_resize_to_limit_matches_official_rule(tmp_path):
    arr = np.zeros((1001, 2561, 3), np.uint8)
    img = load_image(_write(tmp_path / "big.png", arr), limit=True, division=images.OFFICIAL_DIVISION)
    # official: new_w = 1280, new_h = int(1001 * 1280 / 2561) = 500, then even sides
    assert img.size == (1280, 500)
    small = images.resize_to_limit(np.zeros((33, 31, 3), np.uint8), division=images.OFFICIAL_DIVISION)[0]
    assert small.shape[:2] == (32, 30)


def test_characters_keep_their_exact_size_and_are_capped_at_1280(tmp_path, caplog, monkeypatch):
    """Odd sides are kept (564x729 stays 564x729, not 564x728); the longest side is capped at 1280 px
    (the official limit, not a setting) and the load says so, once."""
    monkeypatch.setattr(images, "_told", set())
    odd = load_image(_write(tmp_path / "odd.png", np.zeros((729, 564, 3), np.uint8)), limit=True)
    assert odd.size == (564, 729)
    with caplog.at_level(logging.INFO, logger="liveportrait_core.images"):
        big = load_image(_write(tmp_path / "big.png", np.zeros((1001, 2561, 3), np.uint8)), limit=True)
        load_image(tmp_path / "big.png", limit=True)
    assert big.size == (1280, 500) and big.original_size == (2561, 1001)
    assert caplog.text.count("2561x1001 scaled down to 1280x500") == 1 and "1280 px" in caplog.text


def test_resize_keeps_alpha_aligned():
    bgr = np.zeros((3000, 1000, 3), np.uint8)
    alpha = np.zeros((3000, 1000), np.uint8)
    b, a = images.resize_to_limit(bgr, alpha)
    assert b.shape[:2] == a.shape == (1280, 426)


@pytest.mark.parametrize("name, content, fragment", [
    ("broken.png", b"not an image at all", "not a readable"),
    ("empty.jpg", b"", "empty"),
])
def test_bad_files_give_clear_errors(tmp_path, name, content, fragment):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert name in str(e.value) and fragment in str(e.value)


def test_missing_file_and_wrong_extension(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="unsupported file type"):
        load_image(tmp_path / "x.gif")


def test_loading_never_modifies_the_file(tmp_path, colour):
    p = _write(tmp_path / "keep.png", colour)
    before = p.read_bytes()
    load_image(p, limit=True)
    assert p.read_bytes() == before


def test_float_arrays_are_scaled():
    bgr, alpha = images.to_bgr_alpha(np.full((2, 2, 3), 0.5, np.float32))
    assert bgr.dtype == np.uint8 and (bgr == 128).all() and alpha is None


def test_list_images(tmp_path, colour):
    for n in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in images.list_images(tmp_path)] == ["a.JPG", "b.png"]


def test_unicode_path(tmp_path, colour):
    img = load_image(_write(tmp_path / "personnage_é.png", colour))
    assert img.bgr.shape == (40, 60, 3)


def test_decode_from_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (5, 7), (0, 0, 255)).save(buf, "PNG")
    arr = images.decode_image(buf.getvalue())
    assert arr.shape == (7, 5, 3) and arr[0, 0, 0] == 255  # blue in BGR
