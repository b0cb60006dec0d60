"""Sidecars in use: preparation, the library and its cache, check-character and the OBS button.

Real test characters the face finder refuses (s23 alpaca, s25 dog); networks are the reduced ones with random
weights (``models.small``: synthetic, tests only; the crop geometry is what is checked, not the painted face)."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from liveportrait_core.characters.faces import CharacterError
from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.characters import sidecar as sc
from liveportrait_core.settings import Settings
from tests.conftest import shared_path

ALPACA = "face:\n  left_eye: [260, 345]\n  right_eye: [395, 340]\n  mouth: [340, 412]\n  box: [185, 215, 265, 265]\n"


@pytest.fixture(scope="module")
def small_models():
    from liveportrait_core.models.small import reduced_models

    return reduced_models()


def _folder(tmp_path, *names):
    folder = tmp_path / "chars"
    folder.mkdir(exist_ok=True)
    for n in names:
        shutil.copy(shared_path("testdata", "characters", n), folder / n)
    return folder


def _settings(folder, tmp_path):
    s = Settings()
    s.characters.folder, s.characters.cache_dir, s.characters.rescan_s = str(folder), str(tmp_path / "cache"), 0.0
    return s


def test_a_sidecar_on_an_image_detection_refuses_gives_exactly_its_crop(tmp_path, small_models):
    folder = _folder(tmp_path, "s23.jpg")
    s = _settings(folder, tmp_path)
    lib = CharacterLibrary(s, small_models)
    with pytest.raises(CharacterError, match="min_face_confidence"):  # refused without a sidecar
        lib.check("s23.jpg")
    sc.sidecar_path(folder / "s23.jpg").write_text(ALPACA)
    lib.rescan(force=True)
    prepared = lib.get("s23.jpg")
    want = sc.load_sidecar(folder / "s23.jpg").face.crop_transform()
    np.testing.assert_array_equal(prepared.crop.M_o2c, want.M_o2c)
    assert prepared.sidecar is not None and prepared.face.confidence == sc.PLACED_CONFIDENCE
    lib.close()


def test_sidecar_coordinates_are_the_files_pixels_when_the_image_is_scaled_down_on_load(tmp_path, small_models):
    folder = tmp_path / "chars"
    folder.mkdir()
    big = cv2.resize(cv2.imread(str(shared_path("testdata", "characters", "s23.jpg"))), (2504, 2504))
    cv2.imwrite(str(folder / "big.png"), big)
    sc.sidecar_path(folder / "big.png").write_text(
        "face: {left_eye: [1040, 1380], right_eye: [1580, 1360], mouth: [1360, 1648], box: [740, 860, 1060, 1060]}\n")
    lib = CharacterLibrary(_settings(folder, tmp_path), small_models)
    prepared = lib.get("big.png")
    assert prepared.size == (1280, 1280)
    want = sc.load_sidecar(folder / "big.png").face.scaled(1280 / 2504).crop_transform()
    np.testing.assert_allclose(prepared.crop.M_o2c, want.M_o2c, rtol=1e-5, atol=1e-4)
    lib.close()


def test_a_bad_sidecar_is_refused_with_the_field_and_file_and_the_rest_keep_working(tmp_path, small_models):
    folder = _folder(tmp_path, "s23.jpg", "s1.jpg")
    sc.sidecar_path(folder / "s23.jpg").write_text("face: {left_eye: [260, 345], right_eye: [395, 340]}\n"
                                                   "settings: {animation: {region: eyez}}\n")
    lib = CharacterLibrary(_settings(folder, tmp_path), small_models)
    with pytest.raises(sc.SidecarError) as e:
        lib.get("s23.jpg")
    msg = lib.errors()["s23.jpg"]
    assert "s23.jpg.yaml" in msg and "face.mouth" in msg and "settings.animation.region" in msg
    assert set(e.value.fields) == {"face.mouth", "settings.animation.region"}
    assert lib.get("s1.jpg").name == "s1.jpg"  # the others are unaffected
    lib.close()


def test_the_cache_key_includes_the_sidecar_and_a_change_prepares_again(tmp_path, small_models):
    folder = _folder(tmp_path, "s23.jpg")
    path = sc.sidecar_path(folder / "s23.jpg")
    path.write_text(ALPACA)
    s = _settings(folder, tmp_path)
    lib = CharacterLibrary(s, small_models)
    first = lib.get("s23.jpg")
    path.write_text(ALPACA + "  crop_scale: 2.6\n")
    lib.rescan(force=True)  # the sidecar's stamp is part of the entry's
    second = lib.get("s23.jpg")
    assert second.key != first.key and lib.prepare_calls == 2
    assert second.crop.rect.size == pytest.approx(first.crop.rect.size * 2.6 / 2.3, rel=1e-4)
    lib.close()
    again = CharacterLibrary(s, small_models)  # a fresh library hits the disk cache for the same sidecar
    hit = again.get("s23.jpg")
    assert again.prepare_calls == 0 and hit.key == second.key and hit.sidecar is not None
    np.testing.assert_array_equal(hit.crop.M_o2c, second.crop.M_o2c)
    assert hit.face.crop_scale == pytest.approx(2.6)
    again.close()


def test_the_mask_polygon_cuts_the_paste_back_mask(tmp_path, small_models):
    folder = _folder(tmp_path, "s23.jpg")
    path = sc.sidecar_path(folder / "s23.jpg")
    path.write_text(ALPACA)
    lib = CharacterLibrary(_settings(folder, tmp_path), small_models)
    full = lib.get("s23.jpg").ensure_paste_back().mask_ori
    path.write_text(ALPACA + "mask: [[200, 300], [450, 300], [450, 480], [200, 480]]\n")
    lib.rescan(force=True)
    cut = lib.get("s23.jpg").ensure_paste_back().mask_ori
    assert cut[390, 330] == pytest.approx(full[390, 330], abs=1 / 255)  # inside the polygon: as before
    assert full[250, 330] > 0.9 and cut[250, 330] == 0  # outside it (the forehead): not animated
    lib.close()


# ------------------------------------------------------------------------------------------------
# check-character and the OBS button


def test_check_character_reports_face_from_sidecar(tmp_path, capsys):
    from liveportrait_core.cli.commands import check_character

    folder = _folder(tmp_path, "s23.jpg")
    sc.sidecar_path(folder / "s23.jpg").write_text(ALPACA)
    assert check_character.check(Settings(), str(folder / "s23.jpg"), out=str(tmp_path / "out"), as_json=True) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["face_source"] == "sidecar" and row["sidecar"].endswith("s23.jpg.yaml") and row["face_found"]
    assert row["verdict"] != "unusable" and row["crop_preview"]
    crop_png = cv2.imread(row["crop_preview"])
    assert crop_png.shape == (512, 512, 3)
    assert check_character.check(Settings(), str(folder / "s23.jpg"), previews=False) == 0
    assert "face from sidecar: " in capsys.readouterr().out


def test_the_obs_check_button_shows_the_same(tmp_path, capsys):
    from liveportrait_core.obs.controller import BUTTON_COMMANDS

    folder = _folder(tmp_path, "s23.jpg")
    sc.sidecar_path(folder / "s23.jpg").write_text(ALPACA)
    assert BUTTON_COMMANDS["check-character"](Settings(), str(folder / "s23.jpg"), previews=False) == 0
    assert "face from sidecar" in capsys.readouterr().out


def test_write_sidecar_starts_from_the_best_candidate_and_never_overwrites(tmp_path, capsys):
    from liveportrait_core.cli.commands import check_character

    folder = _folder(tmp_path, "s25.jpg")
    target = sc.sidecar_path(folder / "s25.jpg")
    assert check_character.check(Settings(), str(folder), previews=False) == 1  # refused: 0.72 < 0.80
    capsys.readouterr()
    assert check_character.check(Settings(), str(folder), previews=False, as_json=True, write_sidecar=True) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert target.is_file() and row["face_source"] == "sidecar" and "starting sidecar written" in row["advice"][0]
    placed = sc.load_sidecar(folder / "s25.jpg").face
    assert 100 < placed.left_eye[0] < placed.right_eye[0] < 400 and placed.mouth[1] > placed.left_eye[1]
    before = target.read_bytes()
    assert check_character.check(Settings(), str(folder), previews=False, write_sidecar=True) == 0
    assert target.read_bytes() == before and not (folder / "s25.jpg.2.yaml").exists()


def test_a_bad_sidecar_makes_check_character_name_the_field(tmp_path, capsys):
    from liveportrait_core.cli.commands import check_character

    folder = _folder(tmp_path, "s23.jpg")
    sc.sidecar_path(folder / "s23.jpg").write_text("face: {box: [0, 0, -5, 10]}\n")
    assert check_character.check(Settings(), str(folder), previews=False) == 1
    out = capsys.readouterr().out
    assert "UNUSABLE" in out and "face.box" in out and "s23.jpg.yaml" in out
