"""``check-character``: per-image report, JSON fields, previews only in the output folder."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("mediapipe")

from liveportrait_core import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _astronaut() -> np.ndarray:
    p = ROOT / "characters" / "astronaut.png"
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED) if p.exists() else None
    if img is None:
        data = pytest.importorskip("skimage.data")
        img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return img


@pytest.fixture
def library(tmp_path):
    chars = tmp_path / "chars"
    chars.mkdir()
    cv2.imwrite(str(chars / "astro.png"), _astronaut())
    rgba = cv2.cvtColor(_astronaut()[..., :3], cv2.COLOR_BGR2BGRA)
    rgba[:, :40, 3] = 0
    cv2.imwrite(str(chars / "astro_alpha.png"), rgba)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(chars / "texture.jpg"), cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), np.uint8), (5, 5), 0))
    (chars / "broken.webp").write_bytes(b"garbage")
    return chars


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_json_report_for_a_folder(library, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(library)
    rc = cli.main(["check-character", str(library), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1  # not every image has a face
    by_name = {Path(r["file"]).name: r for r in out}
    assert set(by_name) == {"astro.png", "astro_alpha.png", "texture.jpg", "broken.webp"}
    for name in ("astro.png", "astro_alpha.png"):
        r = by_name[name]
        assert r["face_found"] is True and abs(r["roll_deg"]) < 10 and r["confidence"] >= 0.8
        assert 0.1 < r["face_size_ratio"] < 1.0
        preview = Path(r["crop_preview"])
        assert preview.parent == tmp_path / "check-character" and preview.name == Path(name).stem + ".crop.png"
        assert cv2.imread(str(preview), cv2.IMREAD_UNCHANGED).shape[:2] == (512, 512)
    assert by_name["astro_alpha.png"]["has_alpha"] is True
    assert cv2.imread(by_name["astro_alpha.png"]["crop_preview"], cv2.IMREAD_UNCHANGED).shape[2] == 4
    assert by_name["texture.jpg"]["face_found"] is False and "roll_deg" in by_name["texture.jpg"]
    assert by_name["texture.jpg"]["crop_preview"] is None
    assert "broken.webp" in by_name["broken.webp"]["error"]
    assert _snapshot(library) == before  # user files untouched, nothing added beside them


def test_text_report_and_exit_status(library, tmp_path, capsys):
    out_dir = tmp_path / "previews"
    rc = cli.main(["check-character", str(library / "astro.png"), "--out", str(out_dir)])
    text = capsys.readouterr().out
    assert rc == 0 and "astro.png" in text and "yes" in text
    assert (out_dir / "astro.crop.png").exists()


def test_refuses_to_write_previews_among_the_images(library, capsys):
    before = _snapshot(library)
    rc = cli.main(["check-character", str(library), "--out", str(library)])
    assert rc == 2 and "choose another --out" in capsys.readouterr().err
    assert _snapshot(library) == before


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["check-character", str(tmp_path), "--no-preview"])
    assert rc == 2 and "no images" in capsys.readouterr().err


def test_dog_is_not_a_character():
    dog = ROOT.parent / "shared" / "testdata" / "characters" / "s25.jpg"
    if not dog.exists():
        pytest.skip("shared test data not found")
    from liveportrait_core.tracking.character_check import check_characters

    (r,) = check_characters([dog], previews=False)
    assert r.face_found is False and r.confidence < 0.8
