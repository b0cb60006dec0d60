"""The plain LivePortrait networks, one file per network, with the official structure and state_dict names.

``build(name)`` returns a fresh, untrained module for an official module name; its state_dict keys and
shapes are those of the official checkpoints (``models/checkpoint/layout.py`` knows the files), so the
official files load into it strictly. Each network's ``forward`` is the one statement of its structure;
the faster exact forms in ``models/fast/`` replace only the leaf steps it names (see ``models/fast``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn


def _appearance() -> "nn.Module":
    from .appearance import AppearanceFeatureExtractor
    return AppearanceFeatureExtractor()


def _motion() -> "nn.Module":
    from .motion import MotionExtractor
    return MotionExtractor()


def _warping() -> "nn.Module":
    from .warping import WarpingNetwork
    return WarpingNetwork()


def _spade() -> "nn.Module":
    from .spade import SPADEDecoder
    return SPADEDecoder()


def _retargeting(name: str) -> Callable[[], "nn.Module"]:
    def make() -> "nn.Module":
        from .stitching import CONFIGS, RetargetingMLP
        return RetargetingMLP(CONFIGS[name])
    return make


#: official module name -> a builder of its plain network
BUILDERS: dict[str, Callable[[], "nn.Module"]] = {
    "appearance_feature_extractor": _appearance,
    "motion_extractor": _motion,
    "warping_module": _warping,
    "spade_generator": _spade,
    "stitching": _retargeting("stitching"),
    "lip": _retargeting("lip"),
    "eye": _retargeting("eye"),
}


def build(name: str) -> "nn.Module":
    """A new module for an official name: appearance_feature_extractor, motion_extractor,
    warping_module, spade_generator, stitching, lip or eye."""
    if name not in BUILDERS:
        raise KeyError(f"unknown LivePortrait module {name!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[name]()


__all__ = ["BUILDERS", "build"]
