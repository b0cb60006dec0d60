"""The official checkpoint layout: which file holds each module, and every key, shape and dtype.

``checkpoint_layout.json`` (shipped with the package, since users have no reference folder) was
derived from the official implementation; this module is the single place that knows the official
file names and how the stitching file is split into its three MLPs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_LAYOUT_FILE = Path(__file__).with_name("checkpoint_layout.json")

#: Official module names, in the order the pipeline uses them.
MODULE_NAMES = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator",
                "stitching", "lip", "eye")
BASE_MODULES = MODULE_NAMES[:4]
RETARGETING_MODULES = MODULE_NAMES[4:]

#: Folder of each weight variant inside the models folder (as on the official Hugging Face repository
#: KwaiVGI/LivePortrait, whose root holds ``liveportrait/`` and ``liveportrait_animals/``).
VARIANT_DIRS = {"human": "liveportrait", "animal": "liveportrait_animals"}

#: Checkpoint file (official name) -> path relative to the human variant folder.
#: Prefer ``checkpoint_files(variant)``, which is right for both variants.
FILES = {
    "appearance_feature_extractor": "base_models/appearance_feature_extractor.pth",
    "motion_extractor": "base_models/motion_extractor.pth",
    "warping_module": "base_models/warping_module.pth",
    "spade_generator": "base_models/spade_generator.pth",
    "stitching_retargeting_module": "retargeting_models/stitching_retargeting_module.pth",
}
FILE_KEYS = tuple(FILES)
VARIANTS = tuple(VARIANT_DIRS)

#: Checkpoint file -> path inside the models folder (= path in the Hugging Face repository), per variant.
#: The animal model uses the v1.1 base models (official default since 2025-01-01) and, like the official
#: ``inference_config.py`` ("NOTE: use human temporarily!"), the *human* stitching/retargeting file.
CHECKPOINT_FILES: dict[str, dict[str, str]] = {
    "human": {k: f"liveportrait/{v}" for k, v in FILES.items()},
    "animal": {
        **{k: f"liveportrait_animals/base_models_v1.1/{Path(v).name}" for k, v in FILES.items()
           if v.startswith("base_models/")},
        "stitching_retargeting_module": "liveportrait/retargeting_models/stitching_retargeting_module.pth",
    },
}


def checkpoint_files(variant: str = "human") -> dict[str, str]:
    """Checkpoint file key -> path relative to the models folder, for ``variant`` ("human" or "animal")."""
    try:
        return dict(CHECKPOINT_FILES[variant])
    except KeyError:
        raise KeyError(f"unknown weights variant {variant!r}; known: {', '.join(VARIANTS)}") from None


@dataclass(frozen=True)
class TensorSpec:
    key: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ModuleLayout:
    name: str
    file: str  #: key of ``FILES``
    sub_key: str | None  #: sub-dict inside the file (stitching file only)
    num_parameters: int
    tensors: tuple[TensorSpec, ...]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.key: t.shape for t in self.tensors}

    def num_elements(self) -> int:
        n = 0
        for t in self.tensors:
            k = 1
            for s in t.shape:
                k *= s
            n += k
        return n


@lru_cache(maxsize=1)
def _raw() -> dict:
    return json.loads(_LAYOUT_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def module_layout(name: str) -> ModuleLayout:
    try:
        m = _raw()["modules"][name]
    except KeyError:
        raise KeyError(f"unknown LivePortrait module {name!r}; known: {', '.join(MODULE_NAMES)}") from None
    return ModuleLayout(name=name, file=m["file"], sub_key=m["sub_key"], num_parameters=m["num_parameters"],
                        tensors=tuple(TensorSpec(k, tuple(s), dt) for k, s, dt in m["state_dict"]))


def modules_in_file(file: str) -> tuple[str, ...]:
    return tuple(n for n in MODULE_NAMES if module_layout(n).file == file)


def total_parameters() -> int:
    return int(_raw()["totals"]["parameters_all_7"])


def lip_array() -> list:
    """The official constant expression used in place of the first frame's for a single driving image."""
    return _raw()["lip_array"]
