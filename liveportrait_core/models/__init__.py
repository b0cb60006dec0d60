"""The LivePortrait networks (one file per network) and the code that knows their checkpoints.

``build(name)`` returns a fresh, untrained module for an official module name; its state_dict keys
and shapes are those of the official checkpoints, so the official files load into it strictly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .layout import MODULE_NAMES

if TYPE_CHECKING:
    from torch import nn


def build(name: str) -> "nn.Module":
    """A new module for an official name: appearance_feature_extractor, motion_extractor,
    warping_module, spade_generator, stitching, lip or eye."""
    if name == "appearance_feature_extractor":
        from .appearance import AppearanceFeatureExtractor
        return AppearanceFeatureExtractor()
    if name == "motion_extractor":
        from .motion import MotionExtractor
        return MotionExtractor()
    if name == "warping_module":
        from .warping import WarpingNetwork
        return WarpingNetwork()
    if name == "spade_generator":
        from .spade import SPADEDecoder
        return SPADEDecoder()
    if name in ("stitching", "lip", "eye"):
        from .stitching import CONFIGS, RetargetingMLP
        return RetargetingMLP(CONFIGS[name])
    raise KeyError(f"unknown LivePortrait module {name!r}; known: {', '.join(MODULE_NAMES)}")


__all__ = ["MODULE_NAMES", "build"]
