"""Reduced LivePortrait networks for fast tests and benchmarks: SYNTHETIC, TEST NUMBERS, NOT A MODEL.

The four big networks are built from their own config dataclasses with far fewer channels and layers,
with torch's random initialisation (seeded); the three retargeting MLPs are full size with the recipe
weights (``models/checkpoint/recipe.py``). The 21 keypoints, the 64x64 feature grid and the 512x512 output crop keep their
official sizes, so the animator, the keypoint maths, the character preparation and the paste-back run
unchanged; only the feature volume is shallower (8 channels x depth 4 instead of 32 x 16). A face animated
with them is noise: they exercise the product's code paths and memory behaviour (tests/, scripts/soak.py),
never its quality. The product never loads them; anything that uses them must say so (``LABEL``).
"""
from __future__ import annotations

import torch

from liveportrait_core.models.checkpoint.layout import RETARGETING_MODULES
from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts
from liveportrait_core.models.loader import LivePortraitModels
from liveportrait_core.models.networks import build
from liveportrait_core.models.networks.appearance import AppearanceConfig, AppearanceFeatureExtractor
from liveportrait_core.models.networks.motion import MotionConfig, MotionExtractor
from liveportrait_core.models.networks.spade import SPADEConfig, SPADEDecoder, SpectralNormConv2d
from liveportrait_core.models.networks.warping import WarpingConfig, WarpingNetwork

LABEL = "reduced-channel networks with random weights (tests only: the animated face is noise)"


def reduced_models(device: str = "cpu", seed: int = 0) -> LivePortraitModels:
    """``loader.LivePortraitModels`` with the reduced networks on ``device``, float32, eval mode."""
    torch.manual_seed(seed)
    mods = {
        "appearance_feature_extractor": AppearanceFeatureExtractor(AppearanceConfig(
            block_expansion=16, max_features=32, reshape_channels=8, reshape_depth=4, num_resblocks=1)),
        "motion_extractor": MotionExtractor(MotionConfig(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))),
        "warping_module": WarpingNetwork(WarpingConfig(
            block_expansion=16, max_features=32, reshape_channels=8, reshape_depth=4, compress=1,
            dm_block_expansion=4, dm_max_features=32, dm_num_blocks=3)),
        "spade_generator": SPADEDecoder(SPADEConfig(input_channels=64, out_channels=8, num_middle_blocks=1, hidden=8)),
    }
    # spectral norm's stored u, v start at zero (sigma = 0: a NaN image); give them unit vectors
    for m in mods["spade_generator"].modules():
        if isinstance(m, SpectralNormConv2d):
            with torch.no_grad():
                m.weight_u.copy_(torch.nn.functional.normalize(torch.randn(m.weight_u.shape), dim=0))
                m.weight_v.copy_(torch.nn.functional.normalize(torch.randn(m.weight_v.shape), dim=0))
    for name, sd in recipe_state_dicts(tuple(RETARGETING_MODULES)).items():
        mods[name] = build(name)
        mods[name].load_state_dict(sd, strict=True)
    dev = torch.device(device)
    mods = {k: m.to(dev).eval().requires_grad_(False) for k, m in mods.items()}
    return LivePortraitModels(modules=mods, device=dev, dtype=torch.float32)
