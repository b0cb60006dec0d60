"""The animal variant end to end: recipe weights (synthetic, test-only numbers) written in the official animal
layout load strictly and drive a frame; a character's sidecar variant swaps the networks without a restart."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from liveportrait_core.characters import sidecar as sc
from liveportrait_core.models.checkpoint import layout, weights
from liveportrait_core.models.variants import VariantModels, set_bytes
from liveportrait_core.settings import Settings
from tests.conftest import shared_path


def _recipe_animal_dir(tmp_path, recipe_state_dicts):
    """The recipe weights as the official files of the animal variant (and the human stitching file it uses)."""
    written = weights.write_checkpoints(tmp_path, recipe_state_dicts, variant="animal")
    rel = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert rel == sorted(layout.checkpoint_files("animal").values())
    return tmp_path


@pytest.mark.slow
def test_animal_recipe_weights_load_strictly_and_drive_a_frame(tmp_path, recipe_state_dicts):
    """The seven networks come from the animal files (only those exist: no human base models), every official
    key exactly, the recipe values; then an animal character placed by its sidecar is animated through all of
    them (idle: no face tracked), without stitching as the official animal pipeline."""
    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.loader import load_models

    models_dir = _recipe_animal_dir(tmp_path / "models", recipe_state_dicts)
    assert not (tmp_path / "models" / "liveportrait" / "base_models").exists()  # only the animal base models
    models = load_models(models_dir, device="cpu", precision="fp32", variant="animal", optimize=False)
    assert models.variant == "animal"
    for name in layout.MODULE_NAMES:  # strict: exactly the official keys, with the written values
        sd = models[name].state_dict()
        assert list(sd) == [t.key for t in layout.module_layout(name).tensors], name
        for k, v in recipe_state_dicts[name].items():
            assert torch.equal(sd[k], v), f"{name}/{k}"
    s = Settings()
    s.model.models_dir, s.model.variant, s.model.device = str(models_dir), "animal", "cpu"
    folder = tmp_path / "chars"
    folder.mkdir()
    dog = folder / "s25.jpg"
    shutil.copy(shared_path("testdata", "characters", "s25.jpg"), dog)
    sc.sidecar_path(dog).write_text("face: {left_eye: [172, 233], right_eye: [304, 229], mouth: [222, 335]}\n")
    s.characters.folder, s.characters.cache_dir = str(folder), str(tmp_path / "cache")
    variants = VariantModels(s, load=lambda st: models)
    animator = Animator(models, s, CharacterLibrary(s, models, models_for=variants.get), variants=variants)
    animator.select_character("s25.jpg")
    assert animator.character.variant == "animal"
    assert animator.driver.settings.stitching is False  # official animal default
    frame = animator.animate(None, None)  # no face tracked: idle, through every network
    assert frame.shape == (512, 512, 4) and frame.dtype == np.uint8


class _HeldMemory:
    """Memory held like one loaded set (a 4 MB layer) for the residency logic; no network is run with it."""

    def __init__(self, variant, device="cpu"):
        self.device = torch.device(device)
        lin = torch.nn.Linear(1000, 1000)
        self.modules = {"motion_extractor": lin}


def test_a_set_is_loaded_once_and_both_stay_when_memory_allows():
    loaded = []

    def load(s):
        loaded.append(s.model.variant)
        return _HeldMemory(s.model.variant)

    v = VariantModels(Settings(), load=load, free=lambda dev: 10 ** 12)
    h = v.get("human")
    a = v.get("animal")
    assert v.get("human") is h and v.get("animal") is a and loaded == ["human", "animal"]
    assert v.resident() == ["human", "animal"] and h.variant == "human" and a.variant == "animal"


def test_without_room_the_other_set_is_released_first():
    v = VariantModels(Settings(), load=lambda s: _HeldMemory(s.model.variant), free=lambda dev: 100)
    h = v.get("human")
    assert set_bytes(h) == 1000 * 1001 * 4
    v.get("animal")
    assert v.resident() == ["animal"] and v.released == 1
    assert v.get("human") is not h and v.loads == 3


def _human_and_animal_characters(tmp_path) -> Settings:
    """Settings whose character folder holds s1.jpg (human) and s25.jpg with a sidecar asking for the animal set."""
    folder = tmp_path / "chars"
    folder.mkdir()
    shutil.copy(shared_path("testdata", "characters", "s1.jpg"), folder / "s1.jpg")
    shutil.copy(shared_path("testdata", "characters", "s25.jpg"), folder / "s25.jpg")
    sc.sidecar_path(folder / "s25.jpg").write_text(
        "face: {left_eye: [172, 233], right_eye: [304, 229], mouth: [222, 335]}\nsettings: {model: {variant: animal}}\n")
    s = Settings()
    s.characters.folder, s.characters.cache_dir, s.characters.rescan_s = str(folder), str(tmp_path / "c"), 0.0
    return s


def test_a_human_to_animal_character_switch_swaps_the_networks(tmp_path):
    """Two characters, one with ``model.variant: animal`` in its sidecar: selecting it puts the animal set's
    networks into the animator and preparation; selecting the human one again swaps back, without a reload."""
    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.small import reduced_models

    s = _human_and_animal_characters(tmp_path)
    seeds = {"human": 0, "animal": 1}  # reduced networks, random weights: two different sets
    variants = VariantModels(s, load=lambda st: reduced_models(seed=seeds[st.model.variant]), free=lambda d: 10 ** 12)
    human = variants.get("human")
    animator = Animator(human, s, CharacterLibrary(s, human, models_for=variants.get), variants=variants)
    animator.select_character("s1.jpg")
    assert animator.models is human and animator.character.variant == "human"
    animator.select_character("s25.jpg")
    animal = variants.get("animal")
    assert animator.models is animal and animator.nets.eye is animal.modules["eye"]
    assert animator.character.variant == "animal" and animator.driver.settings.stitching is False
    # the animal character was prepared by the animal networks (its F output differs from the human set's)
    assert animator.character.key != animator.library.get("s1.jpg").key
    animator.select_character("s1.jpg")
    assert animator.models is human and animator.driver.settings.stitching is True and variants.loads == 2


def test_a_character_whose_variant_cannot_load_is_refused_and_the_rest_keep_working(tmp_path):
    """No animal weights: the animal character is refused with the download hint; the human one stays live."""
    from liveportrait_core.characters.faces import CharacterError
    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.small import reduced_models

    s = _human_and_animal_characters(tmp_path)
    s.model.models_dir = str(tmp_path / "no_weights")

    def load(st):
        if st.model.variant == "animal":
            return VariantModels._load_from_settings(st)  # the real loader: no files there
        return reduced_models()

    variants = VariantModels(s, load=load, free=lambda d: 10 ** 12)
    human = variants.get("human")
    animator = Animator(human, s, CharacterLibrary(s, human, models_for=variants.get), variants=variants)
    animator.select_character("s1.jpg")
    with pytest.raises(CharacterError, match="download-models --variant animal"):
        animator.select_character("s25.jpg")
    assert animator.current_character() == "s1.jpg" and "animal networks" in animator.character_error
    assert "s25.jpg.yaml" in animator.library.errors()["s25.jpg"]
