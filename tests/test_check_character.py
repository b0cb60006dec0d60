"""``check-character``: per-image report, JSON fields, previews only in the output folder."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("mediapipe")

from liveportrait_core.cli import main as cli
from tests.conftest import shared_path  # noqa: E402

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
    dog = shared_path("testdata", "characters", "s25.jpg")
    from liveportrait_core.characters.check import check_images

    (r,) = check_images([dog])
    assert r.face_found is False and r.confidence < 0.8


def _shared(name: str) -> Path:
    return shared_path("testdata", "characters", name)


def test_a_face_under_the_threshold_reports_its_best_candidate_and_how_to_lower_it(capsys):
    """The cartoon alpaca s23 used to be reported as "no face found (0.00)" followed by a repeat of the same
    human-face advice, although MediaPipe sees a weak candidate: now its score, the threshold setting, how to
    lower it (CLI and OBS slider) and what that risks, said once."""
    rc = cli.main(["check-character", str(_shared("s23.jpg")), "--no-preview", "--json"])
    (r,) = json.loads(capsys.readouterr().out)
    assert rc == 1 and r["face_found"] is False and r["verdict"] == "unusable"
    assert 0.3 <= r["confidence"] < 0.8  # the best candidate's score, not 0.00
    (advice,) = r["advice"]  # one line, not a second one repeating the first
    assert f"{r['confidence']:.2f}" in advice and "characters.min_face_confidence" in advice
    assert "--set characters.min_face_confidence=0.4" in advice and "slider" in advice
    assert "beside the face" in advice


def test_lowering_the_threshold_as_advised_accepts_the_candidate(tmp_path, capsys):
    rc = cli.main(["check-character", str(_shared("s23.jpg")), "--min-confidence", "0.4", "--out", str(tmp_path),
                   "--json"])
    (r,) = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["face_found"] is True and Path(r["crop_preview"]).is_file()


def test_the_table_shows_no_measurement_where_none_was_made(library, capsys):
    """No face: no ratio or roll (they printed 0.00 and 0.0, as if measured; the guide's table shows "-");
    an unreadable file: no size and no score either (it printed 0x0 and 0.00)."""
    rc = cli.main(["check-character", str(_shared("s23.jpg")), str(library / "broken.webp"), "--no-preview"])
    rows = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[1:] if not ln.startswith(" ")}
    assert rc == 1
    assert rows["s23.jpg"][2:] == ["626x626", "no", "NO", rows["s23.jpg"][5], "-", "-", "UNUSABLE"]
    assert 0.3 <= float(rows["s23.jpg"][5]) < 0.8  # the best candidate's score is a measurement: kept
    assert rows["broken.webp"][2:] == ["-", "no", "NO", "-", "-", "-", "UNUSABLE"]


def test_advice_is_given_once():
    from liveportrait_core.characters.check import assess

    twice = {"face_found": True, "face_size_px": 380, "face_size_ratio": 0.33, "confidence": 0.96,
             "eye_open": [0.3, 0.3], "format": "JPEG", "warnings": ["2 faces found; the largest one is animated"] * 2}
    assert assess(twice) == ("usable", ["2 faces found; the largest one is animated"])


@pytest.fixture(scope="module")
def eight_k(tmp_path_factory) -> Path:
    """An 8K (7680x4320) picture of the astronaut: loaded at 1280x720, where the face is under 200 px."""
    img = _astronaut()[..., :3]
    big = cv2.resize(img, (4320, 4320), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((4320, 7680, 3), 90, np.uint8)
    canvas[:, 1680:6000] = big
    path = tmp_path_factory.mktemp("eightk") / "portrait_8k.jpg"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def test_large_image_shows_its_own_size_and_true_face_size_advice(eight_k, capsys):
    """The size column showed the size after our own downscale (1280x720), and the advice "200+ px is sharper"
    for a face that has over 800 px in the file: now the file's size, the face in both, and a fix that works."""
    rc = cli.main(["check-character", str(eight_k), "--no-preview", "--json"])
    (r,) = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["image_size"] == [7680, 4320] and r["loaded_size"] == [1280, 720]
    assert r["face_size_px"] < 200 and r["face_size_px_file"] == pytest.approx(6 * r["face_size_px"], rel=0.01)
    (size_advice,) = [a for a in r["advice"] if "px across" in a]
    assert f"{r['face_size_px_file']:.0f} px in the file" in size_advice and "crop the picture" in size_advice
    keep = int(size_advice.split("at most ")[1].split(" px")[0])
    assert r["face_size_px_file"] * 1280 / keep >= 200 and keep < 7680  # following it really gives 200+ px
    cli.main(["check-character", str(eight_k), "--no-preview"])
    row = capsys.readouterr().out.splitlines()[1]
    assert "7680x4320" in row and "1280x720" not in row


def test_third_party_chatter_stays_out_of_the_default_output(tmp_path):
    """About 20 MediaPipe/absl/TensorFlow Lite lines used to precede the table; --log-level DEBUG shows them."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "liveportrait_core", "check-character", str(ROOT / "characters" / "astronaut.png"),
           str(_shared("s23.jpg")), "--no-preview"]
    quiet = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 1 and "astronaut.png" in quiet.stdout
    assert quiet.stderr.strip() == "", quiet.stderr
    loud = subprocess.run([*cmd, "--log-level", "DEBUG"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "TensorFlow Lite" in loud.stderr or "W0000" in loud.stderr, loud.stderr
