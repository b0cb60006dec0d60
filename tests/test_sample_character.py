"""The shipped sample character is exactly scikit-image's public-domain NASA astronaut portrait."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "characters" / "astronaut.png"


def test_sample_is_the_public_domain_astronaut():
    data = pytest.importorskip("skimage.data")
    img = cv2.imread(str(SAMPLE), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (512, 512, 3)
    assert np.array_equal(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), data.astronaut())


def test_characters_readme_states_the_source():
    text = (SAMPLE.parent / "README.md").read_text(encoding="utf-8")
    assert "astronaut.png" in text and "public domain" in text and "skimage.data.astronaut()" in text
