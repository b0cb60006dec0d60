"""Character sidecars (characters/sidecar.py) and the place-face model (characters/placement.py)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from liveportrait_core import settings as settings_mod
from liveportrait_core.characters import sidecar as sc
from liveportrait_core.characters.placement import EVENT_DOWN, EVENT_MOVE, EVENT_RDOWN, EVENT_UP, Placement
from liveportrait_core.driving import crop

ALPACA = {"left_eye": [260, 345], "right_eye": [395, 340], "mouth": [340, 412]}


def _write(tmp_path, data, name="cat.png"):
    img = tmp_path / name
    img.write_bytes(b"")  # only the sidecar is read here
    path = sc.sidecar_path(img)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return img, path


def test_sidecar_path_is_the_image_name_plus_yaml(tmp_path):
    assert sc.sidecar_path(tmp_path / "cat.png") == tmp_path / "cat.png.yaml"


def test_points_give_exactly_the_official_crop_of_those_points(tmp_path):
    img, _ = _write(tmp_path, {"face": ALPACA})
    s = sc.load_sidecar(img)
    eye = (np.array(ALPACA["left_eye"], np.float32) + np.array(ALPACA["right_eye"], np.float32)) / 2
    pts = np.array([ALPACA["left_eye"], ALPACA["right_eye"], ALPACA["mouth"]], np.float32)
    want = crop.source_crop_transform(eye, np.array(ALPACA["mouth"], np.float32), pts)
    got = s.face.crop_transform()
    np.testing.assert_array_equal(got.M_o2c, want.M_o2c)
    face = s.face.source_face()
    assert face.confidence == sc.PLACED_CONFIDENCE and face.size_px == pytest.approx(want.rect.size / crop.SOURCE_SCALE)
    assert s.digest and sc.load_sidecar(tmp_path / "none.png") is None


def test_box_alone_is_an_upright_crop_of_the_box(tmp_path):
    img, _ = _write(tmp_path, {"face": {"box": [100, 120, 200, 160], "crop_scale": 2.0, "crop_vy": 0.0}})
    r = sc.load_sidecar(img).face.crop_transform().rect
    assert r.angle == pytest.approx(0.0, abs=1e-6)
    assert r.size == pytest.approx(400.0) and tuple(r.centre) == pytest.approx((200.0, 200.0))


def test_rotated_extent_corners_reproduce_a_crop_exactly():
    """check-character's starting sidecar writes the face box as its four corners: the same crop."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(100, 300, (40, 2)).astype(np.float32)
    eye, lip = np.array([180, 170], np.float32), np.array([215, 260], np.float32)
    want = crop.source_crop_transform(eye, lip, pts)
    corners = sc.extent_corners(eye, lip, pts)
    face = sc.PlacedFace(left_eye=eye - [20, 0], right_eye=eye + [20, 0], mouth=lip, landmarks=corners)
    np.testing.assert_allclose(face.crop_transform().M_o2c, want.M_o2c, atol=1e-3)


def test_bad_sidecar_names_the_file_and_every_bad_field(tmp_path):
    img, path = _write(tmp_path, {"face": {"left_eye": [1, "a"], "mouth": [3, 4], "crop_scale": 9},
                                  "mask": [[0, 0], [1, 1]], "colour": "red",
                                  "settings": {"animation": {"region": "eyez", "driving_multiplier": 7},
                                               "outputs": {"width": 3}}})
    with pytest.raises(sc.SidecarError) as e:
        sc.load_sidecar(img)
    assert str(path) in str(e.value)
    assert set(e.value.fields) == {"colour", "face.left_eye", "face.right_eye", "face.crop_scale", "mask",
                                   "settings.animation.region", "settings.animation.driving_multiplier",
                                   "settings.outputs.width"}
    assert "did you mean 'eyes'" in str(e.value)  # the settings schema's own message
    assert isinstance(e.value, sc.CharacterError)  # reported like any refused character


def test_not_yaml_or_not_a_mapping(tmp_path):
    img = tmp_path / "a.png"
    sc.sidecar_path(img).write_text("face: [1, 2\n", encoding="utf-8")
    with pytest.raises(sc.SidecarError, match="not valid YAML"):
        sc.load_sidecar(img)
    sc.sidecar_path(img).write_text("- 1\n", encoding="utf-8")
    with pytest.raises(sc.SidecarError, match="must be a mapping"):
        sc.load_sidecar(img)


def test_points_outside_the_image_are_named(tmp_path):
    img, _ = _write(tmp_path, {"face": {**ALPACA, "left_eye": [900, 20]}})
    s = sc.load_sidecar(img)
    with pytest.raises(sc.SidecarError) as e:
        s.check_within((626, 626))
    assert e.value.fields == ["face.left_eye"] and "626x626" in str(e.value)


def test_character_settings_are_validated_by_the_schema_and_applied_over_the_global_ones(tmp_path):
    img, _ = _write(tmp_path, {"face": ALPACA, "settings": {"animation": {"region": "exp", "eye_close_boost": 1.0},
                                                            "characters": {"min_face_confidence": 0.5}}})
    s = sc.load_sidecar(img)
    g = settings_mod.Settings()
    out = sc.character_settings(g, s)
    assert out.animation.region == "exp" and out.animation.eye_close_boost == 1.0
    assert out.characters.min_face_confidence == 0.5
    assert g.animation.region == "all"  # the global settings are not changed
    assert sc.character_settings(g, None) is g


def test_animal_characters_get_the_official_animal_defaults_unless_they_say_otherwise(tmp_path):
    img, _ = _write(tmp_path, {"face": ALPACA, "settings": {"model": {"variant": "animal"}}})
    g = settings_mod.Settings()
    assert g.animation.stitching is True
    assert sc.character_settings(g, sc.load_sidecar(img)).animation.stitching is False  # official: no stitching
    img2, _ = _write(tmp_path, {"face": ALPACA, "settings": {"model": {"variant": "animal"},
                                                             "animation": {"stitching": True}}}, name="dog.png")
    assert sc.character_settings(g, sc.load_sidecar(img2)).animation.stitching is True  # its explicit choice
    g.model.variant = "animal"
    assert sc.character_settings(g, None).animation.stitching is False


def test_write_never_replaces_a_users_file(tmp_path):
    img, path = _write(tmp_path, {"face": ALPACA})
    before = path.read_bytes()
    s = sc.load_sidecar(img)
    with pytest.raises(FileExistsError, match="never overwritten"):
        sc.write_sidecar(s)
    assert path.read_bytes() == before
    other = sc.free_name(path)
    assert other == tmp_path / "cat.png.2.yaml"
    sc.write_sidecar(s, other)
    again = sc.parse_sidecar(yaml.safe_load(other.read_text(encoding="utf-8")), other)
    np.testing.assert_array_equal(again.face.crop_transform().M_o2c, s.face.crop_transform().M_o2c)


def test_mask_polygon_fills_with_a_feathered_border():
    m = sc.mask_in_image(np.array([[10, 10], [90, 10], [90, 90], [10, 90]], np.float32), (100, 100), feather_px=8)
    assert m[50, 50] == 255 and m[5, 5] == 0 and 0 < m[50, 12] < 255


# ------------------------------------------------------------------------------------------------
# place-face's model, driven without a window


def _image(w=626, h=626):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _click(p: Placement, x, y):
    s = p.view_scale
    p.on_mouse(EVENT_DOWN, int(round(x * s)), int(round(y * s)))
    p.on_mouse(EVENT_UP, int(round(x * s)), int(round(y * s)))


def test_three_clicks_place_the_points_and_save_writes_a_valid_sidecar(tmp_path):
    img = tmp_path / "alpaca.jpg"
    p = Placement.for_image(_image(), sc.sidecar_path(img), max_view_px=500)
    assert p.face() is None and p.crop_preview() is None and "eye" in p.next_step()
    for k in ("left_eye", "right_eye", "mouth"):
        _click(p, *ALPACA[k])
    assert p.face() is not None and p.crop_preview().shape == (512, 512, 3)
    p.on_key(ord("v")), p.on_key(ord("v"))  # global -> human -> animal
    assert p.on_key(13) == "save"
    path = p.save()
    assert path == tmp_path / "alpaca.jpg.yaml" and "saved" in p.message
    s = sc.load_sidecar(img)
    assert s.variant == "animal"
    # the view is scaled (626 -> 500): clicks land within a view pixel of the wanted points
    np.testing.assert_allclose(s.face.left_eye, ALPACA["left_eye"], atol=1.0 / p.view_scale)
    np.testing.assert_allclose(s.face.crop_transform().M_o2c, p.face().crop_transform().M_o2c, atol=1e-3)
    assert p.render().shape[1] == round(626 * p.view_scale) + 320


def test_drag_moves_a_point_and_right_click_undoes(tmp_path):
    p = Placement.for_image(_image(), tmp_path / "a.png.yaml")
    for k in ("left_eye", "right_eye", "mouth"):
        _click(p, *ALPACA[k])
    p.on_mouse(EVENT_DOWN, 262, 347)  # grabs the left eye (within GRAB_PX)
    p.on_mouse(EVENT_MOVE, 250, 330)
    p.on_mouse(EVENT_UP, 250, 330)
    assert tuple(p.points["left_eye"]) == (250, 330)
    p.on_mouse(EVENT_RDOWN, 0, 0)
    assert "mouth" not in p.points and p.face() is None


def test_box_drag_crop_keys_and_mask(tmp_path):
    p = Placement.for_image(_image(), tmp_path / "a.png.yaml")
    p.on_key(ord("b"))
    p.on_mouse(EVENT_DOWN, 200, 250)
    p.on_mouse(EVENT_MOVE, 300, 300)
    p.on_mouse(EVENT_UP, 450, 480)
    assert p.box == (200.0, 250.0, 250.0, 230.0)
    size = p.face().crop_transform().rect.size
    p.on_key(ord("+"))
    assert p.face().crop_transform().rect.size > size
    full = p.region_mask().sum()
    p.on_key(ord("m"))
    for x, y in ((250, 280), (400, 280), (400, 450), (250, 450)):
        _click(p, x, y)
    assert p.region_mask().sum() < full  # the polygon cuts the animated region
    p.save()
    s = sc.load_sidecar(tmp_path / "a.png")
    assert s.face.box == (200.0, 250.0, 250.0, 230.0) and s.face.crop_scale == pytest.approx(2.4)
    assert s.mask.shape == (4, 2)


def test_saving_over_an_existing_sidecar_uses_a_new_name_unless_replace_is_asked(tmp_path):
    img, path = _write(tmp_path, {"face": ALPACA, "settings": {"animation": {"driving_multiplier": 1.5}}})
    before = path.read_bytes()
    p = Placement.for_image(_image(), path, start=sc.load_sidecar(img))
    assert p.face() is not None  # starts from the existing sidecar
    p.on_key(ord("+"))
    saved = p.save()
    assert saved == tmp_path / "cat.png.2.yaml" and path.read_bytes() == before and "kept" in p.message
    assert sc.parse_sidecar(yaml.safe_load(saved.read_text()), saved).settings["animation.driving_multiplier"] == 1.5
    assert p.save(replace=True) == path and path.read_bytes() != before
